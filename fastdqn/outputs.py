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
    """Per-episode return with a rolling mean, as the tutorial plots it (no display needed)."""
    from fastdqn.plot import line_chart

    _, rets = read_episodes(run_dir)
    eps = list(range(1, len(rets) + 1))
    return line_chart(
        Path(run_dir) / "learning_curve.png",
        [("episode return", eps, rets, (166, 198, 230), 1),
         (f"rolling mean ({window})", eps, rolling_mean(rets, window), (31, 119, 180), 3)],
        hlines=[(f"solved ({cfg.solve_threshold:g})", cfg.solve_threshold, (44, 160, 44))],
        title=f"{cfg.env_id}: training episodes ({cfg.num_envs} envs, seed {cfg.seed})",
        xlabel="episode", ylabel="return", ylim=(0, cfg.max_episode_steps * 1.05),
    )


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
