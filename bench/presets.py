"""Confirmation runs of the tuned presets: success rate and time to threshold over fresh seeds.

    python bench/presets.py [--envs acrobot mountaincar cartpole lunarlander] [--seed 1000]
                            [--agents N] [--device cpu] [--no-baseline]

For each env it runs its preset as ``fastdqn train --preset P --population K --seed SEED`` (agents
SEED..SEED+K-1, one process, timed from process start to exit, the preset's own budget and
stop-when-solved), split into populations of at most ``CHUNK[env]`` agents run one after another.
Per agent it records solved (fastdqn's evaluation on ``eval_episodes`` plus the confirmation on
``confirm_episodes`` fresh episodes), solved_at_env_step and solved_at_wall_s (seconds into its
population's ``train()``). Every agent's final policy (for a solved agent: the one that passed) is then
scored on **Gymnasium's own env** (100 episodes, reset seed 10000 + agent seed), independent of
fastdqn's env and evaluation.

Success of an agent = solved by fastdqn and its Gymnasium mean >= the env's threshold. Reported per env:
the success rate, fastdqn's solve rate, the share of solved agents that pass the Gymnasium check, the
median env steps and wall seconds to threshold over the solved agents, and the process walls.

For CartPole the old ``fast`` preset (``BASELINE_FAST``: the DQNConfig defaults it was before the
retune, total_steps 100k) runs first on the same seeds, side by side (``--no-baseline`` skips it).

Writes bench/results/presets_<env>.json (machine info incl. the CPU model) after every population.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, write_json  # noqa: E402

GYM_SEED_OFFSET = 10_000
ENVS = {  # env -> (preset, agents, largest population per process)
    "acrobot": ("acrobot", 32, 32),
    "mountaincar": ("mountaincar", 32, 32),
    "cartpole": ("fast", 128, 128),
    "lunarlander": ("lunarlander", 8, 8),
}
# The ``fast`` preset before this retune (it was ``DQNConfig()``, these defaults), for the side-by-side run.
BASELINE_FAST = ["--env_id", "CartPole-v1", "--num_envs", "8", "--hidden", "64", "64", "--lr", "0.005",
                 "--gamma", "0.99", "--loss", "huber", "--double_dqn", "true", "--target_period", "25", "--tau", "1.0",
                 "--grad_clip", "0.0", "--buffer_size", "50000", "--batch_size", "128", "--learning_starts", "1000",
                 "--train_frequency", "1", "--gradient_steps", "1", "--eps_schedule", "linear", "--eps_start", "1.0",
                 "--eps_end", "0.02", "--eps_decay", "0.06", "--total_steps", "100000", "--eval_every", "2000",
                 "--eval_episodes", "100", "--confirm_episodes", "200"]


def run_population(preset: str, seed: int, k: int, device: str, workdir: Path, extra=()) -> dict:
    out = workdir / f"{preset}-s{seed}-K{k}-{len(extra)}"
    cmd = [sys.executable, "-m", "fastdqn.cli", "train", "--preset", preset, *extra, "--seed", str(seed),
           "--population", str(k), "--device", device, "--out", str(out), "--progress", "false", "--plot", "false"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    summary = json.loads((out / "summary.json").read_text())
    config = json.loads((out / "config.json").read_text())
    config.pop("agents", None)
    agents = []
    import fastdqn
    from fastdqn.evaluate import gymnasium_returns

    for a in summary["agents"]:
        policy = fastdqn.load_policy(out, agent=a["agent"])
        g = gymnasium_returns(policy, summary["env_id"], 100, seed=GYM_SEED_OFFSET + a["seed"])
        agents.append({"seed": a["seed"], "solved": a["solved"], "solved_at_env_step": a["solved_at_env_step"],
                       "solved_at_wall_s": a["solved_at_wall_s"], "fastdqn_eval_mean_return": a["eval_mean_return"],
                       "gym_mean_return": float(g.mean()), "gym_min_return": float(g.min())})
    return {"command": " ".join(cmd[1:]), "population": k, "seed": seed, "process_wall_s": wall,
            "train_wall_s": summary["wall_time_s"], "env_steps": summary["env_steps"],
            "env_steps_per_s": summary["env_steps_per_s"], "threshold": summary["solve_threshold"],
            "env_id": summary["env_id"], "config": config, "agents": agents}


def stats(pops: list[dict]) -> dict:
    agents = [a for p in pops for a in p["agents"]]
    thr = pops[0]["threshold"]
    solved = [a for a in agents if a["solved"]]
    ok = [a for a in solved if a["gym_mean_return"] >= thr]
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    return {"agents": len(agents), "solved": len(solved), "solve_rate": len(solved) / len(agents),
            "success": len(ok), "success_rate": len(ok) / len(agents),
            "gym_pass_of_solved": len(ok) / len(solved) if solved else None,
            "gym_pass_all_agents": sum(a["gym_mean_return"] >= thr for a in agents),
            "median_solved_at_env_step": med([a["solved_at_env_step"] for a in solved]),
            "median_solved_at_wall_s": med([a["solved_at_wall_s"] for a in solved]),
            "median_gym_mean_return_solved": med([a["gym_mean_return"] for a in solved]),
            "process_wall_s_total": sum(p["process_wall_s"] for p in pops)}


def run_env(env: str, args, workdir: Path, machine: dict) -> None:
    preset, k_all, chunk = ENVS[env]
    k_all = args.agents or k_all
    result = {"benchmark": "presets", "env": env, "preset_name": preset, "machine": machine, "device": args.device,
              "seeds": [args.seed, args.seed + k_all - 1], "gym_seed_offset": GYM_SEED_OFFSET}
    variants = [("preset", preset, [])]
    if env == "cartpole" and not args.no_baseline:
        variants.insert(0, ("baseline_fast_before", "fast", BASELINE_FAST))
    for label, name, extra in variants:
        pops = []
        for s in range(args.seed, args.seed + k_all, chunk):
            k = min(chunk, args.seed + k_all - s)
            pops.append(run_population(name, s, k, args.device, workdir, extra))
            result[label] = {"populations": pops, **stats(pops)}
            write_json(f"presets_{env}.json", result)
        st = result[label]
        print(f"{env} [{label}]: success {st['success']}/{st['agents']} ({st['success_rate']:.1%}), solved "
              f"{st['solved']}, Gymnasium pass of solved {st['gym_pass_of_solved']}, median to threshold "
              f"{st['median_solved_at_env_step']} steps / {st['median_solved_at_wall_s']} s, process wall "
              f"{st['process_wall_s_total']:.0f} s", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    p.add_argument("--seed", type=int, default=1000, help="first agent seed (fresh: screening used 100-399)")
    p.add_argument("--agents", type=int, default=None, help="agents per env (default: 32; 128 CartPole; 8 LunarLander)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-baseline", action="store_true", help="CartPole: skip the old fast preset's side-by-side run")
    args = p.parse_args()
    machine = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        for env in args.envs:
            run_env(env, args, Path(tmp), machine)


if __name__ == "__main__":
    main()
