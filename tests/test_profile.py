"""``fastdqn profile``: the phase table, the trace, a deliberately slowed phase, --compare.

References: the phase names the engine marks (every one must appear), arithmetic on the report's
own raw numbers is avoided -- shares are checked to sum to 1 and against an injected, known
delay (a sleep of known length in ``sample``), and --compare ratios against hand-made reports.
"""

from __future__ import annotations

import json
import time

import pytest
import torch

from fastdqn.cli import main
from fastdqn.config import preset
from fastdqn.engine import population_configs
from fastdqn.profile import compare, load_report, run_profile
from fastdqn.replay import ReplayBuffer

CFG = preset("fast").replace(num_envs=4, batch_size=32, learning_starts=64, buffer_size=2000, hidden=(16, 16),
                             torch_threads=1)


@pytest.mark.parametrize("fuse", [True, False])
def test_phase_shares_sum_to_one_and_name_every_phase(fuse):
    report = run_profile(population_configs(CFG, 2), "cpu", "numba", iterations=60, warmup=5, fuse=fuse)
    names = [p["phase"] for p in report["phases"]]
    expected = ["act", "collect"] if fuse else ["act", "env", "store", "bookkeeping"]
    assert names == expected + ["sample", "update", "target", "other"]
    assert sum(p["share"] for p in report["phases"]) == pytest.approx(1.0, abs=1e-9)
    assert report["explained_share"] == pytest.approx(1.0 - report["phases"][-1]["share"])
    for p in report["phases"][:-1]:
        assert 0.0 < p["share"] < 1.0 and p["p50_us"] <= p["p95_us"]
    it = report["iteration"]
    assert sum(p["mean_us"] for p in report["phases"]) == pytest.approx(it["mean_us"], rel=1e-6)


def test_slowed_sample_phase_is_the_largest_share(monkeypatch):
    """A test hook sleeps 3 ms in every replay gather: sample must become the largest share, and
    its mean must be at least the sleep."""
    gather = ReplayBuffer.gather

    def slow_gather(self, idx):
        time.sleep(0.003)
        return gather(self, idx)

    monkeypatch.setattr(ReplayBuffer, "gather", slow_gather)
    report = run_profile(population_configs(CFG, 1), "cpu", "numba", iterations=30, warmup=2)
    by = {p["phase"]: p for p in report["phases"]}
    assert max(report["phases"], key=lambda p: p["share"])["phase"] == "sample"
    assert by["sample"]["p50_us"] >= 3000
    assert by["sample"]["share"] > 0.5


def test_trace_names_every_phase(tmp_path):
    run_profile(population_configs(CFG, 1), "cpu", "torch", iterations=20, warmup=2, mode="trace", out=tmp_path)
    events = json.loads((tmp_path / "trace.json").read_text())["traceEvents"]
    names = {e.get("name") for e in events}
    for phase in ("iteration", "act", "env", "store", "bookkeeping", "sample", "update", "target"):
        assert phase in names, phase


def test_cli_writes_report_and_compare_ratios(tmp_path, capsys):
    assert main(["profile", "--iterations", "30", "--warmup", "2", "--num_envs", "4", "--batch_size", "32",
                 "--hidden", "16", "16", "--learning_starts", "64", "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert "update" in out and "iteration" in out
    report = load_report(tmp_path / "p")
    assert (tmp_path / "p" / "profile.png").stat().st_size > 1000
    assert report["agents"] == 1 and report["iterations"] == 30 and report["machine"]["cpu"]
    # --compare against hand-made reports: B/A per phase and for the iteration
    a = {"phases": [{"phase": "act", "mean_us": 10.0}, {"phase": "update", "mean_us": 100.0}],
         "iteration": {"mean_us": 200.0}}
    b = {"phases": [{"phase": "act", "mean_us": 5.0}, {"phase": "update", "mean_us": 300.0}],
         "iteration": {"mean_us": 100.0}}
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    assert main(["profile", "--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert lines["act"][-1] == "0.50" and lines["update"][-1] == "3.00" and lines["iteration"][-1] == "0.50"
    assert compare(a, b).count("\n") == 3


@pytest.mark.parametrize("argv, words", [
    (["--iterations", "0"], "--iterations"),
    (["--warmup", "-1"], "--warmup"),
    (["--compare", "missing-a.json", "missing-b.json"], "no profile report"),
    (["--population", "0"], "population"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, words):
    assert main(["profile", "--out", str(tmp_path / "p"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


def test_timer_overhead_is_reported():
    report = run_profile(population_configs(CFG, 1), "cpu", "numba", iterations=100, warmup=5)
    assert report["unprofiled_iteration_us"] > 0 and torch.isfinite(torch.tensor(report["overhead"]))
