"""`fastdqn sweep` against one agent and against the same sampled configs trained one at a time.

    python bench/sweep.py [--n-trials 64] [--populations 16 64] [--seed 0] [--single-seeds 0 1 2]
                          [--fresh-seeds 1000 1001 1002 1003 1004] [--device cpu] [--train-args "..."]
                          [--skip-sequential] [--out NAME]

Every run is its own ``python -m fastdqn.cli`` process, timed from process start to exit (the way
a user runs it; ``import torch`` included). Stages, in order (the JSON is rewritten after each):

1. one agent: ``fastdqn train`` (fast preset) for each of ``--single-seeds``; the reference wall
   is their median;
2. for each K in ``--populations``: ``fastdqn sweep --n-trials N --population K --seed SEED`` on a
   fresh SQLite study in a temp dir (trial i trains with seed SEED + i); the study is then read
   back with Optuna (params, state, value, seed of every trial) with the sweep's best.json;
3. sequential (unless ``--skip-sequential``): every complete or pruned trial of the first K's study
   trained alone, ``fastdqn train --config trial_i.json --seed <the trial's seed>`` (the fast
   preset's config with the trial's params), one after another, no pruning: the wall is their sum,
   the best found is the least env steps to solve (budget + 1 if unsolved) among them;
4. best-config check: the largest K's best.json and the fast preset, each trained on every one of
   ``--fresh-seeds``: env steps to solve (budget + 1 if unsolved) and each final policy's mean
   return over 100 episodes of **Gymnasium's own** CartPole-v1 (reset seed 10000 + seed).

``--sweep-args`` is appended to the sweep commands only (e.g. ``"--seeds-per-trial 3"``), and
``--train-args`` to every train and sweep command (e.g. ``"--total_steps 4000"`` for a
smoke run). Targets reported: a sweep at K=64 in at most 10x one agent's wall; the best config
solving in fewer env steps than the fast preset (median over the fresh seeds).
Writes bench/results/<out>.json and .png (default out: sweep).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine_info, write_json  # noqa: E402

WALL_TARGET = 10.0  # a 64-trial sweep at K=64 in at most this many one-agent walls


def fastdqn_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "fastdqn.cli", *map(str, args)]


def timed(cmd: list[str], *, echo: str | None = None) -> float:
    """Run ``cmd`` to its end; its wall seconds. ``echo``: print its output lines with this prefix as they come."""
    t = time.perf_counter()
    if echo is None:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        return wall
    tail = deque(maxlen=40)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        for line in proc.stdout:
            tail.append(line)
            print(f"{echo}{line}", end="", flush=True)
        rc = proc.wait()
    wall = time.perf_counter() - t
    if rc != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed ({rc}):\n{''.join(tail)}")
    return wall


def train_run(args, out: Path, seed: int, *, config: Path | None = None, gym: bool = False) -> dict:
    """One ``fastdqn train`` process (fast preset, or ``config``): wall, env steps to solve, optional Gymnasium check."""
    start = ["--config", config] if config is not None else ["--preset", "fast"]
    cmd = fastdqn_cmd("train", *start, "--seed", seed, "--device", args.device, "--out", out, "--progress", "false",
                      "--plot", "false", *args.extra)
    wall = timed(cmd)
    summary = json.loads((out / "summary.json").read_text())
    budget = json.loads((out / "config.json").read_text())["total_steps"]
    agent = summary["agents"][0]
    row = {"seed": seed, "process_wall_s": wall, "train_s": summary["wall_time_s"], "solved": agent["solved"],
           "solved_at_env_step": agent["solved_at_env_step"], "env_steps": summary["env_steps"],
           "steps_to_solve": agent["solved_at_env_step"] if agent["solved"] else budget + 1, "budget": budget,
           "command": shlex.join(cmd[2:])}
    if gym:
        import fastdqn
        from fastdqn.evaluate import gymnasium_returns

        policy = fastdqn.load_policy(out, agent=0)
        row["gym_mean_return"] = float(gymnasium_returns(policy, summary["env_id"], 100, seed=10_000 + seed).mean())
        row["gym_solved"] = row["gym_mean_return"] >= summary["solve_threshold"]
    return row


def run_sweep(args, k: int, tmp: Path) -> dict:
    import optuna

    from fastdqn.sweep import quiet_optuna

    storage = f"sqlite:///{tmp / f'K{k}.db'}"
    out = tmp / f"sweep-K{k}"
    cmd = fastdqn_cmd("sweep", "--study-name", "s", "--create", "--storage", storage, "--n-trials", args.n_trials,
                      "--population", k, "--seed", args.seed, "--device", args.device, "--out", out, *args.extra,
                      *shlex.split(args.sweep_args))
    wall = timed(cmd, echo=f"  [sweep K={k}] ")
    quiet_optuna()
    study = optuna.load_study(study_name="s", storage=storage)
    trials = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
               "seed": t.user_attrs.get("seed"), "solved": t.user_attrs.get("solved"),
               "solved_at_env_step": t.user_attrs.get("solved_at_env_step")} for t in study.trials]
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    best = min(complete, key=lambda t: t["value"]) if complete else None
    best_json = out / "best.json"
    return {"population": k, "process_wall_s": wall, "command": shlex.join(cmd[2:]),
            "trials_complete": len(complete), "trials_pruned": sum(t["state"] == "PRUNED" for t in trials),
            "trials_failed": sum(t["state"] == "FAIL" for t in trials),
            "trials_solved": sum(bool(t["solved"]) for t in trials),
            "best": None if best is None else {"trial": best["number"], "value": best["value"], "params": best["params"],
                                               "seed": best["seed"]},
            "best_config": json.loads(best_json.read_text()) if best_json.exists() else None,
            "best_json_path": str(best_json) if best_json.exists() else None, "trials": trials}


def run_sequential(args, sweep: dict, tmp: Path) -> dict:
    from fastdqn.config import preset

    base = preset("fast").to_dict()
    todo = [t for t in sweep["trials"] if t["state"] in ("COMPLETE", "PRUNED")]
    rows, total = [], 0.0
    for i, t in enumerate(todo):
        cfg_path = tmp / f"trial_{t['number']}.json"
        cfg_path.write_text(json.dumps({**base, **t["params"], "seed": t["seed"]}, indent=2) + "\n")
        r = train_run(args, tmp / f"seq-{t['number']}", t["seed"], config=cfg_path)
        r.update(trial=t["number"], params=t["params"], sweep_state=t["state"], sweep_value=t["value"])
        rows.append(r)
        total += r["process_wall_s"]
        print(f"  sequential {i + 1}/{len(todo)} (trial {t['number']}, seed {t['seed']}): {r['process_wall_s']:.2f} s, "
              f"{'solved at ' + format(r['solved_at_env_step'], ',') if r['solved'] else 'not solved'} "
              f"(sweep: {t['state'].lower()}{'' if t['value'] is None else ', ' + format(t['value'], 'g')}); "
              f"total {total:.1f} s", flush=True)
    best = min(rows, key=lambda r: r["steps_to_solve"]) if rows else None
    return {"of_population": sweep["population"], "runs": len(rows), "process_wall_s": total,
            "solved": sum(r["solved"] for r in rows),
            "best": None if best is None else {"trial": best["trial"], "value": best["steps_to_solve"],
                                               "params": best["params"], "seed": best["seed"]},
            "rows": rows}


def best_config_check(args, sweep: dict, tmp: Path) -> dict:
    best, fast = [], []
    for s in args.fresh_seeds:
        best.append(train_run(args, tmp / f"best-s{s}", s, config=Path(sweep["best_json_path"]), gym=True))
        fast.append(train_run(args, tmp / f"fast-s{s}", s, gym=True))
        print(f"  seed {s}: best config {best[-1]['steps_to_solve']:,} env steps (Gymnasium "
              f"{best[-1]['gym_mean_return']:.1f}), fast preset {fast[-1]['steps_to_solve']:,} (Gymnasium "
              f"{fast[-1]['gym_mean_return']:.1f})", flush=True)
    med_best = statistics.median(r["steps_to_solve"] for r in best)
    med_fast = statistics.median(r["steps_to_solve"] for r in fast)
    return {"of_population": sweep["population"], "best_config": sweep["best_config"], "fresh_seeds": args.fresh_seeds,
            "best": best, "fast": fast, "median_steps_best": med_best, "median_steps_fast": med_fast,
            "seeds_best_fewer": sum(b["steps_to_solve"] < f["steps_to_solve"] for b, f in zip(best, fast)),
            "gym_solved_best": sum(r["gym_solved"] for r in best), "gym_solved_fast": sum(r["gym_solved"] for r in fast),
            "median_process_wall_best_s": statistics.median(r["process_wall_s"] for r in best),
            "median_process_wall_fast_s": statistics.median(r["process_wall_s"] for r in fast),
            "target_met": med_best < med_fast}


def plot(path: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels, walls = [], []
    if result.get("single"):
        labels.append("one agent\n(median)")
        walls.append(result["single"]["median_process_wall_s"])
    for s in result.get("sweeps", []):
        labels.append(f"sweep K={s['population']}\n{result['n_trials']} trials")
        walls.append(s["process_wall_s"])
    seq = result.get("sequential")
    if seq:
        labels.append(f"{seq['runs']} sequential\nsingle-agent runs")
        walls.append(seq["process_wall_s"])
    bars = a1.bar(labels, walls, color=["grey"] + ["C0"] * len(result.get("sweeps", [])) + ["C3"] * bool(seq))
    a1.bar_label(bars, fmt="%.1f s", fontsize=8)
    a1.set_yscale("log")
    a1.set_ylabel("process wall (s)")
    a1.set_title("wall time (log scale)")
    a1.grid(axis="y", alpha=0.3)
    check = result.get("best_config_check")
    if check:
        seeds = [str(s) for s in check["fresh_seeds"]]
        xs = range(len(seeds))
        w = 0.4
        a2.bar([x - w / 2 for x in xs], [r["steps_to_solve"] for r in check["best"]], w,
               label=f"sweep K={check['of_population']} best config (median {check['median_steps_best']:,.0f})")
        a2.bar([x + w / 2 for x in xs], [r["steps_to_solve"] for r in check["fast"]], w, color="grey",
               label=f"fast preset (median {check['median_steps_fast']:,.0f})")
        a2.axhline(check["best"][0]["budget"], color="k", ls=":", lw=1, label="budget (above: unsolved)")
        a2.set_xticks(list(xs), seeds)
        a2.set_xlabel("fresh seed")
        a2.set_ylabel("env steps to solve")
        a2.set_title("best config found vs fast preset")
        a2.legend(fontsize=8)
        a2.grid(axis="y", alpha=0.3)
    else:
        a2.set_axis_off()
    fig.suptitle(f"fastdqn sweep, {result['device']}: {result['machine']['cpu']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-trials", type=int, default=64)
    p.add_argument("--populations", type=int, nargs="+", default=[16, 64])
    p.add_argument("--seed", type=int, default=0, help="sweep seed: trial i trains with seed SEED + i")
    p.add_argument("--single-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--fresh-seeds", type=int, nargs="+", default=[1000, 1001, 1002, 1003, 1004])
    p.add_argument("--device", default="cpu")
    p.add_argument("--train-args", default="", help="extra flags appended to every train and sweep command")
    p.add_argument("--sweep-args", default="", help="extra flags for the sweep commands only (e.g. '--seeds-per-trial 3')")
    p.add_argument("--skip-sequential", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    args.extra = shlex.split(args.train_args)
    name = args.out or "sweep"
    result = {"benchmark": "sweep", "machine": machine_info(), "device": args.device, "n_trials": args.n_trials,
              "populations": args.populations, "sweep_seed": args.seed, "single_seeds": args.single_seeds,
              "train_args": args.train_args, "sweep_args": args.sweep_args}

    def save():
        write_json(f"{name}.json", result)  # as we go: a long run keeps what it has
        plot(RESULTS / f"{name}.png", result)

    with tempfile.TemporaryDirectory() as tmpname:
        tmp = Path(tmpname)
        print("one agent (fast preset):", flush=True)
        singles = []
        for s in args.single_seeds:
            singles.append(train_run(args, tmp / f"single-s{s}", s))
            print(f"  seed {s}: {singles[-1]['process_wall_s']:.2f} s, "
                  f"{'solved' if singles[-1]['solved'] else 'not solved'}", flush=True)
        one = statistics.median(r["process_wall_s"] for r in singles)
        result["single"] = {"runs": singles, "median_process_wall_s": one}
        result["sweeps"] = []
        save()

        for k in args.populations:
            print(f"sweep: {args.n_trials} trials, population {k}:", flush=True)
            sw = run_sweep(args, k, tmp)
            sw["wall_ratio"] = sw["process_wall_s"] / one
            if k == 64 and args.n_trials == 64:
                sw["target_wall_ratio"] = WALL_TARGET
                sw["target_met"] = sw["wall_ratio"] <= WALL_TARGET
            result["sweeps"].append(sw)
            b = sw["best"]
            print(f"sweep K={k}: {sw['process_wall_s']:.1f} s = {sw['wall_ratio']:.2f}x one agent; "
                  f"{sw['trials_complete']} complete, {sw['trials_pruned']} pruned, {sw['trials_solved']} solved; best "
                  f"{'-' if b is None else format(b['value'], 'g')}", flush=True)
            save()

        if not args.skip_sequential and result["sweeps"]:
            first = result["sweeps"][0]
            print(f"sequential: the {first['trials_complete'] + first['trials_pruned']} sampled configs of the "
                  f"K={first['population']} sweep, one process each:", flush=True)
            seq = run_sequential(args, first, tmp)
            seq["wall_ratio_to_sweep"] = seq["process_wall_s"] / first["process_wall_s"]
            result["sequential"] = seq
            b = seq["best"]
            print(f"sequential: {seq['process_wall_s']:.1f} s ({seq['wall_ratio_to_sweep']:.2f}x the K="
                  f"{first['population']} sweep), {seq['solved']}/{seq['runs']} solved, best "
                  f"{'-' if b is None else format(b['value'], 'g')} (sweep's best "
                  f"{'-' if first['best'] is None else format(first['best']['value'], 'g')})", flush=True)
            save()

        largest = max(result["sweeps"], key=lambda s: s["population"]) if result["sweeps"] else None
        if largest is not None and largest["best_json_path"]:
            print(f"best-config check: best.json of the K={largest['population']} sweep vs the fast preset, "
                  f"seeds {args.fresh_seeds}:", flush=True)
            check = best_config_check(args, largest, tmp)
            result["best_config_check"] = check
            print(f"best config: median {check['median_steps_best']:,.0f} env steps to solve vs fast preset "
                  f"{check['median_steps_fast']:,.0f} (fewer on {check['seeds_best_fewer']}/{len(args.fresh_seeds)} "
                  f"seeds; Gymnasium check {check['gym_solved_best']} vs {check['gym_solved_fast']} solved): target "
                  f"{'met' if check['target_met'] else 'not met'}", flush=True)
        elif largest is not None:
            print(f"best-config check skipped: the K={largest['population']} sweep has no complete trial", flush=True)
        for s in result["sweeps"]:
            s.pop("best_json_path", None)  # a temp path, gone after the run
        save()
    print(f"wrote {RESULTS / (name + '.json')} and .png")


if __name__ == "__main__":
    main()
