"""MinAtar Seaquest against the reference package, step for step (see tests/minatar_oracle.py)."""

import numpy as np
import pytest
import torch

import fastdqn

minatar = pytest.importorskip("minatar")
from minatar_oracle import check_spec, run  # noqa: E402

from fastdqn.minatar.seaquest import ENEMIES  # noqa: E402


def encoders(seed):
    """``(encode_reset, encode_step)``; uniforms the reference did not draw are filled at random
    (the game must not use them)."""
    filler = np.random.default_rng(seed)

    def encode_reset(calls):
        assert calls == []  # the start is fixed; our reset takes one uniform it ignores
        return [filler.random()]

    def row(call):  # randint(1, 9) -> the middle of its eighth of [0, 1)
        name, args, kwargs, v = call
        assert name == "randint" and (args, kwargs) in (((1, 9), {}), ((), {"low": 1, "high": 9})), call
        assert 1 <= v <= 8
        return (v - 0.5) / 8

    def encode_step(calls):
        # an enemy spawn draws rand() (side), rand() (submarine) and randint(1, 9) (row); then a diver
        # spawn draws rand() (side) and randint(1, 9) (row); either, both or neither happen
        u = list(filler.random(5))
        names = [c[0] for c in calls]
        if names[:3] == ["rand", "rand", "randint"]:
            u[0], u[1], u[2] = calls[0][3], calls[1][3], row(calls[2])
            calls, names = calls[3:], names[3:]
        if calls:
            assert names == ["rand", "randint"], calls
            u[3], u[4] = calls[0][3], row(calls[1])
        return u

    return encode_reset, encode_step


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: one intra-op thread is faster (and steadier on a loaded machine) than several."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tracked(monkeypatch):
    """The reference envs the oracle creates, and what they went through."""

    seen = {"envs": [], "ramp": 0, "enemies": 0, "enemy_shots": 0, "shots": 0, "divers": 0, "aboard": 0,
            "full_surfacings": 0, "surfacings": 0, "negative": 0, "out_of_oxygen": 0, "longest": 0, "spawn": 20,
            "move": 5, "stacked": 0}

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
            before = e.diver_count
            out = super().act(a)
            self.t += 1
            seen["longest"] = max(seen["longest"], self.t)
            seen["ramp"] = max(seen["ramp"], e.ramp_index)
            seen["spawn"], seen["move"] = min(seen["spawn"], e.e_spawn_speed), min(seen["move"], e.move_speed)
            seen["enemies"] = max(seen["enemies"], len(e.e_subs) + len(e.e_fish))
            seen["enemy_shots"] = max(seen["enemy_shots"], len(e.e_bullets))
            seen["shots"] = max(seen["shots"], len(e.f_bullets))
            seen["divers"] = max(seen["divers"], len(e.divers))
            seen["aboard"] = max(seen["aboard"], e.diver_count)
            seen["surfacings"] += e.diver_count == before - 1 and e.sub_y == 0
            seen["full_surfacings"] += before == 6 and e.diver_count == -1
            seen["negative"] += e.diver_count < 0
            seen["out_of_oxygen"] += out[1] and e.oxygen < 0
            cells = [tuple(o[:2]) for o in e.e_subs + e.e_fish]
            seen["stacked"] += len(cells) != len(set(cells))
            return out

    monkeypatch.setattr(minatar, "Environment", Tracked)
    return seen


MOVES = ((0, 0), (-1, 0), (0, -1), (1, 0), (0, 1), (0, 0))  # n l u r d f (-v1 is the full set)


def _danger(e, x, y):
    """Whether the player's cell ``(x, y)`` after its move could end the episode in this step."""
    if y == 0:
        return False
    if e.e_spawn_timer == 0 and x in (0, 9):
        return True
    for o in e.e_subs + e.e_fish:
        if o[1] == y:
            d = 1 if o[2] else -1
            moved = o[0] + d if o[3] == 0 else o[0]
            if x in (o[0], moved):
                return True
            if len(o) == 5 and o[4] == 0 and x == moved + d:  # a submarine's fresh shot
                return True
    return any(b[1] == y and x in (b[0], b[0] + (1 if b[2] else -1)) for b in e.e_bullets)


def surviving(envs, surfacers=lambda i: True):
    """A random policy over the safe actions that chases divers and, in the envs ``surfacers``
    picks, surfaces when the oxygen runs low or six divers are aboard (the others run out of oxygen)."""

    def policy(t, rng):
        actions = []
        for i, env in enumerate(envs):
            e = env.env
            ok = []
            for a, (dx, dy) in enumerate(MOVES):
                x, y = min(9, max(0, e.sub_x + dx)), min(8, max(0, e.sub_y + dy))
                if y == 0 and e.sub_y > 0 and (e.diver_count == 0 or not surfacers(i)):
                    continue  # surfacing without a diver ends the episode
                if not _danger(e, x, y):
                    ok.append(a)
            if not ok:
                actions.append(0)
                continue
            want = []
            if surfacers(i) and e.diver_count != 0 and (e.oxygen < 60 or e.diver_count >= 6 or e.sub_y == 0):
                want = [2] if e.sub_y > 0 else [4, 1, 3, 5]
            elif e.divers and e.diver_count < 6:
                dvx, dvy = min((abs(d[0] - e.sub_x) + abs(d[1] - e.sub_y), d[0], d[1]) for d in e.divers)[1:]
                want = [4 if dvy > e.sub_y else 2] if dvy != e.sub_y else [3 if dvx > e.sub_x else 1, 5]
            elif e.sub_y == 0:
                want = [4]
            preferred = [a for a in want if a in ok]
            actions.append(rng.choice(preferred) if preferred and rng.random() < 0.8 else rng.choice(ok))
        return actions

    return policy


@pytest.mark.parametrize("env_id, sticky, n, steps", [
    ("MinAtar/Seaquest-v1", 0.0, 128, 800),  # >= 100k steps with sticky actions off and on
    ("MinAtar/Seaquest-v1", 0.1, 128, 800),
    ("MinAtar/Seaquest-v0", 0.1, 24, 400),  # the same six actions (the minimal set is all of them)
])
def test_seaquest_matches_reference(tracked, env_id, sticky, n, steps):
    counts = run(env_id, "seaquest", *encoders(n), n=n, steps=steps, sticky=sticky, seed=1)
    assert counts["episodes"] > n and counts["reward"] > n / 4  # the trajectories cover resets and scoring
    assert tracked["shots"] == 2 and tracked["divers"] >= 1 and tracked["enemies"] >= 3
    if sticky:
        assert 0.08 < counts["sticky"] / counts["steps"] < 0.12


def test_seaquest_matches_reference_deep_into_episodes(tracked):
    """Staying clear of enemies and their shots and chasing divers, episodes surface with divers
    (and with six, after which the count goes negative), ramp through the whole ramp (spawn interval 1,
    move interval 2) with 20 and more enemies at once, and run out of oxygen in the envs that never
    surface."""
    counts = run("MinAtar/Seaquest-v1", "seaquest", *encoders(2), n=24, steps=1200, sticky=0.0, seed=2,
                 actions=surviving(tracked["envs"], surfacers=lambda i: i % 4 != 3))
    assert counts["episodes"] > 24 and counts["reward"] > 100
    assert tracked["surfacings"] > 50 and tracked["full_surfacings"] > 0 and tracked["negative"] > 0
    assert (tracked["ramp"], tracked["spawn"], tracked["move"]) == (19, 1, 2)  # the whole ramp
    assert tracked["out_of_oxygen"] > 0 and tracked["longest"] == 1200
    assert tracked["divers"] == 2 and tracked["aboard"] == 6 and tracked["enemy_shots"] >= 4
    assert tracked["stacked"] > 0  # enemies sharing a cell: the reference's list order decided who was hit
    assert 20 <= tracked["enemies"] < ENEMIES  # many enemies at the full ramp, and room to spare


def test_seaquest_without_ramping_matches_reference(tracked):
    counts = run("MinAtar/Seaquest-v1", "seaquest", *encoders(3), n=16, steps=600, sticky=0.1, seed=3, ramping=False,
                 actions=surviving(tracked["envs"]))
    assert counts["episodes"] > 0 and counts["reward"] > 16
    assert tracked["surfacings"] > 10 and tracked["longest"] > 300
    assert (tracked["ramp"], tracked["spawn"], tracked["move"]) == (0, 20, 5)  # surfacing never ramped


def to_state(e) -> np.ndarray:
    """One column of fastdqn's Seaquest state holding the reference game ``e`` (list order kept:
    shots and divers oldest first in their slots, enemies numbered in list order per kind)."""
    from fastdqn.minatar import seaquest as sq

    col = np.zeros(sq.Seaquest.state_dim, dtype=np.int32)
    scalars = {sq.SUB_X: e.sub_x, sq.SUB_Y: e.sub_y, sq.SUB_RIGHT: e.sub_or, sq.OXYGEN: e.oxygen,
               sq.DIVERS: e.diver_count, sq.SURFACED: e.surface, sq.COOL_DOWN: e.shot_timer,
               sq.SPAWN_SPEED: e.e_spawn_speed, sq.SPAWN_TIMER: e.e_spawn_timer, sq.DIVER_TIMER: e.d_spawn_timer,
               sq.MOVE_SPEED: e.move_speed, sq.RAMP_INDEX: e.ramp_index}
    for row, value in scalars.items():
        col[row] = value
    for i, (x, y, right) in enumerate(e.f_bullets):
        col[[sq.SHOT_ALIVE + i, sq.SHOT_X + i, sq.SHOT_Y + i, sq.SHOT_RIGHT + i]] = 1, x, y, right
    for i, (x, y, right, timer) in enumerate(e.divers):
        col[[sq.DIVER_ALIVE + i, sq.DIVER_X + i, sq.DIVER_Y + i, sq.DIVER_RIGHT + i, sq.DIVER_MOVE + i]] = (
            1, x, y, right, timer)
    for x, y, right in e.e_bullets:
        col[(sq.ENEMY_SHOTS_RIGHT if right else sq.ENEMY_SHOTS_LEFT) + y - 1] |= 1 << x
    slot = 0
    for objects in (e.e_subs, e.e_fish):
        for j, o in enumerate(objects):
            col[[sq.ALIVE + slot, sq.ENEMY_X + slot, sq.ENEMY_Y + slot, sq.ENEMY_RIGHT + slot, sq.IS_SUB + slot,
                 sq.ENEMY_MOVE + slot, sq.SEQ + slot]] = 1, o[0], o[1], o[2], len(o) == 5, o[3], j + 1
            col[sq.ENEMY_FIRE + slot] = o[4] if len(o) == 5 else 0
            slot += 1
    col[sq.NEXT_SEQ] = slot + 1
    return col


def crowded(seed: int, ramping: bool):
    """A reference game in a random crowded state around the player: enemies stacked and about to
    move or fire, shots (the player's and the enemies') and divers next to them, timers near 0."""
    from minatar.environments.seaquest import Env
    from minatar_oracle import RecordingRandom

    rng = np.random.default_rng(seed)
    e = Env(ramping=ramping)
    e.random = RecordingRandom(seed)
    e.sub_x, e.sub_y = int(rng.integers(10)), int(rng.integers(9))
    e.sub_or = e.sub_x == 9 or (e.sub_x > 0 and bool(rng.integers(2)))  # the back cell stays inside the grid
    e.surface = e.sub_y == 0 and bool(rng.integers(2))
    e.oxygen = int(rng.choice([0, 1, 2, 19, 20, 120, 200]))
    e.diver_count = int(rng.integers(-2, 7))
    e.shot_timer, e.e_spawn_timer, e.d_spawn_timer = (int(v) for v in rng.integers(0, 3, size=3))
    e.e_spawn_speed, e.move_speed, e.ramp_index = int(rng.integers(1, 21)), int(rng.integers(2, 6)), int(
        rng.integers(0, 20))

    def near(lo, hi, spread=2):
        return int(np.clip(e.sub_x + rng.integers(-spread, spread + 1), lo, hi))

    def row():
        return int(np.clip(e.sub_y + rng.integers(-1, 2), 1, 8))

    heading = rng.integers(2, size=9).astype(bool)  # per row: all its enemies head the same way
    for _ in range(rng.integers(0, 7)):
        y = row()
        o = [near(0, 9), y, bool(heading[y]), int(rng.choice([0, 0, 1, e.move_speed]))]
        for _ in range(2 if rng.random() < 0.3 else 1):  # sometimes a twin on the same cell, with the same timer
            if rng.random() < 0.5:
                e.e_subs.append(list(o) + [int(rng.choice([0, 0, 1, 10]))])
            else:
                e.e_fish.append(list(o))
    for _ in range(rng.integers(0, 3)):
        e.f_bullets.append([near(0, 9), int(np.clip(e.sub_y + rng.integers(-1, 2), 0, 8)), bool(rng.integers(2))])
    if len(e.f_bullets) < 2 and rng.random() < 0.3:  # two submarines on one cell about to move onto a player shot:
        y, x = row(), near(1, 8)  # which one the shot takes shows when the other's shot timer (0 or 1) runs out
        fire = [0, 1] if rng.random() < 0.5 else [1, 0]
        e.e_subs += [[x, y, bool(heading[y]), 0, fire[0]], [x, y, bool(heading[y]), 0, fire[1]]]
        target = x + (1 if heading[y] else -1)
        shot_right = target == 9 or (target > 0 and bool(rng.integers(2)))
        e.f_bullets.append([target - 1 if shot_right else target + 1, y, shot_right])
    for _ in range(rng.integers(0, 4)):
        e.e_bullets.append([near(0, 9), row(), bool(rng.integers(2))])
    for _ in range(rng.integers(0, 3)):
        e.divers.append([near(0, 9), row(), bool(rng.integers(2)), int(rng.choice([0, 0, 1, 5]))])
    if len(e.f_bullets) == 2:  # the rules never fire a third shot or bring a third diver (see the game's
        e.shot_timer = 3  # bounds); the test steps these states three times
    if len(e.divers) == 2:
        e.d_spawn_timer = 3
    e.random.take()
    return e


def test_crowded_states_match_reference():
    """600 random crowded states, each stepped three times under each of the six actions (the same
    action each time) on both sides: rare encounters (a submarine shot as it moves still fires, stacked
    enemies and which of them a shot takes, two shots on one cell, surfacing with any diver count,
    oxygen at 0) come up often here. Each step compares the envs whose episode is still running."""
    from fastdqn.minatar.seaquest import Seaquest

    n_states, game, steps = 600, Seaquest(), 3
    encode_step = encoders(5)[1]
    refs = [crowded(seed, True) for seed in range(n_states) for _ in range(6)]
    actions = torch.arange(6, dtype=torch.int32).repeat(n_states)
    s = torch.from_numpy(np.stack([to_state(e) for e in refs], 1))
    running = np.ones(len(refs), dtype=bool)
    ended, scored = 0, 0.0
    for t in range(steps):
        results = [e.act(int(a)) for e, a in zip(refs, actions)]
        u = [torch.from_numpy(np.array(c, dtype=np.float64)) for c in zip(*(encode_step(e.random.take()) for e in refs))]
        s, reward, terminal = game.step(s, actions, u)
        frames = np.stack([np.transpose(e.state(), (2, 0, 1)) for e in refs]).astype(bool)
        bad = np.flatnonzero(running & (frames != game.observe(s).numpy()).reshape(len(refs), -1).any(1))
        assert bad.size == 0, f"step {t}: state {bad[0] // 6}, action {bad[0] % 6}"
        want_reward, want_terminal = np.array([r for r, _ in results], dtype=np.float32), np.array([d for _, d in results])
        np.testing.assert_array_equal(reward.numpy()[running], want_reward[running], err_msg=f"step {t}")
        np.testing.assert_array_equal(terminal.numpy()[running], want_terminal[running], err_msg=f"step {t}")
        ramps = np.array([e.ramp_index for e in refs])
        np.testing.assert_array_equal(game.difficulty(s).numpy()[running], ramps[running], err_msg=f"step {t}")
        ended, scored = ended + int(want_terminal[running].sum()), scored + float(want_reward[running].sum())
        running &= ~want_terminal
    assert 0.3 < ended / len(refs) < 0.9 and scored > n_states


def test_spawn_draws_follow_their_probabilities():
    """20k envs at the surface, both spawn timers set to 0 before each of two steps: the first
    enemies' sides, kinds and rows and the divers' sides and rows against their probabilities; the
    second enemy is dropped when it drew the first one's row from the other side (1/16) and shares
    its cell when it drew the same row and side (1/16); each count within 4 standard deviations."""
    from fastdqn.minatar.seaquest import ALIVE, DIVER_TIMER, SPAWN_TIMER

    n = 20_000
    env = fastdqn.make("MinAtar/Seaquest-v1", n, backend="torch", seed=0, sticky_action_prob=0.0)
    env.reset()

    def near(count, total, p):
        sd = (total * p * (1 - p)) ** 0.5
        assert abs(count - total * p) < 4 * sd, (count, total * p, sd)

    def forced_spawns():
        env._state[1 + SPAWN_TIMER] = 0  # row 0 is the previous action
        env._state[1 + DIVER_TIMER] = 0
        out = env.step(torch.zeros(n, dtype=torch.int64))
        assert not out.terminated.any() and not out.obs[:, [2, 3, 4]].any()  # no shots, nothing moved yet
        objects = out.obs[:, [5, 6, 9]]
        assert not objects[..., 1:9].any() and not objects[:, :, [0, 9]].any()  # edges of rows 1-8
        return out.obs, env._state[1 + ALIVE:1 + ALIVE + ENEMIES].sum(0)

    obs, alive = forced_spawns()
    subs, enemies, divers = obs[:, 6], obs[:, 5] | obs[:, 6], obs[:, 9]
    assert (alive == 1).all() and (enemies.sum((1, 2)) == 1).all() and (divers.sum((1, 2)) == 1).all()
    sub = subs.any((1, 2))
    for objects, kinds in ((enemies, ((sub, 1 / 3), (~sub, 2 / 3))), (divers, ((torch.ones_like(sub), 1.0),))):
        left = objects[..., 0].any(1)
        for side in (left, ~left):
            for kind, p in kinds:
                near(int((side & kind).sum()), n, p / 2)
        rows = objects.any(2).int().argmax(1)
        for r in range(1, 9):
            near(int((rows == r).sum()), n, 1 / 8)

    obs, alive = forced_spawns()
    cells = (obs[:, 5] | obs[:, 6]).sum((1, 2))
    assert ((alive == 1) | (alive == 2)).all()
    near(int((alive == 1).sum()), n, 1 / 16)  # dropped
    near(int(((alive == 2) & (cells == 1)).sum()), n, 1 / 16)  # stacked on the first
    near(int((obs[:, 9].sum((1, 2)) == 1).sum()), n, 1 / 16)  # divers are never dropped: same cell 1/16


def test_step_is_pure():
    from fastdqn.minatar.seaquest import Seaquest

    game, n = Seaquest(), 256
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
        assert s1.shape == (game.state_dim, n)
        s = s1


@pytest.mark.parametrize("version", ["v0", "v1"])
def test_spec_matches_reference_registration(version):
    check_spec(f"MinAtar/Seaquest-{version}")
