"""End-to-end time to solve: the ``fastdqn train`` CLI as a subprocess, over seeds.

    python bench/time_to_solve.py [--preset fast] [--seeds 0 1 2 3 4 5 6 7 8 9] [--no-sb3] [-- EXTRA_TRAIN_ARGS]

e.g. ``python bench/time_to_solve.py --preset fast -- --num_envs 16`` (everything after ``--`` is passed
to ``fastdqn train`` unchanged, before this script's own ``--seed``, ``--out`` and ``--progress false``).

For each seed it runs ``fastdqn train --preset P [EXTRA] --seed S --out <fresh temp dir> --progress false``
and times it from this (parent) process with ``time.perf_counter`` around ``subprocess.run``: process
start, imports, set-up, training, outputs, exit. From the run's summary.json it records solved,
solved_at_env_step, env_steps, updates, wall_time_s (in-process train time), env_steps_per_s,
updates_per_s and the torch.compile mode used; updates to solve come from the run's evals.csv.

Each trained policy is then evaluated on Gymnasium's own env (CartPole-v1 for the default preset: the
run's env_id) with ``fastdqn.evaluate.gymnasium_returns(load_policy(run), env_id, 100, seed=10_000 + seed)``
(reset seeds unrelated to training); success = mean return >= the env's threshold (475 for v1).

Also measured: ``startup_s``, the median of 3 ``python -c "import fastdqn.train"`` subprocesses (process
start + imports); ``compile_s``, when the runs used a torch.compile mode other than "none" (e.g.
``-- --compile default``): in this process, a single-agent ``fastdqn.engine.Engine`` with the runs' config,
device and env backend, its ``iteration`` compiled as train() compiles it, first iteration minus the median
of the next 20, once without and once with learning (two graphs), summed (0 when the mode is "none", what
``--compile auto`` resolves to on every device). It runs after the CLI runs, so inductor's on-disk cache is
warm: it is what a run pays with a warm cache; a first run on a cold cache pays several times more (CPU, fast
preset, 4000 steps, one run each on a 2-core CPU: 25 s in train cold, 4.7 s warm, 1.3 s eager).

Optional comparison: when ``stable_baselines3`` is importable (it is not installed by this project),
SB3 DQN with rl-zoo's CartPole-v1 hyperparameters, one subprocess per seed, timed and evaluated the same
way (``model.predict(obs, deterministic=True)`` as the policy). SB3 trains its full 5e4 steps (no early
stop), so its time is time-to-budget, not time-to-solve.

Writes bench/results/time_to_solve_<preset>.json and .png (``--quick``: a tiny smoke run, 2 seeds,
short budget, written with a ``_quick`` suffix).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine_info, median, write_json  # noqa: E402

EVAL_SEED_OFFSET = 10_000
QUICK_EXTRA = ["--total_steps", "4000", "--eval_every", "2000", "--eval_episodes", "10"]

# rl-baselines3-zoo hyperparams/dqn.yml, CartPole-v1.
SB3_HYPERPARAMS = {
    "learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100_000, "learning_starts": 1000, "gamma": 0.99,
    "target_update_interval": 10, "train_freq": 256, "gradient_steps": 128, "exploration_fraction": 0.16,
    "exploration_final_eps": 0.04, "policy_kwargs": {"net_arch": [256, 256]},
}
SB3_TIMESTEPS = 50_000
# Run as ``python -c SB3_SCRIPT seed out_dir timesteps hyperparams_json``: what a user of SB3 pays,
# nothing of fastdqn imported.
SB3_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
import gymnasium as gym
from stable_baselines3 import DQN
seed, out, timesteps, hp = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
model = DQN("MlpPolicy", gym.make("CartPole-v1"), seed=seed, verbose=0, **hp)
t1 = time.perf_counter()
model.learn(total_timesteps=timesteps)
t2 = time.perf_counter()
model.save(out + "/model.zip")
summary = {"setup_s": t1 - t0, "learn_s": t2 - t1, "num_timesteps": int(model.num_timesteps),
           "updates": int(getattr(model, "_n_updates", -1)), "device": str(model.device)}
with open(out + "/summary.json", "w") as f:
    json.dump(summary, f)
"""


def fastdqn_command() -> list[str]:
    """The installed ``fastdqn`` console script beside this interpreter, else ``python -m fastdqn.cli``."""
    script = Path(sys.executable).with_name("fastdqn")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fastdqn.cli"]


def startup_time(repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import fastdqn.train"], check=True)
        times.append(time.perf_counter() - t)
    return times


def timed_run(cmd: list[str], timeout: float | None) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - t, proc


def gym_eval(policy, env_id: str, episodes: int, seed: int) -> dict:
    import numpy as np

    from fastdqn.envs import spec
    from fastdqn.evaluate import gymnasium_returns

    rets = gymnasium_returns(policy, env_id, episodes, seed=seed)
    threshold = spec(env_id).reward_threshold
    return {"gym_eval_env": env_id, "gym_eval_seed": seed, "gym_eval_episodes": episodes,
            "gym_eval_mean": float(np.mean(rets)), "gym_eval_std": float(np.std(rets)),
            "gym_eval_min": float(np.min(rets)), "success": bool(np.mean(rets) >= threshold),
            "success_threshold": threshold}


def updates_at(run_dir: Path, env_step: int | None) -> int | None:
    """Updates done when the solving evaluation ran (evals.csv), or None."""
    if env_step is None or not (run_dir / "evals.csv").exists():
        return None
    with open(run_dir / "evals.csv", newline="") as f:
        for row in csv.DictReader(f):
            if int(row["env_step"]) == env_step:
                return int(row["updates"])
    return None


def run_fastdqn(seed: int, args, extra: list[str]) -> tuple[dict, dict | None]:
    from fastdqn.checkpoint import load_policy

    with tempfile.TemporaryDirectory(prefix="fastdqn-tts-") as d:
        run_dir = Path(d) / "run"
        cmd = [*fastdqn_command(), "train", "--preset", args.preset, *extra, "--seed", str(seed), "--out", str(run_dir),
               "--progress", "false"]
        wall, proc = timed_run(cmd, args.timeout)
        row = {"seed": seed, "end_to_end_s": wall, "returncode": proc.returncode}
        if proc.returncode != 0 or not (run_dir / "summary.json").exists():
            row["error"] = (proc.stderr or proc.stdout).strip()[-4000:]
            print(f"fastdqn seed={seed}: FAILED (exit {proc.returncode}): {row['error'][-300:]}", flush=True)
            return row, None
        s = json.loads((run_dir / "summary.json").read_text())
        for k in ("solved", "solved_at_env_step", "env_steps", "updates", "wall_time_s", "env_steps_per_s",
                  "updates_per_s", "eval_mean_return", "compile", "device", "env_backend", "env_id"):
            row[k] = s.get(k)
        row["updates_to_solve"] = updates_at(run_dir, s.get("solved_at_env_step"))
        row["outside_train_s"] = wall - s["wall_time_s"]  # process start, imports, CLI, plot/TensorBoard, exit
        config = json.loads((run_dir / "config.json").read_text())
        row.update(gym_eval(load_policy(run_dir), s["env_id"], args.eval_episodes, EVAL_SEED_OFFSET + seed))
    print(f"fastdqn seed={seed}: {wall:6.2f} s end-to-end ({row['wall_time_s']:.2f} s in train), solved={row['solved']} "
          f"at {row['solved_at_env_step']} env steps / {row['updates_to_solve']} updates; Gymnasium eval "
          f"{row['gym_eval_mean']:.1f} +- {row['gym_eval_std']:.1f} -> success={row['success']}", flush=True)
    return row, config


def run_sb3(seed: int, args, timesteps: int) -> dict:
    from stable_baselines3 import DQN

    with tempfile.TemporaryDirectory(prefix="sb3-tts-") as d:
        cmd = [sys.executable, "-c", SB3_SCRIPT, str(seed), d, str(timesteps), json.dumps(SB3_HYPERPARAMS)]
        wall, proc = timed_run(cmd, args.timeout)
        row = {"seed": seed, "end_to_end_s": wall, "returncode": proc.returncode}
        if proc.returncode != 0 or not (Path(d) / "summary.json").exists():
            row["error"] = (proc.stderr or proc.stdout).strip()[-4000:]
            print(f"sb3 seed={seed}: FAILED (exit {proc.returncode}): {row['error'][-300:]}", flush=True)
            return row
        row.update(json.loads((Path(d) / "summary.json").read_text()))
        model = DQN.load(str(Path(d) / "model.zip"), device="cpu")
    row.update(gym_eval(lambda obs: model.predict(obs, deterministic=True)[0], "CartPole-v1", args.eval_episodes,
                        EVAL_SEED_OFFSET + seed))
    print(f"sb3     seed={seed}: {wall:6.2f} s end-to-end ({row['learn_s']:.2f} s in learn); Gymnasium eval "
          f"{row['gym_eval_mean']:.1f} +- {row['gym_eval_std']:.1f} -> success={row['success']}", flush=True)
    return row


def compile_time(config: dict, device: str, backend: str, mode: str, next_calls: int = 20) -> dict:
    """What the CLI runs paid to compile, in this process: a single-agent ``Engine`` with the runs' config,
    device and env backend, its ``iteration`` wrapped as train() wraps it (``torch.compile(mode=mode,
    fullgraph=backend == "torch")``). The iteration compiles once without and once with learning; for each,
    first call minus the median of the next ``next_calls``, summed."""
    import torch

    from fastdqn.config import DQNConfig
    from fastdqn.engine import Engine
    from fastdqn.train import set_threads

    cfg = DQNConfig.from_dict(config)
    dev = torch.device(device)
    set_threads(cfg, 1, dev)  # as train() does for a single agent
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    engine = Engine([cfg], device=dev, backend=backend)
    fn = torch.compile(engine.iteration, mode=mode, fullgraph=backend == "torch")
    out = {}
    for learn in (False, True):  # the prefill fills the replay before the first update samples it
        times = []
        for _ in range(next_calls + 1):
            sync()
            t = time.perf_counter()
            fn(learn)
            sync()
            times.append(time.perf_counter() - t)
        steady = median(times[1:])
        out["learn" if learn else "act"] = {"compile_s": times[0] - steady, "first_s": times[0], "steady_s": steady}
    return {"compile_s": out["act"]["compile_s"] + out["learn"]["compile_s"], "iterations": out,
            "steady_repeats": next_calls, "mode": mode, "device": device, "env_backend": backend,
            "batch_size": cfg.batch_size, "num_envs": cfg.num_envs}


def summarize(rows: list[dict], kind: str = "fastdqn") -> dict:
    ok = [r for r in rows if "error" not in r]
    solved = [r for r in ok if r.get("solved")]

    def med(key, sel):
        xs = [r[key] for r in sel if r.get(key) is not None]
        return median(xs) if xs else None

    return {
        "runs": len(rows), "failed_runs": len(rows) - len(ok),
        "success_count": sum(r["success"] for r in ok),
        "median_end_to_end_s": med("end_to_end_s", ok),
        "median_end_to_end_s_successful": med("end_to_end_s", [r for r in ok if r["success"]]),
        "median_gym_eval_mean": med("gym_eval_mean", ok),
        **({"solved_in_training_count": len(solved),
            "median_in_process_wall_s": med("wall_time_s", ok),
            "median_outside_train_s": med("outside_train_s", ok),
            "median_env_steps_to_solve": med("solved_at_env_step", solved),
            "median_updates_to_solve": med("updates_to_solve", solved),
            "median_env_steps_per_s": med("env_steps_per_s", ok),
            "median_updates_per_s": med("updates_per_s", ok)} if kind == "fastdqn" else
           {"median_learn_s": med("learn_s", ok)}),
    }


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="Arguments after -- are passed to `fastdqn train` unchanged.")
    p.add_argument("--preset", default="fast", help="fastdqn train --preset (default: fast)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--eval-episodes", type=int, default=100, help="Gymnasium evaluation episodes per policy")
    p.add_argument("--startup-repeats", type=int, default=3, help="`python -c 'import fastdqn.train'` repeats")
    p.add_argument("--no-sb3", action="store_true", help="skip the stable-baselines3 comparison")
    p.add_argument("--sb3-timesteps", type=int, default=SB3_TIMESTEPS)
    p.add_argument("--timeout", type=float, default=None, help="seconds per training subprocess (default: none)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run: 2 seeds, short budgets, *_quick output")
    p.add_argument("--out", default=None, help="output name stem (default: time_to_solve_<preset>[_quick])")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds = args.seeds[:2]
        extra = [*extra, *QUICK_EXTRA]
        args.sb3_timesteps = min(args.sb3_timesteps, 2000)
        args.startup_repeats = 1
    stem = args.out or f"time_to_solve_{args.preset}" + ("_quick" if args.quick else "")

    startup = startup_time(args.startup_repeats)
    print(f"startup (python -c 'import fastdqn.train'): {median(startup):.2f} s (median of {len(startup)})", flush=True)

    rows, config = [], None
    for seed in args.seeds:
        row, cfg = run_fastdqn(seed, args, extra)
        rows.append(row)
        config = config or cfg

    modes = sorted({r["compile"] for r in rows if r.get("compile")})
    if not modes:
        compile_info = {"compile_s": None, "note": "no run finished: compile mode unknown, not measured"}
    elif modes == ["none"]:
        compile_info = {"compile_s": 0.0, "note": "the runs used compile mode 'none' (eager; the CPU default): "
                                                  "no compile time"}
    else:
        mode = next(m for m in modes if m != "none")
        run = next(r for r in rows if r.get("compile") == mode)
        compile_info = compile_time(config, run["device"], run["env_backend"], mode)
        compile_info["note"] = ("in-process single-agent Engine with the runs' config, device, env backend and compile "
                                "mode: first iteration minus the median of the next 20, without and with learning, "
                                "summed (the CLI runs paid about this inside wall_time_s)")
        print(f"compile ({mode}, {run['device']}): {compile_info['compile_s']:.2f} s", flush=True)

    sb3_rows, sb3_note, have_sb3 = [], "skipped (--no-sb3)", False
    if not args.no_sb3:
        try:
            import stable_baselines3

            have_sb3 = True
            sb3_note = (f"stable_baselines3 {stable_baselines3.__version__}, rl-zoo CartPole-v1 hyperparameters, "
                        f"{args.sb3_timesteps} timesteps, no early stop")
        except ImportError:
            sb3_note = "stable_baselines3 not installed: SB3 comparison skipped"
        print(sb3_note, flush=True)
    if have_sb3:
        sb3_rows = [run_sb3(seed, args, args.sb3_timesteps) for seed in args.seeds]

    summary = {"fastdqn": summarize(rows), "startup_s": median(startup), "compile_s": compile_info["compile_s"]}
    if sb3_rows:
        summary["sb3"] = summarize(sb3_rows, "sb3")
    payload = {
        "benchmark": "time_to_solve", "machine": machine_info(), "preset": args.preset, "extra_train_args": extra,
        "command": [*fastdqn_command(), "train", "--preset", args.preset, *extra, "--seed", "SEED", "--out", "TMPDIR",
                    "--progress", "false"],
        "quick": args.quick, "seeds": args.seeds, "eval_seed_offset": EVAL_SEED_OFFSET,
        "summary": summary, "startup_s_repeats": startup, "compile": compile_info, "results": rows,
        "sb3": {"note": sb3_note, "hyperparameters": SB3_HYPERPARAMS, "timesteps": args.sb3_timesteps, "results": sb3_rows},
    }
    path = write_json(f"{stem}.json", payload)
    plot(rows, sb3_rows, summary, RESULTS / f"{stem}.png", payload)
    f = summary["fastdqn"]
    print(f"fastdqn: success {f['success_count']}/{f['runs']}, median end-to-end {f['median_end_to_end_s']} s, "
          f"median env steps to solve {f.get('median_env_steps_to_solve')}, median updates to solve "
          f"{f.get('median_updates_to_solve')}, startup {summary['startup_s']:.2f} s")
    print("wrote", path)


def plot(rows, sb3_rows, summary, path, payload):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    width = 0.4 if sb3_rows else 0.8
    for k, (name, sel) in enumerate([("fastdqn", rows), ("sb3", sb3_rows)]):
        if not sel:
            continue
        off = (k - 0.5) * width if sb3_rows else 0.0
        colors = ["tab:gray" if "error" in r else ("tab:green" if r["success"] else "tab:red") for r in sel]
        ax1.bar([r["seed"] + off for r in sel], [r["end_to_end_s"] for r in sel], width=width, color=colors,
                hatch="//" if name == "sb3" else None, edgecolor="black", linewidth=0.5)
        med = summary[name]["median_end_to_end_s"]
        if med is not None:
            ax1.axhline(med, color="black", ls="--" if name == "fastdqn" else ":", lw=1,
                        label=f"{name} median {med:.1f} s")
    ax1.axhline(summary["startup_s"], color="tab:blue", lw=1, label=f"startup (imports) {summary['startup_s']:.2f} s")
    handles, _ = ax1.get_legend_handles_labels()
    handles += [Patch(color="tab:green", label="success (Gymnasium eval)"), Patch(color="tab:red", label="failure")]
    if sb3_rows:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="SB3 DQN (rl-zoo)"))
    ax1.legend(handles=handles, fontsize=8)
    ax1.set_xticks([r["seed"] for r in rows])
    ax1.set_xlabel("seed")
    ax1.set_ylabel("end-to-end wall time (s)")
    extra = " ".join(payload["extra_train_args"])
    ax1.set_title(f"fastdqn train --preset {payload['preset']} {extra}".strip(), fontsize=9)

    ok = [r for r in rows if "error" not in r]
    solved = [r for r in ok if r["solved"]]
    unsolved = [r for r in ok if not r["solved"]]
    if solved:
        ax2.bar([r["seed"] for r in solved], [r["solved_at_env_step"] for r in solved], color="tab:green",
                label="env steps to solve (in-training eval)")
    if unsolved:
        ax2.bar([r["seed"] for r in unsolved], [r["env_steps"] for r in unsolved], color="tab:red", hatch="xx",
                label="not solved (budget used)")
    med = summary["fastdqn"].get("median_env_steps_to_solve")
    if med is not None:
        ax2.axhline(med, color="black", ls="--", lw=1, label=f"median {med:,.0f}")
    ax2.set_xticks([r["seed"] for r in rows])
    ax2.set_xlabel("seed")
    ax2.set_ylabel("env steps")
    if ok:
        ax2.legend(fontsize=8)
    m = payload["machine"]
    ax2.set_title(f"{m['cpu']} ({m['cpu_count']} cores), torch {m['torch']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
