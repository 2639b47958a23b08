"""Population training against one agent: wall time, agents/min and solve rate for K agents at once.

    python bench/population.py [--populations 4 16 64 256] [--single-seeds 0 1 2 3 4] [--seed 0]
                               [--preset fast] [--device cpu] [--out NAME]

Every run is a separate ``fastdqn train`` process, timed from process start to exit (the way a user
runs it; ``import torch`` included), with the preset's budget and stop-when-solved:

* one agent: ``fastdqn train --seed s`` for each of ``--single-seeds``; the reference wall is their median;
* a population: ``fastdqn train --population K --seed SEED`` (agents SEED..SEED+K-1).

Each agent's final policy (the one that passed, for a solved agent) is then evaluated on
**Gymnasium's own CartPole** (100 episodes, reset seed 10000 + agent seed), independent of
fastdqn's env. Reported per K: process wall, ``train()`` wall, agents solved by fastdqn's
evaluation and by Gymnasium's, agents solved per minute, and wall / (median one-agent wall).
Writes bench/results/<out>.json and .png (default out: population_<device>).
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
from common import RESULTS, machine_info, write_json  # noqa: E402


def run(args, seed: int, population: int, workdir: Path) -> dict:
    out = workdir / f"K{population}-s{seed}"
    cmd = [sys.executable, "-m", "fastdqn.cli", "train", "--preset", args.preset, "--seed", str(seed), "--device",
           args.device, "--out", str(out), "--progress", "false", "--plot", "false"]
    if population > 1:
        cmd += ["--population", str(population)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    summary = json.loads((out / "summary.json").read_text())
    gym = gym_check(out, summary)
    return {"population": population, "seed": seed, "process_wall_s": wall, "train_s": summary["wall_time_s"],
            "env_steps": summary["env_steps"], "agents_solved": summary["agents_solved"],
            "gym_solved": sum(g >= summary["solve_threshold"] for g in gym), "gym_mean_returns": gym,
            "solved_at_env_step": [a["solved_at_env_step"] for a in summary["agents"]],
            "env_steps_per_s": summary["env_steps_per_s"], "command": " ".join(cmd[1:])}


def gym_check(run_dir: Path, summary: dict) -> list[float]:
    import fastdqn
    from fastdqn.evaluate import gymnasium_returns

    means = []
    for a in summary["agents"]:
        policy = fastdqn.load_policy(run_dir, agent=a["agent"])
        means.append(float(gymnasium_returns(policy, summary["env_id"], 100, seed=10_000 + a["seed"]).mean()))
    return means


def plot(path: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["populations"]
    ks = [r["population"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.plot(ks, [r["wall_ratio"] for r in rows], "o-", label="wall / one agent's (median)")
    a1.plot(ks, ks, ":", color="grey", label="K one-agent runs in a row")
    a1.set_xscale("log", base=2)
    a1.set_yscale("log", base=2)
    a1.set_xlabel("agents K")
    a1.set_ylabel("wall-time ratio")
    a1.legend()
    a1.grid(alpha=0.3)
    a2.bar([str(k) for k in ks], [r["agents_per_min"] for r in rows])
    one = result["single"]["agents_per_min"]
    a2.axhline(one, color="grey", ls=":", label=f"one agent at a time ({one:.1f}/min)")
    a2.set_xlabel("agents K")
    a2.set_ylabel("agents solved per minute (Gymnasium check)")
    a2.legend()
    fig.suptitle(f"fastdqn populations, {result['preset']} preset, {result['device']}: {result['machine']['cpu']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--populations", type=int, nargs="+", default=[4, 16, 64, 256])
    p.add_argument("--single-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="fast")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    name = args.out or f"population_{args.device}"
    result = {"benchmark": "population", "machine": machine_info(), "preset": args.preset, "device": args.device,
              "single_seeds": args.single_seeds, "population_seed": args.seed}
    with tempfile.TemporaryDirectory() as tmp:
        singles = []
        for s in args.single_seeds:
            singles.append(run(args, s, 1, Path(tmp)))
            print(f"K=1 seed {s}: {singles[-1]['process_wall_s']:.2f} s, solved {singles[-1]['gym_solved']}/1", flush=True)
        med = statistics.median(r["process_wall_s"] for r in singles)
        solved = sum(r["gym_solved"] for r in singles)
        total = sum(r["process_wall_s"] for r in singles)
        result["single"] = {"runs": singles, "median_process_wall_s": med, "gym_solved": solved,
                            "agents_per_min": solved / total * 60}
        result["populations"] = []
        write_json(f"{name}.json", result)
        for k in args.populations:
            r = run(args, args.seed, k, Path(tmp))
            r["wall_ratio"] = r["process_wall_s"] / med
            r["agents_per_min"] = r["gym_solved"] / r["process_wall_s"] * 60
            result["populations"].append(r)
            print(f"K={k}: {r['process_wall_s']:.1f} s = {r['wall_ratio']:.2f}x one agent, solved "
                  f"{r['agents_solved']}/{k} (Gymnasium check {r['gym_solved']}/{k}), "
                  f"{r['agents_per_min']:.1f} agents/min", flush=True)
            write_json(f"{name}.json", result)  # as we go: a long run keeps what it has
    plot(RESULTS / f"{name}.png", result)
    print(f"wrote {RESULTS / (name + '.json')}")


if __name__ == "__main__":
    main()
