"""Small hyperparameter sweep used to pick the `fast` preset (in-process, CPU).

    python bench/sweep_fast.py --seeds 0 1 2 [--only NAME ...]

For each candidate (a set of overrides on the `fast` preset) and seed it runs ``fastdqn.train``
and records whether it solved, env steps, updates and loop wall time. Writes
bench/results/sweep_fast.json. Not a benchmark of record: time_to_solve.py is.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, write_json  # noqa: E402

from fastdqn.config import preset  # noqa: E402
from fastdqn.train import train  # noqa: E402

BASE = dict(total_steps=100_000, progress=False, plot=False)
CANDIDATES = {
    "tp50-lr5e-3-eps0.06": dict(target_period=50, lr=5e-3, eps_decay=0.06),
    "tp25-lr5e-3-eps0.06": dict(target_period=25, lr=5e-3, eps_decay=0.06),
    "tp50-lr5e-3-eps0.06-g0.98": dict(target_period=50, lr=5e-3, eps_decay=0.06, gamma=0.98),
    "tp50-lr5e-3-eps0.04": dict(target_period=50, lr=5e-3, eps_decay=0.04),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--only", nargs="*")
    args = p.parse_args()
    rows = []
    for name, overrides in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        for seed in args.seeds:
            cfg = preset("fast").replace(**{**BASE, **overrides}, seed=seed)
            with tempfile.TemporaryDirectory() as d:
                r = train(cfg, out=Path(d) / "run")
            row = {"candidate": name, "seed": seed, **{k: v for k, v in asdict(r).items() if k != "run_dir"}}
            rows.append(row)
            print(f"{name:28s} seed={seed} solved={r.solved} at={r.solved_at_env_step} updates={r.updates} "
                  f"wall={r.wall_time_s:.2f}s eval={r.eval_mean_return}", flush=True)
        sel = [r for r in rows if r["candidate"] == name]
        print(f"== {name}: solved {sum(r['solved'] for r in sel)}/{len(sel)}, median wall "
              f"{statistics.median(r['wall_time_s'] for r in sel):.2f}s", flush=True)
    write_json("sweep_fast.json", {"benchmark": "sweep_fast", "machine": machine_info(), "candidates": CANDIDATES,
                                   "results": rows})


if __name__ == "__main__":
    main()
