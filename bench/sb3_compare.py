"""Time to threshold, side by side: fastdqn's tuned preset for an env vs Stable-Baselines3 DQN with rl-zoo's settings.

    python bench/sb3_compare.py --env Acrobot-v1 --seeds 0 1 2 [--no-sb3] [--no-fastdqn] [--sb3-timesteps N] [--quick]
    python bench/sb3_compare.py --env MountainCar-v0 --seeds 0 1 2 3 4 5 6 7 8 9 [-- EXTRA_FASTDQN_TRAIN_ARGS]

Envs: Acrobot-v1 (threshold -100), MountainCar-v0 (-110), CartPole-v1 (475); the threshold is fastdqn's env spec's
(Gymnasium's ``reward_threshold``). Seeds run in order, fastdqn then SB3 for each seed, one subprocess each, and
the JSON is rewritten after every run, so a run cut off keeps what finished.

fastdqn: ``fastdqn train --env ENV [EXTRA] --seed S --out <fresh temp dir> --progress false`` (the env's tuned
preset, picked by ``--env``; it stops when solved), timed from this (parent) process around ``subprocess.run``:
interpreter start, imports, set-up, training with its in-training evaluations (100 episodes, confirmed by 200
fresh ones), outputs (checkpoint, CSVs, plot), exit. From its summary.json (agents[0]): solved,
solved_at_env_step, solved_at_wall_s, and wall_time_s (in-process train time). Its time to threshold is that
whole process wall time when solved, else none (unsolved).

SB3: one ``python -c SB3_SCRIPT`` subprocess per seed that imports nothing of fastdqn:
``DQN("MlpPolicy", gym.make(ENV), seed=S, **zoo)`` with rl-baselines3-zoo's hyperparameters for the env (ZOO_DQN,
copied from ZOO_SOURCE), learning for zoo's n_timesteps (``--sb3-timesteps`` overrides; SB3's exploration
schedule is a fraction of it, so it stretches with it), with torch's intra-op threads set to 1 (``--sb3-threads``; 0
keeps torch's default of one per core): what fastdqn uses for one agent and what zoo's train.py suggests with
``--num-threads 1`` ("makes things run faster on cpu"). With torch's default 2 threads on a busy 2-core CPU, SB3's
Acrobot updates ran 70x slower (170 ms vs 2.4 ms per env step). Zoo's dqn.yml has no ``normalize``, ``env_wrapper``,
``frame_stack`` or ``n_envs`` for these envs, so zoo trains them on one plain env, wrapped in a Monitor inside a
DummyVecEnv, which is what SB3 does itself with a plain env: nothing left out. (Zoo would also add its own
EvalCallback only when asked to with ``--eval-freq``; the callback here replaces it.)
To give SB3 a time to threshold at all, a callback runs, every ``--eval-every`` env steps (default: the fastdqn
preset's eval_every, 5000 for Acrobot and MountainCar, 2000 for CartPole), a greedy evaluation
(``model.predict(obs, deterministic=True)``) of ``--eval-episodes`` episodes (default 20) on a separate Gymnasium
vector env, and stops training the first time the mean reaches the threshold. This favours SB3: 20 episodes are
a much noisier, easier bar than fastdqn's 100 + a confirmation of 200, and its evaluations are cheap because
they are few. It records, at that evaluation:

- ``process_wall_to_threshold_s``: from the parent launching the subprocess (``time.time()`` before the launch,
  compared with the child's ``time.time()`` at the end of the crossing evaluation) - interpreter start, imports,
  set-up, learning and the evaluations - comparable with fastdqn's process wall time;
- ``learn_s_to_threshold_excl_evals``: wall time inside ``learn()`` up to that point, minus the time spent in
  evaluations: what SB3 alone is charged for training.

Both tools' policies (fastdqn: the checkpoint's, which for a solved run are the weights that passed its
evaluation; SB3: the model when training stopped, saved after the timing) are then scored in this process on
100 fresh episodes of Gymnasium's own env, reset with seed 10_000 + S:
``fastdqn.evaluate.gymnasium_returns(policy, ENV, 100, seed=10_000 + S)``, SB3's policy being
``model.predict(obs, deterministic=True)``. success = that mean >= threshold.

Summary per tool: solved (reached the threshold in training) and success counts and rates, medians over solved
seeds of the time to threshold (and over seeds both solved and successful), median env steps to threshold, and
the ratios median fastdqn / median SB3 (process wall to threshold; and fastdqn's process wall over SB3's learn time
excluding evaluations, the comparison least favourable to fastdqn). Medians over solved seeds only: read them with
the solved rates beside them.

Writes bench/results/sb3_compare_<env>.json (``--quick``: a smoke run, 1 seed, 4000 steps per tool, evaluations
every 2000 steps of 10 episodes, written as sb3_compare_<env>_quick.json).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, median, write_json  # noqa: E402

EVAL_SEED_OFFSET = 10_000  # the final Gymnasium scoring's reset seed: 10_000 + S
SCORE_EPISODES = 100
SB3_EVAL_SEED_OFFSET = 20_000  # SB3's in-training evaluations: first reset seeded 20_000 + S, then unseeded resets
QUICK_STEPS, QUICK_EVAL_EVERY, QUICK_EVAL_EPISODES = 4000, 2000, 10
QUICK_FASTDQN_EXTRA = ["--total_steps", str(QUICK_STEPS), "--eval_every", str(QUICK_EVAL_EVERY),
                       "--eval_episodes", str(QUICK_EVAL_EPISODES), "--confirm_episodes", str(2 * QUICK_EVAL_EPISODES)]

ZOO_SOURCE = {
    "repo": "DLR-RM/rl-baselines3-zoo", "path": "hyperparams/dqn.yml",
    "commit": "22e3ff2450fd92033f7f032915e1f64894a09584",  # master, 2026-04-23
    "file_last_changed_in": "eec15dc (2026-04-01); the Acrobot-v1 and MountainCar-v0 entries date from 3c0dec8 (2020-07-31)",
}
# rl-baselines3-zoo hyperparams/dqn.yml at ZOO_SOURCE's commit (all have policy 'MlpPolicy'; none has normalize,
# env_wrapper, frame_stack or n_envs). n_timesteps is learn()'s total_timesteps, the rest are DQN(...) arguments.
ZOO_DQN = {
    "Acrobot-v1": {  # "# Tuned"
        "n_timesteps": 100_000, "learning_rate": 6.3e-4, "batch_size": 128, "buffer_size": 50_000, "learning_starts": 0,
        "gamma": 0.99, "target_update_interval": 250, "train_freq": 4, "gradient_steps": -1, "exploration_fraction": 0.12,
        "exploration_final_eps": 0.1, "policy_kwargs": {"net_arch": [256, 256]},
    },
    "MountainCar-v0": {  # "# Tuned"
        "n_timesteps": 120_000, "learning_rate": 4e-3, "batch_size": 128, "buffer_size": 10_000, "learning_starts": 1000,
        "gamma": 0.98, "target_update_interval": 600, "train_freq": 16, "gradient_steps": 8, "exploration_fraction": 0.2,
        "exploration_final_eps": 0.07, "policy_kwargs": {"net_arch": [256, 256]},
    },
    "CartPole-v1": {  # "# Almost Tuned"
        "n_timesteps": 50_000, "learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100_000, "learning_starts": 1000,
        "gamma": 0.99, "target_update_interval": 10, "train_freq": 256, "gradient_steps": 128, "exploration_fraction": 0.16,
        "exploration_final_eps": 0.04, "policy_kwargs": {"net_arch": [256, 256]},
    },
}

# Run as ``python -c SB3_SCRIPT ARGS_JSON``: what a user of SB3 pays, nothing of fastdqn imported. Writes
# summary.json and model.zip (saved after the timing) into ARGS_JSON's "out".
SB3_SCRIPT = r'''
import time
T0, T0_UNIX = time.perf_counter(), time.time()
import json, sys
import numpy as np
import gymnasium as gym
import torch
import stable_baselines3
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback

a = json.loads(sys.argv[1])
if a["torch_threads"] > 0:
    torch.set_num_threads(a["torch_threads"])


class EvalStop(BaseCallback):
    """Every eval_every env steps: greedy mean return over eval_episodes episodes; stop at the threshold."""

    def __init__(self):
        super().__init__()
        self.env = gym.make_vec(a["env_id"], num_envs=a["eval_episodes"], vectorization_mode="sync")
        self.eval_s, self.evals, self.hit, self.seeded = 0.0, [], None, False

    def _on_training_start(self):
        self.t_learn = time.perf_counter()

    def _on_step(self):
        if self.num_timesteps % a["eval_every"]:
            return True
        t = time.perf_counter()
        obs, _ = self.env.reset(seed=None if self.seeded else a["eval_seed"])
        self.seeded = True
        returns = np.zeros(a["eval_episodes"])
        running = np.ones(a["eval_episodes"], dtype=bool)
        while running.any():
            action, _ = self.model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = self.env.step(action)
            returns += reward * running
            running &= ~(terminated | truncated)
        now = time.perf_counter()
        self.eval_s += now - t
        row = {"env_step": int(self.num_timesteps), "mean_return": float(returns.mean()),
               "std_return": float(returns.std()), "eval_s": now - t,
               "learn_s_excl_evals": now - self.t_learn - self.eval_s, "process_s": now - T0}
        self.evals.append(row)
        if row["mean_return"] >= a["threshold"]:
            self.hit = dict(row, unix_time=time.time(), updates=int(self.model._n_updates))
            return False
        return True


model = DQN("MlpPolicy", gym.make(a["env_id"]), seed=a["seed"], verbose=0, device=a["device"], **a["hyperparams"])
callback = EvalStop()
t1 = time.perf_counter()
model.learn(total_timesteps=a["timesteps"], callback=callback)
t2 = time.perf_counter()
summary = {
    "setup_s": t1 - T0, "learn_s": t2 - t1, "learn_s_excl_evals": t2 - t1 - callback.eval_s, "evals_s": callback.eval_s,
    "process_s_at_learn_end": t2 - T0, "t0_unix": T0_UNIX, "num_timesteps": int(model.num_timesteps),
    "updates": int(model._n_updates), "device": str(model.device), "torch_threads": torch.get_num_threads(),
    "sb3": stable_baselines3.__version__, "reached": callback.hit is not None, "hit": callback.hit, "evals": callback.evals,
}
model.save(a["out"] + "/model.zip")
with open(a["out"] + "/summary.json", "w") as f:
    json.dump(summary, f)
'''


def fastdqn_command() -> list[str]:
    """The installed ``fastdqn`` console script beside this interpreter, else ``python -m fastdqn.cli``."""
    script = Path(sys.executable).with_name("fastdqn")
    return [str(script)] if script.exists() else [sys.executable, "-m", "fastdqn.cli"]


def timed_run(cmd: list[str], timeout: float | None) -> tuple[float, float, subprocess.CompletedProcess | None]:
    """(launch unix time, wall seconds, completed process or None on timeout)."""
    launch, t = time.time(), time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc = None
    return launch, time.perf_counter() - t, proc


def failure(row: dict, proc, tool: str) -> dict:
    row["error"] = "timed out" if proc is None else (proc.stderr or proc.stdout or "").strip()[-4000:]
    row["returncode"] = None if proc is None else proc.returncode
    print(f"{tool:7s} seed={row['seed']}: FAILED ({row['error'][-300:]})", flush=True)
    return row


def score(policy, env_id: str, seed: int, threshold: float) -> dict:
    import numpy as np

    from fastdqn.evaluate import gymnasium_returns

    t = time.perf_counter()
    rets = gymnasium_returns(policy, env_id, SCORE_EPISODES, seed=EVAL_SEED_OFFSET + seed)
    return {"gym_eval_seed": EVAL_SEED_OFFSET + seed, "gym_eval_episodes": SCORE_EPISODES,
            "gym_eval_mean": float(np.mean(rets)), "gym_eval_std": float(np.std(rets)), "gym_eval_min": float(np.min(rets)),
            "gym_eval_s": time.perf_counter() - t, "success": bool(np.mean(rets) >= threshold)}


def run_fastdqn(env_id: str, seed: int, args, extra: list[str], threshold: float) -> tuple[dict, dict | None]:
    from fastdqn.checkpoint import load_policy

    with tempfile.TemporaryDirectory(prefix="fastdqn-sb3cmp-") as d:
        run_dir = Path(d) / "run"
        cmd = [*fastdqn_command(), "train", "--env", env_id, *extra, "--seed", str(seed), "--out", str(run_dir),
               "--progress", "false"]
        _, wall, proc = timed_run(cmd, args.timeout)
        row = {"tool": "fastdqn", "seed": seed, "process_wall_s": wall}
        if proc is None or proc.returncode != 0 or not (run_dir / "summary.json").exists():
            return failure(row, proc, "fastdqn"), None
        s = json.loads((run_dir / "summary.json").read_text())
        a = s["agents"][0]
        row.update(solved=bool(a["solved"]), solved_at_env_step=a["solved_at_env_step"],
                   solved_at_wall_s=a["solved_at_wall_s"], updates_at_solve=a.get("updates_at_solve"),
                   wall_time_s=s["wall_time_s"], outside_train_s=wall - s["wall_time_s"], env_steps=s["env_steps"],
                   updates=s["updates"], eval_mean_return=a["eval_mean_return"], device=s.get("device"),
                   env_backend=s.get("env_backend"), compile=s.get("compile"), solve_threshold=s.get("solve_threshold"))
        row["process_wall_to_threshold_s"] = wall if row["solved"] else None
        config = json.loads((run_dir / "config.json").read_text())
        row.update(score(load_policy(run_dir), env_id, seed, threshold))
    steps = f"at {row['solved_at_env_step']:,} env steps" if row["solved"] else f"unsolved after {row['env_steps']:,} env steps"
    print(f"fastdqn seed={seed}: {wall:7.2f} s process wall ({row['wall_time_s']:.2f} s in train), {steps}; Gymnasium "
          f"{row['gym_eval_mean']:.1f} +- {row['gym_eval_std']:.1f} -> success={row['success']}", flush=True)
    return row, config


def sb3_hyperparams(env_id: str) -> tuple[dict, int]:
    hp = dict(ZOO_DQN[env_id])
    return hp, hp.pop("n_timesteps")


def run_sb3(env_id: str, seed: int, args, threshold: float) -> dict:
    from stable_baselines3 import DQN

    hp, _ = sb3_hyperparams(env_id)
    with tempfile.TemporaryDirectory(prefix="sb3-sb3cmp-") as d:
        child = {"env_id": env_id, "seed": seed, "out": d, "timesteps": args.sb3_timesteps, "hyperparams": hp,
                 "threshold": threshold, "eval_every": args.eval_every, "eval_episodes": args.eval_episodes,
                 "eval_seed": SB3_EVAL_SEED_OFFSET + seed, "device": args.sb3_device, "torch_threads": args.sb3_threads}
        launch, wall, proc = timed_run([sys.executable, "-c", SB3_SCRIPT, json.dumps(child)], args.timeout)
        row = {"tool": "sb3", "seed": seed, "process_wall_s": wall}
        if proc is None or proc.returncode != 0 or not (Path(d) / "summary.json").exists():
            return failure(row, proc, "sb3")
        s = json.loads((Path(d) / "summary.json").read_text())
        hit = s.pop("hit")
        row.update(s)
        row["interpreter_start_s"] = s["t0_unix"] - launch  # launch to the script's first line
        row["solved"] = hit is not None
        hit = hit or dict.fromkeys(("env_step", "updates", "mean_return", "unix_time", "learn_s_excl_evals"))
        row.update(solved_at_env_step=hit["env_step"], updates_at_solve=hit["updates"],
                   crossing_eval_mean_return=hit["mean_return"], learn_s_to_threshold_excl_evals=hit["learn_s_excl_evals"],
                   process_wall_to_threshold_s=None if hit["unix_time"] is None else hit["unix_time"] - launch)
        model = DQN.load(str(Path(d) / "model.zip"), device="cpu")
    row.update(score(lambda obs: model.predict(obs, deterministic=True)[0], env_id, seed, threshold))
    if row["solved"]:
        steps = (f"threshold at {row['solved_at_env_step']:,} env steps, {row['process_wall_to_threshold_s']:.2f} s "
                 f"process wall / {row['learn_s_to_threshold_excl_evals']:.2f} s learn excl. evals")
    else:
        steps = f"unsolved after {row['num_timesteps']:,} env steps"
    print(f"sb3     seed={seed}: {wall:7.2f} s process wall ({row['learn_s']:.2f} s in learn, {row['evals_s']:.2f} s of it "
          f"evals), {steps}; Gymnasium {row['gym_eval_mean']:.1f} +- {row['gym_eval_std']:.1f} -> success={row['success']}",
          flush=True)
    return row


def summarize(rows: list[dict], time_keys: tuple[str, ...]) -> dict:
    ok = [r for r in rows if "error" not in r]
    solved = [r for r in ok if r["solved"]]
    both = [r for r in solved if r["success"]]

    def med(key, sel):
        xs = [r[key] for r in sel if r.get(key) is not None]
        return median(xs) if xs else None

    out = {"runs": len(rows), "failed_runs": len(rows) - len(ok), "solved_count": len(solved),
           "solved_rate": len(solved) / len(ok) if ok else None, "success_count": sum(r["success"] for r in ok),
           "success_rate": sum(r["success"] for r in ok) / len(ok) if ok else None,
           "median_env_steps_to_threshold": med("solved_at_env_step", solved),
           "median_gym_eval_mean": med("gym_eval_mean", ok), "median_process_wall_s_all_runs": med("process_wall_s", ok)}
    for k in time_keys:
        out[f"median_{k}"] = med(k, solved)
        out[f"median_{k}_solved_and_successful"] = med(k, both)
    return out


def ratio(a, b):
    return a / b if a is not None and b else None


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="Arguments after -- are passed to `fastdqn train` unchanged (before --seed/--out).")
    p.add_argument("--env", required=True, choices=sorted(ZOO_DQN))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--no-sb3", action="store_true", help="skip the stable-baselines3 side")
    p.add_argument("--no-fastdqn", action="store_true", help="skip the fastdqn side")
    p.add_argument("--sb3-timesteps", type=int, default=None, help="SB3 learn() budget (default: zoo's n_timesteps)")
    p.add_argument("--sb3-device", default="auto", help="SB3 DQN device (default: auto, as SB3)")
    p.add_argument("--sb3-threads", type=int, default=1,
                   help="torch threads in the SB3 process (default: 1, as fastdqn uses for one agent; 0: torch's default)")
    p.add_argument("--eval-every", type=int, default=None,
                   help="env steps between SB3's greedy evaluations (default: the fastdqn preset's eval_every)")
    p.add_argument("--eval-episodes", type=int, default=20, help="episodes per SB3 evaluation (default: 20)")
    p.add_argument("--threshold", type=float, default=None,
                   help="override the threshold SB3 stops at and both tools' success scoring; fastdqn's in-training "
                        "threshold stays the env's own. For smoke tests only: such rows are no comparison")
    p.add_argument("--timeout", type=float, default=None, help="seconds per training subprocess (default: none)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 4000 steps per tool, *_quick output")
    p.add_argument("--out", default=None, help="output name stem (default: sb3_compare_<env>[_quick])")
    args = p.parse_args(argv)

    from fastdqn.config import PRESETS, preset_for_env
    from fastdqn.envs import spec

    env_id = args.env
    preset = preset_for_env(env_id)
    threshold = spec(env_id).reward_threshold if args.threshold is None else args.threshold
    hp, zoo_timesteps = sb3_hyperparams(env_id)
    args.sb3_timesteps = args.sb3_timesteps or zoo_timesteps
    args.eval_every = args.eval_every or PRESETS[preset].eval_every
    if args.quick:
        args.seeds = args.seeds[:1]
        extra = [*extra, *QUICK_FASTDQN_EXTRA]
        args.sb3_timesteps = min(args.sb3_timesteps, QUICK_STEPS)
        args.eval_every, args.eval_episodes = QUICK_EVAL_EVERY, QUICK_EVAL_EPISODES
    stem = args.out or f"sb3_compare_{env_id}" + ("_quick" if args.quick else "")

    sb3_note = "skipped (--no-sb3)"
    if not args.no_sb3:
        import stable_baselines3

        sb3_note = (f"stable_baselines3 {stable_baselines3.__version__}, DQN MlpPolicy, rl-zoo {env_id} hyperparameters, "
                    f"up to {args.sb3_timesteps} timesteps, greedy eval of {args.eval_episodes} episodes every "
                    f"{args.eval_every} env steps, stop at the first mean >= {threshold}")
    print(f"{env_id}: threshold {threshold}, fastdqn preset {preset!r}; SB3: {sb3_note}", flush=True)

    machine = machine_info()
    import torch

    torch.set_num_threads(1)  # this process only scores policies (batched small MLPs): no thread contention
    fd_rows, sb3_rows, fd_config = [], [], None
    fd_keys = ("process_wall_to_threshold_s", "solved_at_wall_s")
    sb3_keys = ("process_wall_to_threshold_s", "learn_s_to_threshold_excl_evals")

    def payload() -> dict:
        f, s = summarize(fd_rows, fd_keys), summarize(sb3_rows, sb3_keys)
        summary = {"fastdqn": f, "sb3": s}
        if fd_rows and sb3_rows:
            summary["ratio_process_wall_to_threshold_fastdqn_over_sb3"] = ratio(
                f["median_process_wall_to_threshold_s"], s["median_process_wall_to_threshold_s"])
            summary["ratio_fastdqn_process_wall_over_sb3_learn_excl_evals"] = ratio(
                f["median_process_wall_to_threshold_s"], s["median_learn_s_to_threshold_excl_evals"])
        return {
            "benchmark": "sb3_compare", "env_id": env_id, "threshold": threshold,
            "threshold_overridden": args.threshold is not None, "quick": args.quick, "seeds": args.seeds,
            "machine": machine, "summary": summary,
            "fastdqn": {"preset": preset, "extra_train_args": extra, "config": fd_config,
                        "command": [*fastdqn_command(), "train", "--env", env_id, *extra, "--seed", "SEED", "--out", "TMPDIR",
                                    "--progress", "false"],
                        "time_to_threshold": "process wall time of the whole `fastdqn train` subprocess, when solved",
                        "results": fd_rows},
            "sb3": {"note": sb3_note, "zoo_source": ZOO_SOURCE, "hyperparameters": hp, "zoo_n_timesteps": zoo_timesteps,
                    "timesteps": args.sb3_timesteps, "device": args.sb3_device,
                    "torch_threads": args.sb3_threads, "eval_every": args.eval_every,
                    "eval_episodes": args.eval_episodes, "eval_seed_offset": SB3_EVAL_SEED_OFFSET,
                    "time_to_threshold": "process_wall_to_threshold_s: launch to the end of the first eval with mean >= "
                                         "threshold; learn_s_to_threshold_excl_evals: inside learn(), evals subtracted",
                    "results": sb3_rows},
            "scoring": {"episodes": SCORE_EPISODES, "seed_offset": EVAL_SEED_OFFSET,
                        "how": "fastdqn.evaluate.gymnasium_returns(policy, env_id, 100, seed=10_000 + seed)"},
        }

    path = None
    for seed in args.seeds:
        if not args.no_fastdqn:
            row, cfg = run_fastdqn(env_id, seed, args, extra, threshold)
            fd_rows.append(row)
            fd_config = fd_config or cfg
            path = write_json(f"{stem}.json", payload())
        if not args.no_sb3:
            sb3_rows.append(run_sb3(env_id, seed, args, threshold))
            path = write_json(f"{stem}.json", payload())

    final = payload()["summary"]
    for tool, keys in (("fastdqn", fd_keys), ("sb3", sb3_keys)):
        s = final[tool]
        if s["runs"]:
            times = ", ".join(f"median {k} {_fmt(s['median_' + k])}" for k in keys)
            print(f"{tool}: solved {s['solved_count']}/{s['runs']}, success {s['success_count']}/{s['runs']}, {times}, "
                  f"median env steps to threshold {_fmt(s['median_env_steps_to_threshold'])}")
    if "ratio_process_wall_to_threshold_fastdqn_over_sb3" in final:
        r1 = final["ratio_process_wall_to_threshold_fastdqn_over_sb3"]
        r2 = final["ratio_fastdqn_process_wall_over_sb3_learn_excl_evals"]
        print(f"ratio fastdqn/sb3 (process wall to threshold): {_fmt(r1)}; fastdqn process wall / sb3 learn excl. evals: "
              f"{_fmt(r2)}")
    print("wrote", path)


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


if __name__ == "__main__":
    main()
