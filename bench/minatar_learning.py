"""MinAtar learning on the CPU: a population of seeds per game, wall-clock budgeted, each final
policy scored on the reference package.

    python bench/minatar_learning.py [--games Breakout SpaceInvaders] [--seeds 3] [--seed 100]
                                     [--minutes 15] [--out NAME] [-- EXTRA_TRAIN_ARGS]

Per game: ``fastdqn train --env MinAtar/<Game>-v1 --population SEEDS --seed SEED --target_return T``
(the game's preset; agents SEED..SEED+SEEDS-1 trained as one batch in one process, on this
machine's cores), stopped with SIGINT (the trainer then writes its checkpoint and summary) when
``--minutes`` of process wall time have passed, unless every agent reached the target first. The
targets are the MinAtar paper's DQN after 5M frames (sticky actions on): Breakout 10,
SpaceInvaders 43 (Asterix 4, Freeway 30, Seaquest 0.4 are listed for the other games, not goals).

An agent reaches the target when an in-training greedy evaluation (the preset's eval_episodes of
fastdqn's own game, sticky actions 0.1) reaches it and a confirmation on confirm_episodes fresh
episodes clears it by confirm_margin standard errors (the trainer's "solved"); it then stops
training with the weights that passed. Recorded per agent: reached, env steps and wall seconds
(into ``train()``; the process wall adds start-up) to it, the evaluation curve (evals.csv), and
the final policy's mean return on 100 episodes of the **reference package's** Gymnasium env
(``fastdqn.evaluate.gymnasium_returns``: minatar 1.0.15, sticky actions 0.1), reset seed 10000 + seed.

Writes bench/results/<out>.json (default minatar_learning) after every game, and <out>.png: the
evaluation curves per game (one line per seed, target dashed).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine_info, train_process, write_json  # noqa: E402

TARGETS = {"Breakout": 10.0, "SpaceInvaders": 43.0, "Asterix": 4.0, "Freeway": 30.0, "Seaquest": 0.4}


def run_game(game: str, seeds: int, seed: int, minutes: float, workdir: Path, extra: list[str]) -> dict:
    out = workdir / f"{game}-s{seed}"
    wall, interrupted = train_process(["--env", f"MinAtar/{game}-v1", "--population", str(seeds), "--seed", str(seed),
                                       "--target_return", str(TARGETS[game]), *extra], out, minutes * 60)
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "evals.csv", newline="") as f:
        evals = list(csv.DictReader(f))
    from fastdqn.checkpoint import load_policy
    from fastdqn.evaluate import gymnasium_returns

    agents = []
    for i, a in enumerate(summary["agents"]):
        rets = gymnasium_returns(load_policy(out, agent=i), f"MinAtar/{game}-v1", 100, seed=10_000 + a["seed"])
        curve = [(int(r["env_step"]), float(r["wall_time_s"]), float(r["eval_mean_return"]))
                 for r in evals if int(r["agent"]) == i]
        agents.append({"seed": a["seed"], "reached": a["solved"], "env_steps_to_target": a["solved_at_env_step"],
                       "wall_s_to_target": a["solved_at_wall_s"], "final_eval": a["eval_mean_return"],
                       "reference_mean_return": float(rets.mean()), "reference_std_return": float(rets.std()),
                       "curve": curve})
        print(f"{game} seed {a['seed']}: reached={a['solved']} at {a['solved_at_env_step']} env steps, "
              f"{a['solved_at_wall_s']} s; reference {rets.mean():.2f} +- {rets.std():.2f}", flush=True)
    return {"target": TARGETS[game], "process_wall_s": wall, "stopped_at_budget": interrupted,
            "env_steps": summary["env_steps"], "env_steps_per_s": summary["env_steps_per_s"],
            "updates_per_s": summary["updates_per_s"], "train_wall_s": summary["wall_time_s"],
            "config": json.loads((out / "config.json").read_text()), "agents": agents}


def plot(results: dict, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = list(results["games"])
    fig, axes = plt.subplots(1, len(games), figsize=(5 * len(games), 3.6), squeeze=False)
    for ax, game in zip(axes[0], games):
        g = results["games"][game]
        for a in g["agents"]:
            xs = [c[1] / 60 for c in a["curve"]]
            ax.plot(xs, [c[2] for c in a["curve"]], marker="o", ms=3, label=f"seed {a['seed']}")
        ax.axhline(g["target"], ls="--", color="gray", label=f"target {g['target']:g}")
        ax.set_title(f"MinAtar {game}")
        ax.set_xlabel("minutes into train()")
        ax.set_ylabel("greedy eval return (sticky 0.1)")
        ax.legend(fontsize=7)
    fig.suptitle(results["machine"]["cpu"], fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--games", nargs="+", default=["Breakout", "SpaceInvaders"], choices=sorted(TARGETS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--out", default="minatar_learning")
    args, extra = p.parse_known_args()
    extra = [x for x in extra if x != "--"]
    results = {"machine": machine_info(), "seeds": args.seeds, "seed": args.seed, "minutes": args.minutes,
               "extra_train_args": extra, "games": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for game in args.games:
            results["games"][game] = run_game(game, args.seeds, args.seed, args.minutes, Path(tmp), extra)
            write_json(f"{args.out}.json", results)
            plot(results, args.out)


if __name__ == "__main__":
    main()
