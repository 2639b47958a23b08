"""Run outputs: the learning-curve PNG, the rolling mean and the tick helper."""

import csv

import pytest
from PIL import Image

from fastdqn.config import preset
from fastdqn.outputs import plot_learning_curve, rolling_mean
from fastdqn.plot import nice_ticks


def test_rolling_mean_by_hand():
    assert rolling_mean([2, 4, 6, 8], 2) == [2, 3, 5, 7]
    assert rolling_mean([1, 2, 3], 10) == [1, 1.5, 2]


@pytest.mark.parametrize("lo, hi, expected", [
    (0, 525, [0, 100, 200, 300, 400, 500]),
    (1, 37, [10, 20, 30]),  # raw step 36/6 = 6 rounds up to 10
    (0, 1, [0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]),
])
def test_nice_ticks(lo, hi, expected):
    assert nice_ticks(lo, hi) == pytest.approx(expected)


def test_learning_curve_png(tmp_path):
    rets = [10, 20, 500, 30] * 30
    with open(tmp_path / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["env_step", "wall_time_s", "episode_return", "epsilon", "loss", "env_steps_per_s"])
        w.writerows([i * 8, 0.1, r, 0.5, 1.0, 100] for i, r in enumerate(rets))
    path = plot_learning_curve(tmp_path, preset("fast"))
    img = Image.open(path)
    assert img.format == "PNG" and img.size == (800, 450)
    colors = {c for _, c in img.convert("RGB").getcolors(1 << 20)}
    assert (31, 119, 180) in colors  # the rolling-mean line was drawn
    assert (44, 160, 44) in colors  # the solved threshold
