"""``fastdqn`` command line: flags generated from the config, and bad input answered with one
line on stderr and exit code 2, touching nothing already written."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastdqn.cli import main
from fastdqn.config import field_names

TINY_FLAGS = ["--total_steps", "200", "--learning_starts", "100", "--batch_size", "16", "--eval_every", "0",
              "--eval_episodes", "5", "--progress", "false", "--plot", "false"]


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"fastdqn {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--out", str(out), *TINY_FLAGS]) == 0
    return out


def test_train_flags_reach_config(tiny_run, tmp_path, capsys):
    cfg = json.loads((tiny_run / "config.json").read_text())
    assert cfg["total_steps"] == 200 and cfg["learning_starts"] == 100 and cfg["batch_size"] == 16
    assert cfg["progress"] is False and cfg["plot"] is False
    # a preset plus overrides, list-valued and dashed flags
    out = tmp_path / "nb"
    rc = main(["train", "--preset", "notebook", "--hidden", "8", "8", "--batch-size", "10", "--out", str(out),
               *TINY_FLAGS[:2], *TINY_FLAGS[6:]])
    assert rc == 0
    assert str(out) in capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["env_id"] == "CartPole-v0" and cfg["lr"] == 1e-4 and cfg["num_envs"] == 1  # from the preset
    assert cfg["hidden"] == [8, 8] and cfg["batch_size"] == 10 and cfg["total_steps"] == 200


def test_help_lists_every_field(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["train", "--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    for name in field_names():
        assert f"--{name}" in out, name


def test_unknown_preset(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--preset", "bogus", "--out", str(out)]) == 2
    line = one_line_error(capsys, "train")
    assert "bogus" in line and "notebook" in line and "fast" in line
    assert not out.exists()


def test_compile_graph_needs_cuda(tmp_path, capsys):
    """--compile graph on a CPU: one readable line, nothing written."""
    out = tmp_path / "r"
    assert main(["train", "--preset", "fast", "--device", "cpu", "--compile", "graph", "--out", str(out)]) == 2
    line = one_line_error(capsys, "train")
    assert "graph" in line and "CUDA" in line and "--compile none" in line
    assert not out.exists()


def test_unknown_flag(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["train", "--no_such_flag", "3"])
    assert ei.value.code == 2
    assert "--no_such_flag" in capsys.readouterr().err


def test_bad_choice_flag(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["train", "--loss", "l1"])
    assert ei.value.code == 2
    assert "l1" in capsys.readouterr().err


@pytest.mark.parametrize("argv,says", [
    (["train", "--loss", "l1"], "l1"),  # a bad choice
    (["train", "--batch_size", "many"], "many"),  # a bad int
    (["train", "--no_such_flag", "3"], "--no_such_flag"),  # an unknown flag
    (["eval"], "RUN_OR_CHECKPOINT"),  # a missing argument
    (["train", "--out"], "--out"),  # a flag without its value
    (["bench-env", "--backend", "cuda"], "cuda"),
    (["sweep", "--study-name", "s", "--pruner", "often"], "often"),
])
def test_usage_errors_are_one_line_pointing_to_help(argv, says, capsys):
    with pytest.raises(SystemExit) as ei:
        main(argv)
    assert ei.value.code == 2
    line = one_line_error(capsys, argv[0])
    assert says in line, line
    pointer = f"(see fastdqn {argv[0]} --help)"
    assert line.endswith(pointer), line
    with pytest.raises(SystemExit) as ei:  # the help it points to exists, as argparse's own help
        main(pointer.removeprefix("(see fastdqn ").removesuffix(")").split())
    assert ei.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: fastdqn {argv[0]} ")


@pytest.mark.parametrize("argv,says", [([], "required"), (["bogus"], "bogus"), (["--bogus"], "required")])
def test_top_level_usage_errors_are_one_line(argv, says, capsys):
    with pytest.raises(SystemExit) as ei:
        main(argv)
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("fastdqn: error: ") and says in err
    assert err.rstrip().endswith("(see fastdqn --help)")


@pytest.mark.parametrize("flag", ["--config", "--resume", "--out", "--preset"])
@pytest.mark.parametrize("resume", [False, True])
def test_empty_config_path_is_refused(resume, flag, tiny_run, tmp_path, capsys, monkeypatch):
    if resume and flag == "--resume":
        pytest.skip("one --resume only")
    monkeypatch.chdir(tmp_path)  # taken as "no config", train would write runs/<env>-<timestamp> here
    before = snapshot(tiny_run)
    argv = ["train", flag, "", *(["--resume", str(tiny_run)] if resume else TINY_FLAGS)]
    assert main(argv) == 2
    assert flag in one_line_error(capsys, "train")
    assert list(tmp_path.iterdir()) == []
    assert snapshot(tiny_run) == before


@pytest.mark.parametrize("flags,words", [
    (["--gamma", "1.5"], ["gamma", "1.5"]),
    (["--batch_size", "64", "--buffer_size", "32"], ["batch_size", "buffer_size"]),
    (["--total_steps", "-5"], ["total_steps", "-5"]),
    (["--num_envs", "0"], ["num_envs"]),
])
def test_bad_values(tmp_path, capsys, flags, words):
    out = tmp_path / "r"
    assert main(["train", *flags, "--out", str(out)]) == 2
    line = one_line_error(capsys, "train")
    for w in words:
        assert w in line, line
    assert not out.exists()


def test_eval_missing_path(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["eval", str(missing)]) == 2
    line = one_line_error(capsys, "eval")
    assert "nope" in line and "checkpoint" in line


def test_eval_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(bytes(range(256)) + b"definitely not a torch file")
    assert main(["eval", str(bad)]) == 2
    line = one_line_error(capsys, "eval")
    assert "cannot read checkpoint" in line
    assert main(["eval", str(tmp_path)]) == 2  # the run directory holding it
    assert "cannot read checkpoint" in one_line_error(capsys, "eval")


def test_play_missing_path(tmp_path, capsys):
    assert main(["play", str(tmp_path / "nope"), "--gif", str(tmp_path / "x.gif")]) == 2
    one_line_error(capsys, "play")
    assert not (tmp_path / "x.gif").exists()


def test_eval_bad_episodes(tiny_run, capsys):
    assert main(["eval", str(tiny_run), "--episodes", "0"]) == 2
    assert "episodes" in one_line_error(capsys, "eval")


def test_train_into_non_empty_out_fails_untouched(tiny_run, capsys):
    before = snapshot(tiny_run)
    assert main(["train", "--out", str(tiny_run), *TINY_FLAGS]) == 2
    line = one_line_error(capsys, "train")
    assert str(tiny_run) in line and "not empty" in line
    assert snapshot(tiny_run) == before  # byte-identical, nothing added


def test_train_into_existing_file_fails(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("keep")
    assert main(["train", "--out", str(f), *TINY_FLAGS]) == 2
    one_line_error(capsys, "train")
    assert f.read_text() == "keep"


def test_resume_disallowed_override(tiny_run, capsys):
    before = snapshot(tiny_run)
    assert main(["train", "--resume", str(tiny_run), "--num_envs", "4"]) == 2
    line = one_line_error(capsys, "train")
    assert "num_envs" in line and "total_steps" in line  # names the flag and what may change
    assert snapshot(tiny_run) == before


def test_resume_out_mismatch(tiny_run, tmp_path, capsys):
    before = snapshot(tiny_run)
    assert main(["train", "--resume", str(tiny_run), "--out", str(tmp_path / "other")]) == 2
    one_line_error(capsys, "train")
    assert snapshot(tiny_run) == before
    assert not (tmp_path / "other").exists()


def test_resume_missing_run(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "nope")]) == 2
    assert "nope" in one_line_error(capsys, "train")


def test_resume_allowed_override(tiny_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["train", "--resume", str(run), "--total_steps", "400"]) == 0
    capsys.readouterr()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 400
    assert json.loads((run / "config.json").read_text())["total_steps"] == 400


# --- populations ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pop_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "pop"
    assert main(["train", "--population", "2", "--seed", "5", "--num_envs", "4", "--torch_threads", "1",
                 "--out", str(out), *TINY_FLAGS]) == 0
    return out


def test_train_population(pop_run, capsys):
    summary = json.loads((pop_run / "summary.json").read_text())
    assert summary["population"] == 2
    assert [a["seed"] for a in summary["agents"]] == [5, 6]  # agent k: SEED + k
    assert summary["env_steps"] == 200  # per agent
    cfg = json.loads((pop_run / "config.json").read_text())
    assert cfg["population"] == 2 and cfg["seed"] == 5 and [a["seed"] for a in cfg["agents"]] == [5, 6]


def test_train_population_output_line(tmp_path, capsys):
    out = tmp_path / "pop"
    assert main(["train", "--population", "2", "--num_envs", "4", "--torch_threads", "1", "--out", str(out),
                 *TINY_FLAGS]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert lines[0].startswith(f"{summary['agents_solved']}/2 agents solved")
    assert str(out) in lines[0]


def test_eval_and_play_agent(pop_run, tmp_path, capsys):
    assert main(["eval", str(pop_run), "--agent", "1", "--episodes", "3"]) == 0
    assert "agent 1" in capsys.readouterr().out
    gif = tmp_path / "a1.gif"
    assert main(["play", str(pop_run), "--agent", "1", "--gif", str(gif), "--steps", "20"]) == 0
    assert gif.exists() and "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["eval", "play"])
def test_agent_out_of_range(pop_run, tmp_path, capsys, command):
    extra = ["--gif", str(tmp_path / "x.gif")] if command == "play" else []
    assert main([command, str(pop_run), "--agent", "5", *extra]) == 2
    line = one_line_error(capsys, command)
    assert "agent" in line and "5" in line
    assert not (tmp_path / "x.gif").exists()


@pytest.mark.parametrize("flags", [["--population", "2"], ["--population", "1"], ["--preset", "fast"]])
def test_resume_with_population_or_preset(tiny_run, capsys, flags):
    before = snapshot(tiny_run)
    assert main(["train", "--resume", str(tiny_run), *flags]) == 2
    line = one_line_error(capsys, "train")
    assert flags[0] in line and "--resume" in line
    assert snapshot(tiny_run) == before


@pytest.mark.parametrize("flags,words", [
    (["--population", "0"], ["population", "0"]),
    (["--population", "2", "--gamma", "1.5"], ["gamma", "1.5"]),
])
def test_bad_population_values(tmp_path, capsys, flags, words):
    out = tmp_path / "r"
    assert main(["train", *flags, "--out", str(out), *TINY_FLAGS]) == 2
    line = one_line_error(capsys, "train")
    for w in words:
        assert w in line, line
    assert not out.exists()


def test_resume_population_keeps_its_agents(pop_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pop_run, run)
    assert main(["train", "--resume", str(run), "--total_steps", "400"]) == 0
    assert "/2 agents solved" in capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 400 and [a["seed"] for a in summary["agents"]] == [5, 6]


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fastdqn.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_subprocess_errors_have_no_traceback(tmp_path):
    p = run_cli("train", "--preset", "bogus", "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip() == ("fastdqn train: error: unknown preset 'bogus'; presets are: "
                                + ", ".join(["notebook", "cleanrl", "fast", "acrobot", "mountaincar", "lunarlander",
                                             "breakout", "spaceinvaders", "freeway", "asterix", "seaquest"]))
    assert "Traceback" not in p.stderr + p.stdout
    assert not (tmp_path / "r").exists()

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02garbage" * 20)
    p = run_cli("eval", str(bad), cwd=tmp_path)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "cannot read checkpoint" in p.stderr and "Traceback" not in p.stderr


def test_subprocess_usage_error_is_one_line(tmp_path):
    p = run_cli("train", "--loss", "l1", "--out", str(tmp_path / "r"), cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.splitlines() == [p.stderr.strip()], p.stderr  # exactly one line, no usage block
    assert p.stderr.startswith("fastdqn train: error: ") and p.stderr.rstrip().endswith("(see fastdqn train --help)")
    assert not (tmp_path / "r").exists()


def test_ctrl_c_writes_checkpoint_and_summary_then_resume_continues(tmp_path):
    """SIGINT mid-run: exit 130, checkpoint + summary (interrupted) written; --resume continues."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fastdqn.cli", "train", "--out", str(out), "--total_steps", "10000000",
           "--stop_when_solved", "false", "--eval_every", "0", "--progress", "false", "--plot", "false"]
    # A shell without job control starts background jobs with SIGINT ignored, and Python then keeps
    # it ignored: give the child the default disposition so it sees Ctrl-C as a terminal would.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (out / "metrics.csv").exists() or (out / "metrics.csv").stat().st_size < 2000:
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()  # never leave a 10M-step run behind a failed wait
            pytest.fail(f"no metrics within 120 s (exit {proc.poll()}): {proc.communicate()}")
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "--resume" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and 0 < summary["env_steps"] < 10_000_000
    steps = summary["env_steps"]

    resumed = subprocess.run([sys.executable, "-m", "fastdqn.cli", "train", "--resume", str(out), "--total_steps",
                              str(steps + 800), "--progress", "false", "--plot", "false"],
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    after = json.loads((out / "summary.json").read_text())
    assert after["interrupted"] is False and after["env_steps"] == steps + 800


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "MountainCar-v0"])
def test_bench_env_reports_step_out_and_rollout(backend, env_id, capsys):
    assert main(["bench-env", "--env", env_id, "--backend", backend, "--num-envs", "64", "--steps", "4",
                 "--rollout-steps", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0].split()[:3] for line in lines] == [[env_id, backend, m]
                                                                  for m in ("step", "step(out=)", "rollout(2)")]
    for line in lines:
        assert float(line.split(":")[1].split()[0]) > 0 and line.endswith("at N=64")


@pytest.mark.parametrize("flags, words", [(["--steps", "0"], "--steps must be at least 1"),
                                          (["--rollout-steps", "-1"], "--rollout-steps must be at least 1"),
                                          (["--num-envs", "0"], "num_envs must be an integer"),
                                          (["--backend", "numba", "--device", "cuda"], "numba backend runs on the CPU"),
                                          (["--env", "TestCliGym-v0"], "measures native envs"),
                                          (["--env", "Nope-v0"], "unknown env id")])
def test_bench_env_bad_input(flags, words, capsys):
    import gymnasium as gym

    if "TestCliGym-v0" not in gym.registry:  # a Gymnasium id that is not native (Box obs, Discrete actions)
        gym.register("TestCliGym-v0", entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv",
                     max_episode_steps=10)
    assert main(["bench-env", *flags]) == 2
    assert words in one_line_error(capsys, "bench-env")
