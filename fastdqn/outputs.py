"""Run outputs built from the files on disk: learning-curve PNG and TensorBoard events."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from fastdqn.config import DQNConfig


def read_metrics(run_dir) -> dict[int, list[tuple[int, float]]]:
    """metrics.csv as ``{agent: [(env_step, mean return of the episodes finished in that flush), ...]}``
    (flushes in which an agent finished no episode are left out)."""
    out: dict[int, list[tuple[int, float]]] = {}
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["mean_return"]:
                out.setdefault(int(row["agent"]), []).append((int(row["env_step"]), float(row["mean_return"])))
    return out


def read_evals(run_dir, column: str = "eval_mean_return") -> list[tuple[int, int, float]]:
    """evals.csv as ``[(env_step, agent, value of column), ...]`` (rows where it is empty left out;
    ``confirm_mean_return`` is filled only where an evaluation reached the threshold)."""
    with open(Path(run_dir) / "evals.csv", newline="") as f:
        return [(int(r["env_step"]), int(r["agent"]), float(r[column])) for r in csv.DictReader(f) if r.get(column)]


def rolling_mean(xs: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, x in enumerate(xs):
        acc += x
        if i >= window:
            acc -= xs[i - window]
        out.append(acc / min(i + 1, window))
    return out


def quantile(xs: list[float], q: float) -> float:
    """Linear-interpolated quantile of a non-empty list (numpy's default method)."""
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = int(pos)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (pos - lo)


def population_curves(per_agent: dict[int, list[tuple[int, float]]]):
    """Median, 10th and 90th percentile over agents at each env step at which any agent logged
    (each agent contributes its latest value at or before that step)."""
    steps = sorted({s for rows in per_agent.values() for s, _ in rows})
    latest, cursor = {}, {a: 0 for a in per_agent}
    med, lo, hi = [], [], []
    for s in steps:
        for a, rows in per_agent.items():
            while cursor[a] < len(rows) and rows[cursor[a]][0] <= s:
                latest[a] = rows[cursor[a]][1]
                cursor[a] += 1
        vals = list(latest.values())
        med.append(statistics.median(vals))
        lo.append(quantile(vals, 0.1))
        hi.append(quantile(vals, 0.9))
    return steps, med, lo, hi


def plot_learning_curve(run_dir, cfg: DQNConfig, agents: int = 1, window: int = 10) -> Path:
    """Training return against env steps, with the greedy evaluations marked (no display needed)
    and the confirmations of evaluations that reached the threshold (what "solved" rests on).

    One agent: the mean return of the episodes finished in each metrics flush and its rolling
    mean. A population: the median over agents with the 10th-90th percentile band.
    """
    from fastdqn.plot import line_chart

    per_agent = read_metrics(run_dir)
    evals = read_evals(run_dir)
    if agents == 1:
        rows = per_agent.get(0, [])
        xs, ys = [s for s, _ in rows], [r for _, r in rows]
        series = [("training return (per flush)", xs, ys, (166, 198, 230), 1),
                  (f"rolling mean ({window})", xs, rolling_mean(ys, window), (31, 119, 180), 3)]
        title = f"{cfg.env_id}: training ({cfg.num_envs} envs, seed {cfg.seed})"
    else:
        xs, med, lo, hi = population_curves(per_agent)
        series = [("10th-90th percentile", xs, lo, (166, 198, 230), 1), ("", xs, hi, (166, 198, 230), 1),
                  (f"median of {agents} agents", xs, med, (31, 119, 180), 3)]
        title = f"{cfg.env_id}: population of {agents} ({cfg.num_envs} envs each)"
    eval_steps = sorted({s for s, _, _ in evals})
    eval_med = [statistics.median([r for s2, _, r in evals if s2 == s]) for s in eval_steps]
    label = "greedy evaluation" + (" (median)" if agents > 1 else "")
    points = [(label, eval_steps, eval_med, (214, 39, 40))]
    confirms = read_evals(run_dir, "confirm_mean_return")
    if confirms:
        points.append(("confirmation (fresh episodes)", [s for s, _, _ in confirms], [r for _, _, r in confirms],
                       (44, 160, 44)))
    threshold = cfg.solve_threshold
    hlines = [] if threshold is None else [(f"solved ({threshold:g})", threshold, (44, 160, 44))]
    if cfg.spec.return_range is not None:
        lo, hi = cfg.spec.return_range
    else:  # from the data
        values = [r for rows in per_agent.values() for _, r in rows] + [r for *_, r in evals]
        values += [] if threshold is None else [threshold]
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = 0.05 * ((hi - lo) or 1.0)
    return line_chart(
        Path(run_dir) / "learning_curve.png", series, hlines=hlines, points=points,
        title=title, xlabel="env steps (per agent)", ylabel="return", ylim=(lo - pad if lo < 0 else lo, hi + pad),
    )


def write_tensorboard(run_dir) -> bool:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return False
    with SummaryWriter(str(run_dir)) as w:
        for agent, rows in read_metrics(run_dir).items():
            for s, r in rows:
                w.add_scalar(f"train/mean_return/agent{agent}", r, s)
        for s, agent, r in read_evals(run_dir):
            w.add_scalar(f"eval/mean_return/agent{agent}", r, s)
    return True


def write_extras(run_dir, cfg: DQNConfig, agents: int = 1) -> None:
    if cfg.plot:
        plot_learning_curve(run_dir, cfg, agents)
    write_tensorboard(run_dir)
