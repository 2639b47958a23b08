"""``fastdqn profile`` of the working tree against an earlier revision, side by side in one run.

    python bench/profile_revision.py --rev REV [--rounds 3] [--iterations 1600] [--out NAME]
                                     --case NAME "ARGS" [--case NAME "ARGS" ...]

Each case is a set of ``fastdqn profile`` arguments (e.g. ``--case mountaincar "--preset
mountaincar"``). The revision's package is exported with ``git archive`` (as
``bench/compare_revision.py`` does) and run with ``PYTHONPATH`` set, in the same virtual
environment. For each round and case the two versions run back to back (old, new), each a fresh
process; per version the report keeps every round's unprofiled iteration time and phase means
and their medians, and the ratio new / old of the median unprofiled iteration.
Writes bench/results/<out>.json (default profile_revision).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, write_json  # noqa: E402
from compare_revision import export  # noqa: E402


def profile(pythonpath: str | None, args: list[str], iterations: int, out: Path) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, "-m", "fastdqn.cli", "profile", *args, "--iterations", str(iterations), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=out.parent)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    report = json.loads((out / "profile.json").read_text())
    return {"unprofiled_iteration_us": report["unprofiled_iteration_us"],
            "phases_mean_us": {p["phase"]: p["mean_us"] for p in report["phases"]}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rev", required=True)
    p.add_argument("--case", nargs=2, action="append", metavar=("NAME", "ARGS"), required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iterations", type=int, default=1600)
    p.add_argument("--out", default="profile_revision")
    a = p.parse_args()
    result = {"machine": machine_info(), "rev": a.rev, "rounds": a.rounds, "iterations": a.iterations, "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        old_root = export(a.rev, Path(tmp) / "old")
        runs = {name: {"old": [], "new": []} for name, _ in a.case}
        for r in range(a.rounds):
            for name, args in a.case:
                for label, path in (("old", str(old_root)), ("new", None)):
                    out = Path(tmp) / f"{name}-{label}-{r}"
                    runs[name][label].append(profile(path, shlex.split(args), a.iterations, out))
                    it = runs[name][label][-1]["unprofiled_iteration_us"]
                    print(f"round {r} {name} {label}: {it:.1f} us per iteration", flush=True)
        for name, args in a.case:
            case = {"args": args}
            for label in ("old", "new"):
                rows = runs[name][label]
                phases = sorted({ph for row in rows for ph in row["phases_mean_us"]})
                case[label] = {"runs": rows,
                               "median_iteration_us": statistics.median(x["unprofiled_iteration_us"] for x in rows),
                               "median_phase_us": {ph: statistics.median(x["phases_mean_us"].get(ph, 0.0) for x in rows)
                                                   for ph in phases}}
            case["ratio_new_over_old"] = case["new"]["median_iteration_us"] / case["old"]["median_iteration_us"]
            result["cases"][name] = case
            print(f"{name}: old {case['old']['median_iteration_us']:.1f} us, new "
                  f"{case['new']['median_iteration_us']:.1f} us, ratio {case['ratio_new_over_old']:.3f}")
    write_json(f"{a.out}.json", result)


if __name__ == "__main__":
    main()
