"""MinAtar Breakout against the reference package, step for step (see tests/minatar_oracle.py)."""

import pytest
import torch

import fastdqn

pytest.importorskip("minatar")
from minatar_oracle import check_spec, run  # noqa: E402


def encode_reset(calls):
    # the reference draws the start side as randint(2); ours takes one uniform (>= 1/2: the right start)
    assert [c[0] for c in calls] == ["randint"] and calls[0][1] == (2,)
    return [(calls[0][3] + 0.5) / 2]


def encode_step(calls):
    assert calls == []  # Breakout draws nothing during a step
    return []


@pytest.mark.parametrize("env_id, sticky, n, steps", [
    ("MinAtar/Breakout-v1", 0.0, 128, 800),  # >= 100k steps with sticky actions off and on
    ("MinAtar/Breakout-v1", 0.1, 128, 800),
    ("MinAtar/Breakout-v0", 0.1, 64, 400),  # all six actions
])
def test_breakout_matches_reference(env_id, sticky, n, steps):
    counts = run(env_id, "breakout", encode_reset, encode_step, n=n, steps=steps, sticky=sticky, seed=1)
    assert counts["episodes"] > n and counts["reward"] > n  # the trajectories cover resets and scoring
    if sticky:
        assert 0.08 < counts["sticky"] / counts["steps"] < 0.12


def test_breakout_refill_and_corner_bounces():
    """A paddle that tracks the ball keeps it alive until every brick is gone and the wall refills."""

    env = fastdqn.make("MinAtar/Breakout-v0", 64, backend="torch", seed=3, sticky_action_prob=0.0)
    from fastdqn.minatar.breakout import BALL_X, PADDLE

    total = torch.zeros(64)
    for _ in range(3000):
        s = env._state[1:]
        a = torch.where(s[PADDLE] < s[BALL_X], 3, torch.where(s[PADDLE] > s[BALL_X], 1, 0))
        total += env.step(a).reward
    assert (total > 30).all()  # more than one wall of 30 bricks: the wall refilled


def test_start_sides_are_even():
    env = fastdqn.make("MinAtar/Breakout-v1", 20_000, backend="torch", seed=0)
    obs = env.reset()
    left, right = int(obs[:, 1, 3, 0].sum()), int(obs[:, 1, 3, 9].sum())
    assert left + right == 20_000
    assert abs(left - 10_000) < 300  # 20k fair coin flips: 4.2 standard deviations


@pytest.mark.parametrize("version", ["v0", "v1"])
def test_spec_matches_reference_registration(version):
    check_spec(f"MinAtar/Breakout-{version}")
