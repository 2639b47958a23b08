"""MinAtar Asterix against the reference package, step for step (see tests/minatar_oracle.py)."""

import numpy as np
import pytest
import torch

import fastdqn

minatar = pytest.importorskip("minatar")
from minatar_oracle import check_spec, run  # noqa: E402

FREE_ROWS = range(1, 9)  # the reference draws randint(k) over the k free rows, 1 <= k <= 8


def encoders(seed):
    """``(encode_reset, encode_step)``; uniforms the reference did not draw are filled at random
    (the game must not use them)."""
    filler = np.random.default_rng(seed)

    def encode_reset(calls):
        assert calls == []  # the start is fixed; our reset takes one uniform it ignores
        return [filler.random()]

    def encode_step(calls):
        # a spawn draws rand() for the side, rand() for gold and, if some row is free, randint(k)
        if not calls:
            return list(filler.random(3))
        assert [(c[0], c[1]) for c in calls[:2]] == [("rand", ()), ("rand", ())], calls
        side, gold = calls[0][3], calls[1][3]
        if len(calls) == 2:  # every row taken: nothing spawns
            return [side, gold, filler.random()]
        (name, args, _, j), = calls[2:]
        assert name == "randint" and len(args) == 1 and args[0] in FREE_ROWS and 0 <= j < args[0], calls
        return [side, gold, (j + 0.5) / args[0]]

    return encode_reset, encode_step


@pytest.fixture
def tracked(monkeypatch):
    """The reference envs the oracle creates, and what they went through: the highest ramp index,
    the lowest spawn and move intervals, spawns due with every row taken, the longest episode."""

    seen = {"envs": [], "ramp": 0, "spawn": 10, "move": 5, "full": 0, "longest": 0}

    class Tracked(minatar.Environment):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.t = 0
            seen["envs"].append(self)

        def reset(self):
            self.t = 0
            return super().reset()

        def act(self, a):
            e = self.env
            seen["full"] += e.spawn_timer == 0 and None not in e.entities
            out = super().act(a)
            self.t += 1
            seen["ramp"] = max(seen["ramp"], e.ramp_index)
            seen["spawn"], seen["move"] = min(seen["spawn"], e.spawn_speed), min(seen["move"], e.move_speed)
            seen["longest"] = max(seen["longest"], self.t)
            return out

    monkeypatch.setattr(minatar, "Environment", Tracked)
    return seen


MOVES = ((0, 0), (-1, 0), (0, -1), (1, 0), (0, 1))  # n l u r d: the -v1 action indices


def dodging(envs):
    """A random policy over the moves whose target cell no enemy can reach next step (and, when a
    spawn is due, that stay off the edge columns): long episodes through the whole ramp."""

    def policy(t, rng):
        actions = []
        for env in envs:
            e = env.env
            by_row = {o[1]: o for o in e.entities if o is not None}

            def unsafe(x, y, e=e, by_row=by_row):
                o = by_row.get(y)
                if o is None:
                    return e.spawn_timer == 0 and x in (0, 9)
                return not o[3] and (o[0] == x or (e.move_timer <= 1 and o[0] + (1 if o[2] else -1) == x))

            ok = [a for a, (dx, dy) in enumerate(MOVES)
                  if not unsafe(min(9, max(0, e.player_x + dx)), min(8, max(1, e.player_y + dy)))]
            actions.append(rng.choice(ok) if ok else 0)
        return actions

    return policy


@pytest.mark.parametrize("env_id, sticky, n, steps", [
    ("MinAtar/Asterix-v1", 0.0, 128, 800),  # >= 100k steps with sticky actions off and on
    ("MinAtar/Asterix-v1", 0.1, 128, 800),
    ("MinAtar/Asterix-v0", 0.1, 64, 400),  # all six actions
])
def test_asterix_matches_reference(tracked, env_id, sticky, n, steps):
    counts = run(env_id, "asterix", *encoders(n), n=n, steps=steps, sticky=sticky, seed=1)
    assert counts["episodes"] > n and counts["reward"] > n / 2  # the trajectories cover resets and gold
    assert tracked["ramp"] >= 1  # some episodes outlived the first ramp (step 102)
    if sticky:
        assert 0.08 < counts["sticky"] / counts["steps"] < 0.12


def test_asterix_matches_reference_through_the_whole_ramp(tracked):
    """Dodging enemies, episodes reach the ramp's end (spawn and move intervals 1, ramp index 9),
    where spawns come due with all eight rows taken."""
    counts = run("MinAtar/Asterix-v1", "asterix", *encoders(2), n=48, steps=1200, sticky=0.0, seed=2,
                 actions=dodging(tracked["envs"]))
    assert counts["episodes"] > 48 and counts["reward"] > 400
    assert (tracked["ramp"], tracked["spawn"], tracked["move"]) == (9, 1, 1)
    assert tracked["full"] > 0


def test_asterix_without_ramping_matches_reference(tracked):
    counts = run("MinAtar/Asterix-v1", "asterix", *encoders(3), n=32, steps=500, sticky=0.1, seed=3, ramping=False,
                 actions=dodging(tracked["envs"]))
    assert counts["episodes"] > 0 and counts["reward"] > 32
    assert tracked["longest"] > 250  # well past the first ramp step ...
    assert (tracked["ramp"], tracked["spawn"], tracked["move"]) == (0, 10, 5)  # ... and nothing ramped


def test_spawn_draws_follow_their_probabilities():
    """20k envs standing still, their spawn timers set to 0 before each of two steps: the two
    spawns (sides, gold share, rows: the second takes one of the seven rows the first left free)
    against their probabilities, each count within 4 standard deviations."""
    from fastdqn.minatar.asterix import SPAWN_TIMER

    n = 20_000
    env = fastdqn.make("MinAtar/Asterix-v1", n, backend="torch", seed=0, sticky_action_prob=0.1)
    env.reset()
    spawned = []
    seen = torch.zeros(n, 4, 10, 10, dtype=torch.bool)
    for _ in range(2):
        env._state[1 + SPAWN_TIMER] = 0  # row 0 is the previous action
        out = env.step(torch.zeros(n, dtype=torch.int64))
        assert not out.terminated.any() and not out.obs[:, 2].any()  # objects on the edge, no move yet
        spawned.append(out.obs & ~seen)
        seen = out.obs
    assert (seen[:, [1, 3]].sum((1, 2, 3)) == 2).all()

    def near(count, total, p):
        sd = (total * p * (1 - p)) ** 0.5
        assert abs(count - total * p) < 4 * sd, (count, total * p, sd)

    rows = []
    for new in spawned:
        obj = new[:, 1] | new[:, 3]
        assert (obj.sum((1, 2)) == 1).all() and not obj[:, [0, 9]].any() and not obj[..., 1:9].any()
        left, gold = obj[..., 0].any(1), new[:, 3].any((1, 2))
        for side in (True, False):
            for g, p in ((True, 1 / 3), (False, 2 / 3)):
                near(int(((left == side) & (gold == g)).sum()), n, p / 2)
        rows.append(obj.any(2).int().argmax(1))
    assert (rows[0] != rows[1]).all()
    pairs = torch.bincount(rows[0] * 10 + rows[1], minlength=100).view(10, 10)
    for r1 in range(1, 9):
        near(int(pairs[r1].sum()), n, 1 / 8)
        for r2 in range(1, 9):
            if r2 != r1:
                near(int(pairs[r1, r2]), n, 1 / 56)


def test_step_is_pure():
    from fastdqn.minatar.asterix import Asterix

    game, n = Asterix(), 256
    gen = torch.Generator().manual_seed(0)
    s = game.reset_state([torch.rand(n, generator=gen, dtype=torch.float64)], None)
    for _ in range(60):
        a = torch.randint(0, 6, (n,), generator=gen, dtype=torch.int32)
        u = [torch.rand(n, generator=gen, dtype=torch.float64) for _ in range(game.step_uniforms)]
        before = s.clone()
        s1, r1, d1 = game.step(s, a, u)
        s2, r2, d2 = game.step(s, a, u)
        assert torch.equal(s, before) and torch.equal(s1, s2) and torch.equal(r1, r2) and torch.equal(d1, d2)
        assert s1.dtype == torch.int32 and r1.dtype == torch.float32 and d1.dtype == torch.bool
        s = s1


@pytest.mark.parametrize("version", ["v0", "v1"])
def test_spec_matches_reference_registration(version):
    check_spec(f"MinAtar/Asterix-{version}")
