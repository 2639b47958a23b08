"""MinAtar SpaceInvaders against the reference package, step for step (see tests/minatar_oracle.py)."""

import numpy as np
import pytest
import torch

import fastdqn
from fastdqn.minatar import cells
from fastdqn.minatar.space_invaders import (
    ALIEN_SHOTS,
    ALIENS,
    COOL_DOWN,
    FIRE_TIMER,
    HEADING,
    INTERVAL,
    MOVE_TIMER,
    POS,
    RAMP,
    SHOTS,
    SpaceInvaders,
)

pytest.importorskip("minatar")
from minatar_oracle import check_spec, run  # noqa: E402

FULL = torch.tensor([0, 1, 3, 5])  # the -v1 actions n, l, r, f in the full set


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # these batches are small: on a loaded machine torch's thread pool costs far more than it saves
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def encode_reset(calls):
    assert calls == []  # the start is fixed; our one reset uniform is not used
    return [0.5]


def encode_step(calls):
    assert calls == []  # SpaceInvaders draws nothing during a step
    return []


@pytest.mark.parametrize("env_id, sticky, n, steps", [
    ("MinAtar/SpaceInvaders-v1", 0.0, 128, 800),  # >= 100k steps with sticky actions off and on
    ("MinAtar/SpaceInvaders-v1", 0.1, 128, 800),
    ("MinAtar/SpaceInvaders-v0", 0.1, 64, 400),  # all six actions
])
def test_space_invaders_matches_reference(env_id, sticky, n, steps):
    counts = run(env_id, "space_invaders", encode_reset, encode_step, n=n, steps=steps, sticky=sticky, seed=1)
    assert counts["episodes"] > n and counts["reward"] > n  # the trajectories cover resets and scoring
    if sticky:
        assert 0.08 < counts["sticky"] / counts["steps"] < 0.12


def policy(s):
    """A -v1 policy (n, l, r, f = 0..3) for game states ``s``: it runs the aliens' moves ahead to fire
    only shots that will hit, walks towards the aliens and steps out of harm's way."""
    pos, col = s[POS], torch.arange(10)[:, None]
    here = col == pos
    aliens, timer, heading = cells(s, ALIENS), s[MOVE_TIMER], s[HEADING]
    gap = torch.minimum(aliens.sum((0, 1)), INTERVAL - s[RAMP])
    lands, future = torch.zeros_like(here[0]), aliens
    for j in range(9):  # after j more steps the aliens are at `future` and a shot fired now is on row 8 - j
        moves = timer == 0
        turn = moves & (torch.where(heading < 0, future[:, 0].sum(0), future[:, 9].sum(0)) > 0)
        side = torch.where(heading < 0, future.roll(-1, 1), future.roll(1, 1))
        future = torch.where(turn, future.roll(1, 0), torch.where(moves, side, future))
        heading, timer = torch.where(turn, -heading, heading), torch.where(moves, gap, timer) - 1
        lands |= (future[8 - j] * here).sum(0) > 0
        if j == 0:
            deadly = (cells(s, ALIEN_SHOTS)[8] | future[9]) > 0  # [10, N]: where the cannon dies this step
        if j == 4:
            target = torch.where(future.sum(0) > 0, (col - pos).abs(), 100).argmin(0)
    want = torch.where(lands & (s[COOL_DOWN] == 0), 3,
                       torch.where(target < pos, 1, torch.where(target > pos, 2, 0)))

    def unsafe(p):
        return (p < 0) | (p > 9) | deadly.gather(0, p.clamp(0, 9).long()[None])[0]

    moved = pos + torch.where(want == 1, -1, torch.where(want == 2, 1, 0))
    dodge = torch.where(~unsafe(pos), 0, torch.where(~unsafe(pos - 1), 1, 2))
    return torch.where(unsafe(moved), dodge, want)


class Shadow:
    """Actions for the oracle from a copy of the game: without sticky actions the game is deterministic, so
    a copy stepped with the same actions (and reset on the same ends) is the state the oracle steps. Each
    env plays ``policy`` but takes a random action with its own probability ``eps``."""

    def __init__(self, eps, ramping=True):
        self.game, self.eps = SpaceInvaders(ramping), torch.as_tensor(eps)
        n = len(self.eps)
        self.fresh = self.game.reset_state([torch.zeros(n, dtype=torch.float64)], None)
        self.s = self.fresh.clone()
        self.max_ramp = torch.zeros(n, dtype=torch.int32)
        self.waves = torch.zeros(n, dtype=torch.int32)  # waves cleared
        self.waves_at_top = 0  # waves cleared at the ramp's end (no further ramp)
        self.speedups = 0  # alien moves sooner than the interval (few aliens left)
        self.episodes = 0

    def __call__(self, t, rng):
        n = len(self.eps)
        explore = torch.from_numpy(rng.random(n)) < self.eps
        a = torch.where(explore, torch.from_numpy(rng.integers(4, size=n)), policy(self.s))
        s = self.s
        self.speedups += int(((s[MOVE_TIMER] == 0) & (cells(s, ALIENS).sum((0, 1)) < INTERVAL - s[RAMP])).sum())
        s2, reward, terminal = self.game.step(s, FULL[a].int(), [])
        cleared = (reward > 0) & (cells(s2, ALIENS).sum((0, 1)) == 24) & (cells(s, ALIENS).sum((0, 1)) <= reward)
        self.waves += cleared.int()
        self.waves_at_top += int((cleared & (s[RAMP] == 6)).sum())
        self.max_ramp = torch.maximum(self.max_ramp, s2[RAMP])
        self.episodes += int(terminal.sum())
        self.s = torch.where(terminal, self.fresh, s2)
        return a.numpy()


def test_waves_ramp_to_the_top():
    """A policy that clears waves ramps the difficulty to its end (and past it: cleared waves stop ramping)."""
    shadow = Shadow(np.linspace(0.0, 0.03, 16))
    counts = run("MinAtar/SpaceInvaders-v1", "space_invaders", encode_reset, encode_step, n=16, steps=1100,
                 sticky=0.0, seed=2, actions=shadow)
    assert counts["reward"] > 16 * 150
    assert (shadow.max_ramp == 6).sum() >= 8 and (shadow.max_ramp >= 1).all()
    assert shadow.waves_at_top > 0 and shadow.speedups > 1000 and shadow.episodes > 0


def test_no_ramping():
    shadow = Shadow(np.linspace(0.0, 0.04, 16), ramping=False)
    counts = run("MinAtar/SpaceInvaders-v1", "space_invaders", encode_reset, encode_step, n=16, steps=300,
                 sticky=0.0, seed=3, ramping=False, actions=shadow)
    assert counts["reward"] > 16 * 24
    assert (shadow.waves >= 1).sum() >= 8 and (shadow.max_ramp == 0).all()


def random_states(k, ramping, rng):
    """``k`` game states [S, k] drawn at random (any alien, shot and timer layout, at least one alien),
    many with timers at zero and with few aliens, so that moves, turns, landings and cleared waves are common."""
    s = torch.zeros(SpaceInvaders.state_dim, k, dtype=torch.int32)

    def timer(top, p_zero=0.5):
        return np.where(rng.random(k) < p_zero, 0, rng.integers(1, top + 1, size=k))

    ramp = rng.integers(0, 7, size=k) if ramping else np.zeros(k, dtype=int)
    s[POS] = torch.from_numpy(rng.integers(10, size=k))
    s[HEADING] = torch.from_numpy(rng.choice([-1, 1], size=k))
    s[MOVE_TIMER] = torch.from_numpy(timer(12))
    s[FIRE_TIMER] = torch.from_numpy(timer(10))
    s[COOL_DOWN] = torch.from_numpy(timer(5))
    s[RAMP] = torch.from_numpy(ramp)
    density = rng.choice([0.01, 0.05, 0.2, 0.5], size=k)
    aliens = rng.random((10, 10, k)) < density
    aliens[rng.integers(10, size=k), rng.integers(10, size=k), np.arange(k)] = True  # never an empty wave
    shots = rng.random((10, 10, k)) < rng.choice([0.0, 0.05, 0.3], size=k)
    below = np.roll(aliens, 1, axis=0)  # a shot right under every alien: it strikes this step if the alien stays
    below[0] = False
    shots |= below & (rng.random(k) < 0.3)
    alien_shots = rng.random((10, 10, k)) < rng.choice([0.0, 0.05, 0.3], size=k)
    for first, grid in ((ALIENS, aliens), (SHOTS, shots), (ALIEN_SHOTS, alien_shots)):
        s[first:first + 100] = torch.from_numpy(grid.reshape(100, k).astype(np.int32))
    return s


def reference_env(env, s, i):
    """Put state column ``i`` into the reference game ``env``."""
    grid = lambda first: cells(s, first)[:, :, i].numpy().astype(float)  # noqa: E731
    env.pos, env.alien_dir = int(s[POS, i]), int(s[HEADING, i])
    env.alien_move_timer, env.alien_shot_timer, env.shot_timer = (int(s[r, i]) for r in (MOVE_TIMER, FIRE_TIMER,
                                                                                          COOL_DOWN))
    env.ramp_index = int(s[RAMP, i])
    env.enemy_move_interval = INTERVAL - env.ramp_index
    env.alien_map, env.f_bullet_map, env.e_bullet_map = grid(ALIENS), grid(SHOTS), grid(ALIEN_SHOTS)
    env.terminal = False


@pytest.mark.parametrize("ramping", [True, False])
def test_random_states_step_like_the_reference(ramping):
    """One step from 800 random states under each of the six actions, against the reference game set to the
    same state: observations, rewards, ends and every counter of the state must be equal."""
    from minatar.environments.space_invaders import Env

    rng = np.random.default_rng(4 + ramping)
    k = 800
    s = random_states(k, ramping, rng).repeat_interleave(6, 1)
    a = torch.arange(6, dtype=torch.int32).repeat(k)
    game, env = SpaceInvaders(ramping), Env(ramping=ramping)
    before = s.clone()
    s2, reward, terminal = game.step(s, a, [])
    assert torch.equal(s, before)  # the step returns a new state
    frames, ramp = game.observe(s2).numpy(), game.difficulty(s2).numpy()
    rows = (POS, HEADING, MOVE_TIMER, FIRE_TIMER, COOL_DOWN, RAMP)
    want = {"reward": [], "terminal": [], "frame": [], "rows": []}
    for i in range(6 * k):
        reference_env(env, s, i)
        r, done = env.act(int(a[i]))
        want["reward"].append(r)
        want["terminal"].append(done)
        want["frame"].append(np.transpose(env.state(), (2, 0, 1)))
        want["rows"].append([env.pos, env.alien_dir, env.alien_move_timer, env.alien_shot_timer, env.shot_timer,
                             env.ramp_index])
        assert env.enemy_move_interval == (INTERVAL - env.ramp_index if ramping else INTERVAL)
    np.testing.assert_array_equal(reward.numpy(), np.array(want["reward"], dtype=np.float32))
    np.testing.assert_array_equal(terminal.numpy(), np.array(want["terminal"]))
    for i in np.flatnonzero((frames != np.stack(want["frame"])).reshape(6 * k, -1).any(1))[:1]:
        np.testing.assert_array_equal(frames[i], want["frame"][i], err_msg=f"state {i // 6}, action {i % 6}")
    np.testing.assert_array_equal(s2[list(rows)].T.numpy(), np.array(want["rows"]))
    np.testing.assert_array_equal(ramp, np.array(want["rows"])[:, -1])
    # the draw covers the rare events: landings, cleared waves, alien shots, hits and the cannon's deaths
    turned = (s[MOVE_TIMER] == 0) & (s2[HEADING] != s[HEADING])
    assert (turned & terminal & (cells(s, ALIENS)[9].sum(0) > 0)).sum() > 200  # landings
    cleared = (reward > 0) & (reward == cells(s, ALIENS).sum((0, 1)))
    assert cleared.sum() > 50 and terminal.sum() > 500 and reward.sum() > 500
    if ramping:
        assert (s2[RAMP] > s[RAMP]).sum() > 20 and (cleared & (s[RAMP] == 6)).sum() > 5  # and the ramp's end


def test_start_is_fixed():
    """The game has no random events: every env starts alike, the reference's start, whatever its uniforms."""
    from minatar.environments.space_invaders import Env

    env = fastdqn.make("MinAtar/SpaceInvaders-v1", 4096, backend="torch", seed=0)
    obs = env.reset()
    want = torch.from_numpy(np.transpose(Env().state(), (2, 0, 1)).copy())
    assert (obs == want).all()
    assert (env.dyn.difficulty(env._state) == 0).all()


@pytest.mark.parametrize("version", ["v0", "v1"])
def test_spec_matches_reference_registration(version):
    check_spec(f"MinAtar/SpaceInvaders-{version}")  # the channel order and the minimal action set too
