"""MinAtar Freeway against the reference package, step for step (see tests/minatar_oracle.py)."""

import numpy as np
import pytest
import torch

import fastdqn

pytest.importorskip("minatar")
import minatar_oracle  # noqa: E402
from minatar_oracle import check_spec, run  # noqa: E402

from fastdqn.minatar.freeway import CAR_SPEED, COOLDOWN, N_CARS, POS, TIME, Freeway  # noqa: E402

EPISODE = 2501  # steps until the reference's time-out


def encode_reset(calls):
    # the reference draws randint(1, 6, 8) speeds, then rand(8) for the directions (the sign of rand - 0.5);
    # it multiplies the recorded speed array by the signs in place, hence abs (and a sign of 0, from a rand of
    # exactly 1/2, leaves speed 0 whatever was drawn: any slot will do). Ours: speed 1 + floor(5 u), direction
    # from the same double as the reference's rand.
    assert [c[0] for c in calls] == ["randint", "rand"]
    assert calls[0][1] == (1, 6, 8) and calls[1][1] == (8,)
    return [(max(abs(int(v)), 1) - 0.5) / 5 for v in calls[0][3]] + [float(v) for v in calls[1][3]]


_filler = np.random.default_rng(12345)


def encode_step(calls):
    if not calls:  # no crossing: the slots are drawn but must not be used; random fill shows a misuse
        return list(_filler.random(16))
    return encode_reset(calls)  # a crossing draws exactly what a reset draws


def mostly_up(up: int, n_actions: int, n: int):
    """Random actions, with 'up' (action index ``up``) taken 80% of the time in every other 300-step window,
    so that chickens cross the road (random actions rarely do)."""

    def actions(t, rng):
        a = rng.integers(n_actions, size=n)
        return np.where(((t // 300) % 2 == 1) & (rng.random(n) < 0.8), up, a)

    return actions


@pytest.mark.parametrize("env_id, sticky, n, steps", [
    ("MinAtar/Freeway-v1", 0.0, 40, 2600),  # >= 100k steps with sticky actions off and on, past the time-out
    ("MinAtar/Freeway-v1", 0.1, 40, 2600),
    ("MinAtar/Freeway-v0", 0.1, 24, 900),  # all six actions
])
def test_freeway_matches_reference(env_id, sticky, n, steps):
    up, n_actions = (1, 3) if env_id.endswith("v1") else (2, 6)
    counts = run(env_id, "freeway", encode_reset, encode_step, n=n, steps=steps, sticky=sticky, seed=2,
                 actions=mostly_up(up, n_actions, n))
    assert counts["steps"] >= (100_000 if env_id.endswith("v1") else 20_000)
    assert counts["episodes"] == n * (steps // EPISODE)  # the v1 runs' envs all time out once (at step 2501)
    assert counts["reward"] > 2 * n  # crossings, each re-randomising the cars
    if sticky:
        assert 0.08 < counts["sticky"] / counts["steps"] < 0.12


def test_freeway_without_ramping_matches_reference():
    counts = run("MinAtar/Freeway-v1", "freeway", encode_reset, encode_step, n=16, steps=700, sticky=0.1, seed=5,
                 ramping=False, actions=mostly_up(1, 3, 16))
    assert counts["reward"] > 16


class HalfRandom(minatar_oracle.RecordingRandom):
    """A recording RandomState whose direction draws hit exactly 1/2 for one or two cars (never the top
    lane's, whose trail the reference cannot draw then): sign 0, a speed-0 car."""

    halves = 0  # direction draws set to 1/2, over all instances

    def __init__(self, seed):
        super().__init__(seed)
        self._draws = 0

    def __getattr__(self, name):
        call = super().__getattr__(name)
        if name != "rand":
            return call

        def rand(*args):
            if args != (8,):
                return call(*args)
            value = call(*args)  # recorded: the same array object is returned and patched below
            k, self._draws = 1 + self._draws % 7, self._draws + 1
            value[k] = 0.5
            HalfRandom.halves += 1
            if self._draws % 3 == 0 and k < 7:
                value[k + 1] = 0.5  # two in a row: the trail's channel is carried from further up
                HalfRandom.halves += 1
            return value

        return rand


def test_speed_zero_cars_match_reference(monkeypatch):
    monkeypatch.setattr(minatar_oracle, "RecordingRandom", HalfRandom)
    monkeypatch.setattr(HalfRandom, "halves", 0)
    counts = run("MinAtar/Freeway-v1", "freeway", encode_reset, encode_step, n=16, steps=700, sticky=0.1, seed=7,
                 actions=mostly_up(1, 3, 16))
    assert counts["reward"] > 16  # crossings, so speed-0 cars also come from the re-randomisation
    assert HalfRandom.halves > 16 + counts["reward"]


def test_ended_episode_step_changes_nothing():
    from minatar import Environment

    ref = Environment("freeway", sticky_action_prob=0.0)
    ref.seed(3)
    ref.reset()
    ref.env.pos, ref.env.move_timer, ref.env.terminal = 1, 0, True
    before = minatar_oracle.reference_frame(ref)
    assert ref.act(2) == (0, True)
    np.testing.assert_array_equal(minatar_oracle.reference_frame(ref), before)

    game = Freeway()
    u = [torch.rand(4, dtype=torch.float64) for _ in range(16)]
    s = game.reset_state(u, None)
    s[POS], s[COOLDOWN], s[TIME] = 1, 0, -1
    out, reward, terminal = game.step(s, torch.full((4,), 2, dtype=torch.int32), u)
    assert torch.equal(out, s) and out is not s
    assert (reward == 0).all() and terminal.all()
    s[TIME] = 0  # the last step: the chicken still crosses and scores
    out, reward, terminal = game.step(s, torch.full((4,), 2, dtype=torch.int32), u)
    assert (reward == 1).all() and terminal.all() and (out[POS] == 9).all()


def _check_speeds(speed: torch.Tensor):
    """Speeds and directions of all cars ``[N, 8]``: 1..5 and left/right, each combination with probability
    1/10, lanes independent; counts within ~4 standard deviations."""
    n = speed.numel()
    assert ((speed.abs() >= 1) & (speed.abs() <= 5)).all()
    for v in (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5):
        assert abs(int((speed == v).sum()) - n / 10) < 4 * (n * 0.1 * 0.9) ** 0.5, v
    pairs = speed.shape[0] * (N_CARS - 1)  # neighbouring lanes: same speed 1/5, same direction 1/2
    same_speed = int((speed[:, 1:].abs() == speed[:, :-1].abs()).sum())
    same_dir = int(((speed[:, 1:] > 0) == (speed[:, :-1] > 0)).sum())
    assert abs(same_speed - pairs / 5) < 4 * (pairs * 0.2 * 0.8) ** 0.5
    assert abs(same_dir - pairs / 2) < 4 * (pairs * 0.25) ** 0.5


@pytest.fixture
def one_thread():
    # large batches of small ops: on a loaded machine, intra-op threads mostly wait for each other
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_speeds_and_directions_are_uniform(one_thread):
    n = 20_000
    env = fastdqn.make("MinAtar/Freeway-v1", n, backend="torch", seed=0, sticky_action_prob=0.0)
    rows = slice(1 + CAR_SPEED, 1 + CAR_SPEED + N_CARS)  # state row 0 is the previous action
    obs = env.reset()
    start = env.state[:, rows].clone()
    _check_speeds(start)
    # at reset every car is in column 0; a right-moving car's trail wraps to column 9, in its speed's channel
    trail_x = torch.where(start > 0, 9, 1)
    trail = obs[:, 2:, 1:9].gather(3, trail_x[:, None, :, None].expand(n, 5, 8, 1))[..., 0]  # [N, speed, lane]
    assert torch.equal(trail.int().argmax(1) + 1, start.abs()) and (trail.sum(1) == 1).all()

    start = env.state[:, rows].clone()
    env.state[:, 1 + POS], env.state[:, 1 + COOLDOWN] = 1, 0  # one 'up' from the top: every chicken crosses
    out = env.step(torch.ones(n, dtype=torch.int64))
    assert (out.reward == 1).all()
    crossed = env.state[:, rows]
    _check_speeds(crossed)
    same = int((crossed.abs() == start.abs()).sum())  # the new speeds are drawn afresh
    assert abs(same - start.numel() / 5) < 4 * (start.numel() * 0.2 * 0.8) ** 0.5


def test_direction_from_exact_half_is_speed_zero():
    u = [torch.tensor([0.3, 0.9, 0.0], dtype=torch.float64)] * 8
    u += [torch.tensor([0.5, 0.5 + 2 ** -32, 0.5 - 2 ** -32], dtype=torch.float64)] * 8
    speed = Freeway().reset_state(u, None)[CAR_SPEED:CAR_SPEED + N_CARS]
    assert (speed == torch.tensor([0, 5, -1], dtype=torch.int32)).all()


@pytest.mark.parametrize("version", ["v0", "v1"])
def test_spec_matches_reference_registration(version):
    check_spec(f"MinAtar/Freeway-{version}")
