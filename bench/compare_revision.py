"""Single-agent ``fastdqn train`` against an earlier revision, side by side in one run.

    python bench/compare_revision.py [--rev 46bb7ae] [--seeds 0 1 2 3 4] [--out NAME] [-- extra train args]

The revision's package is exported with ``git archive`` into a temporary folder (its ``kernels/``
placed as ``fastdqn/kernels``, as the installed package maps it) and run with ``PYTHONPATH`` set,
in the same virtual environment as the working tree. For each seed the two versions run
back to back (old, new), each a ``python -m fastdqn.cli train --seed s`` process timed from start to
exit; each final policy is then checked on Gymnasium's own CartPole-v1 (100 episodes) in a process
of the same version (each version reads its own checkpoint format).
Writes bench/results/<out>.json (default compare_revision).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GYM_CHECK = """
import json, sys, fastdqn
from fastdqn.evaluate import gymnasium_returns
run = sys.argv[1]
s = json.load(open(run + '/summary.json'))
print(float(gymnasium_returns(fastdqn.load_policy(run), s['env_id'], 100, seed=10_000).mean()))
"""


def export(rev: str, dest: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "fastdqn", "kernels"], check=True,
                             capture_output=True).stdout
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    shutil.move(str(dest / "kernels"), str(dest / "fastdqn" / "kernels"))
    return dest


def run(label: str, pythonpath: str | None, seed: int, out: Path, extra: list[str]) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, "-m", "fastdqn.cli", "train", "--seed", str(seed), "--out", str(out), "--progress", "false",
           *extra]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=out.parent)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{label}: {' '.join(cmd)} failed:\n{proc.stderr}")
    summary = json.loads((out / "summary.json").read_text())
    check = subprocess.run([sys.executable, "-c", GYM_CHECK, str(out)], capture_output=True, text=True, env=env,
                           cwd=out.parent, check=True)
    gym = float(check.stdout.strip().splitlines()[-1])
    return {"version": label, "seed": seed, "process_wall_s": wall, "train_s": summary["wall_time_s"],
            "solved": summary["solved"], "env_steps": summary["env_steps"], "gym_mean_return": gym,
            "gym_solved": gym >= summary["solve_threshold"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rev", default="46bb7ae")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--out", default="compare_revision")
    p.add_argument("extra", nargs="*", help="extra `fastdqn train` arguments for both versions (after --)")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        old = export(args.rev, Path(tmp) / "old")
        for s in args.seeds:
            for label, path in ((args.rev, str(old)), ("working tree", None)):
                r = run(label, path, s, Path(tmp) / f"{label.replace(' ', '_')}-{s}", args.extra)
                rows.append(r)
                print(f"{label:>12s} seed {s}: {r['process_wall_s']:.2f} s end to end, train {r['train_s']:.2f} s, "
                      f"{r['env_steps']:,d} steps, Gymnasium {r['gym_mean_return']:.1f}", flush=True)
    summary = {}
    for label in (args.rev, "working tree"):
        mine = [r for r in rows if r["version"] == label]
        summary[label] = {"median_process_wall_s": statistics.median(r["process_wall_s"] for r in mine),
                          "median_train_s": statistics.median(r["train_s"] for r in mine),
                          "median_env_steps": statistics.median(r["env_steps"] for r in mine),
                          "gym_solved": sum(r["gym_solved"] for r in mine), "runs": len(mine)}
        print(label, summary[label])
    write_json(f"{args.out}.json", {"benchmark": "compare_revision", "machine": machine_info(), "rev": args.rev,
                                    "extra_train_args": args.extra, "summary": summary, "runs": rows})


if __name__ == "__main__":
    main()
