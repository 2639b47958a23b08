"""bench/gpu_report.py, the one-call GPU measurement, run on the CPU: its capture logic goes
through the stand-in recorder (which fails if any engine tensor moves after capture), its
end-to-end runs through ``python -m fastdqn train``, and each policy is scored on Gymnasium's own
CartPole-v1. The numbers mean nothing here; what is checked is that a GPU session's one call
will produce every row it promises."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_report", BENCH / "gpu_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_gpu_report_runs_its_sections_on_a_cpu(tmp_path):
    gpu_report = load_script()
    assert gpu_report.main(["--device", "cpu", "--quick", "--out", str(tmp_path),
                            "--sections", "iteration_us", "time_to_solve", "compiled_graph", "minatar",
                            "--minatar-games", "Breakout", "SpaceInvaders"]) == 0
    data = json.loads((tmp_path / "gpu.json").read_text())
    assert data["errors"] == {}
    assert data["versions"]["torch"] and data["device"].startswith("cpu")
    for case in ("N8_B128", "N256_B256"):
        rows = data["iteration_us"][case]
        assert set(rows) == {"eager", "graph", "graph_T16"}
        for r in rows.values():
            assert r["us"] > 0 and r["env_steps_per_s"] == pytest.approx(int(case[1:].split("_")[0]) / r["us"] * 1e6)
    assert data["compiled_graph"]["N8_B128"]["compile_s"] > 0
    (run,) = data["time_to_solve"]["runs"]
    assert run["compile"] == "none" and run["seed"] == 0 and "error" not in run
    # "solved" needs both the trainer's own solve and Gymnasium's CartPole-v1 at >= 475
    summary = json.loads((tmp_path / "runs" / "solve_none_0" / "summary.json").read_text())
    assert run["solved"] == (summary["solved"] and run["gym_mean"] >= 475)
    assert run["train_s"] == summary["wall_time_s"] < run["wall_s"]
    for game in ("Breakout", "SpaceInvaders"):  # two agents from pixels, 2,000 env steps each
        r = data["minatar"][game]
        assert r["agents"] == 2 and r["env_steps"] == 2000 and r["interrupted"] is False and r["compile"] == "none"
    png = gpu_report.plot(tmp_path / "gpu.json")
    assert png.stat().st_size > 10_000
