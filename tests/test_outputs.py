"""Run outputs: reading metrics/evals, the rolling mean, quantiles and population curves (by
hand and against numpy), the learning-curve PNG for one agent and for a population, and the tick
helper."""

import csv
import sys

import numpy as np
import pytest
from PIL import Image

from fastdqn.config import preset
from fastdqn.outputs import (
    plot_learning_curve,
    population_curves,
    quantile,
    read_evals,
    read_metrics,
    rolling_mean,
    write_extras,
    write_tensorboard,
)
from fastdqn.plot import nice_ticks

METRICS_HEADER = ["env_step", "agent", "wall_time_s", "episodes", "mean_return", "epsilon", "loss", "env_steps_per_s"]
EVALS_HEADER = ["env_step", "agent", "updates", "wall_time_s", "eval_mean_return", "eval_std_return"]
LIGHT, DARK, GREEN, RED = (166, 198, 230), (31, 119, 180), (44, 160, 44), (214, 39, 40)


def write_run(d, metrics_rows, eval_rows):
    with open(d / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(METRICS_HEADER)
        w.writerows(metrics_rows)
    with open(d / "evals.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(EVALS_HEADER)
        w.writerows(eval_rows)


LEGEND_PX = 63  # every series, line and marker kind has a 20x3-pixel legend swatch, drawn or not
LINE_PX = 1000  # a curve across the plot takes thousands of pixels
MARKER_PX = 30  # an evaluation marker (a ring of radius 4) takes ~40


def pixels(path):
    """{rgb: number of pixels} of the PNG at ``path`` (lines are drawn without antialiasing)."""
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (800, 450)
        counts = {c: n for n, c in img.convert("RGB").getcolors(1 << 20)}
    return lambda rgb: counts.get(rgb, 0)


def test_rolling_mean_by_hand():
    assert rolling_mean([2, 4, 6, 8], 2) == [2, 3, 5, 7]
    assert rolling_mean([1, 2, 3], 10) == [1, 1.5, 2]
    assert rolling_mean([], 3) == []


def test_quantile_by_hand_and_against_numpy():
    assert quantile([1, 2, 3, 4], 0.5) == 2.5
    assert quantile([3, 1, 2], 0.1) == pytest.approx(1.2)  # sorted [1, 2, 3], position 0.2
    assert quantile([7], 0.9) == 7
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 16, 101):
        xs = rng.normal(size=n).tolist()
        for q in (0.0, 0.1, 0.25, 0.5, 0.9, 1.0):
            assert quantile(xs, q) == pytest.approx(float(np.quantile(xs, q)), rel=1e-12, abs=1e-12), (n, q)


def test_population_curves_by_hand():
    """Each step where any agent logged: median and 10/90th percentiles over the agents' latest
    values at or before that step (agents that have not logged yet are left out)."""
    per_agent = {0: [(10, 1.0), (30, 3.0)], 1: [(20, 5.0)], 2: [(10, 2.0), (20, 4.0)]}
    steps, med, lo, hi = population_curves(per_agent)
    assert steps == [10, 20, 30]
    # step 10: {1, 2}; step 20: {1, 5, 4}; step 30: {3, 5, 4}
    assert med == pytest.approx([1.5, 4.0, 4.0])
    assert lo == pytest.approx([1.1, 1.6, 3.2])
    assert hi == pytest.approx([1.9, 4.8, 4.8])


def test_read_metrics_and_evals(tmp_path):
    write_run(tmp_path,
              [[8, 0, 0.1, 2, "10.50", 0.5, 1.0, 100], [8, 1, 0.1, 0, "", 0.5, 1.0, 100],
               [16, 0, 0.2, 1, "30.00", 0.4, 1.0, 100], [16, 1, 0.2, 3, "12.00", 0.4, 1.0, 100]],
              [[16, 0, 2, 0.3, 9.5, 0.5], [16, 1, 2, 0.3, 11.0, 1.5]])
    # flushes in which an agent finished no episode are left out
    assert read_metrics(tmp_path) == {0: [(8, 10.5), (16, 30.0)], 1: [(16, 12.0)]}
    assert read_evals(tmp_path) == [(16, 0, 9.5), (16, 1, 11.0)]


def test_learning_curve_png_one_agent(tmp_path):
    rets = [10, 20, 500, 30] * 30
    write_run(tmp_path, [[i * 8, 0, 0.1, 1, f"{r:.2f}", 0.5, 1.0, 100] for i, r in enumerate(rets)],
              [[400, 0, 40, 1.0, 200.0, 3.0], [800, 0, 90, 2.0, 300.0, 3.0]])
    path = plot_learning_curve(tmp_path, preset("fast"))
    assert path == tmp_path / "learning_curve.png"
    px = pixels(path)
    assert px(LIGHT) > LINE_PX  # the per-flush training return
    assert px(DARK) > LINE_PX  # the rolling mean
    assert px(GREEN) > 300  # the dashed solved threshold
    assert px(RED) - LEGEND_PX >= 2 * MARKER_PX  # two evaluation markers


def test_learning_curve_png_population(tmp_path):
    rng = np.random.default_rng(0)
    rows = [[s, k, 0.1, 2, f"{rng.uniform(10, 400):.2f}", 0.5, 1.0, 100] for s in range(8, 800, 8) for k in range(5)]
    evals = [[s, k, s // 8, 1.0, float(rng.uniform(10, 400)), 1.0] for s in (200, 400, 600) for k in range(5)]
    write_run(tmp_path, rows, evals)
    px = pixels(plot_learning_curve(tmp_path, preset("fast"), 5))
    assert px(DARK) > LINE_PX  # the median
    assert px(LIGHT) > LINE_PX  # the 10th-90th percentile band
    assert px(GREEN) > 300
    assert px(RED) - LEGEND_PX >= 3 * MARKER_PX  # one (median) marker per evaluation step, not one per agent
    assert px(RED) - LEGEND_PX < 6 * MARKER_PX


def test_learning_curve_without_evals_or_episodes(tmp_path):
    """A run stopped before any episode finished or any evaluation still gets its (empty) chart."""
    write_run(tmp_path, [[8, 0, 0.1, 0, "", 1.0, 0, 100]], [])
    px = pixels(plot_learning_curve(tmp_path, preset("fast")))
    assert px(GREEN) > 300
    assert px(DARK) == px(LIGHT) == px(RED) == LEGEND_PX  # legend swatches only: nothing to draw


def test_write_extras(tmp_path):
    write_run(tmp_path, [[8, 0, 0.1, 1, "12.00", 0.5, 1.0, 100]], [[8, 0, 1, 0.1, 9.0, 0.0]])
    write_extras(tmp_path, preset("fast").replace(plot=False), 1)
    assert not (tmp_path / "learning_curve.png").exists()
    write_extras(tmp_path, preset("fast"), 1)
    assert (tmp_path / "learning_curve.png").exists()


def test_write_tensorboard_without_tensorboard(tmp_path, monkeypatch):
    write_run(tmp_path, [[8, 0, 0.1, 1, "12.00", 0.5, 1.0, 100]], [])
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    assert write_tensorboard(tmp_path) is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evals.csv", "metrics.csv"]


@pytest.mark.parametrize("lo, hi, expected", [
    (0, 525, [0, 100, 200, 300, 400, 500]),
    (1, 37, [10, 20, 30]),  # raw step 36/6 = 6 rounds up to 10
    (0, 1, [0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]),
])
def test_nice_ticks(lo, hi, expected):
    assert nice_ticks(lo, hi) == pytest.approx(expected)


def test_population_curves_even_number_of_agents():
    # the median of an even number of agents is the mean of the middle two: sorted [1, 2, 10, 20]
    steps, med, lo, hi = population_curves({0: [(1, 1.0)], 1: [(1, 2.0)], 2: [(1, 10.0)], 3: [(1, 20.0)]})
    assert steps == [1] and med == [6.0]
    assert lo == pytest.approx([1.3]) and hi == pytest.approx([17.0])  # positions 0.3 and 2.7
