"""Run outputs built from the files on disk: learning-curve PNG and TensorBoard events."""

from __future__ import annotations

import csv
from pathlib import Path

from fastdqn.config import DQNConfig


def read_episodes(run_dir) -> tuple[list[int], list[float]]:
    steps, rets = [], []
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            steps.append(int(row["env_step"]))
            rets.append(float(row["episode_return"]))
    return steps, rets


def rolling_mean(xs: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, x in enumerate(xs):
        acc += x
        if i >= window:
            acc -= xs[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot_learning_curve(run_dir, cfg: DQNConfig, window: int = 100) -> Path:
    """Per-episode return with a rolling mean, as the tutorial plots it (Agg, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _, rets = read_episodes(run_dir)
    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    eps = range(1, len(rets) + 1)
    ax.plot(eps, rets, color="tab:blue", alpha=0.35, lw=0.8, label="episode return")
    ax.plot(eps, rolling_mean(rets, window), color="tab:blue", lw=2, label=f"rolling mean ({window})")
    ax.axhline(cfg.solve_threshold, color="tab:green", ls="--", lw=1, label=f"solved ({cfg.solve_threshold:g})")
    ax.set_xlabel("episode")
    ax.set_ylabel("total reward")
    ax.set_title(f"{cfg.env_id}: training episodes ({cfg.num_envs} envs, seed {cfg.seed})")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(run_dir) / "learning_curve.png"
    fig.savefig(path, dpi=100)
    return path


def write_tensorboard(run_dir) -> bool:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return False
    steps, rets = read_episodes(run_dir)
    with SummaryWriter(str(run_dir)) as w:
        for s, r in zip(steps, rets):
            w.add_scalar("train/episode_return", r, s)
        with open(Path(run_dir) / "evals.csv", newline="") as f:
            for row in csv.DictReader(f):
                w.add_scalar("eval/mean_return", float(row["eval_mean_return"]), int(row["env_step"]))
    return True


def write_extras(run_dir, cfg: DQNConfig) -> None:
    if cfg.plot:
        plot_learning_curve(run_dir, cfg)
    write_tensorboard(run_dir)
