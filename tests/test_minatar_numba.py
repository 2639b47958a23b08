"""The numba MinAtar kernels (kernels/minatar_numba.py) against the torch games, step for step:
the same seed gives exactly the same observations, final observations, rewards, flags, states and
step counters after every step, and the same rollout sums, over long random-action runs with
resets and truncations, for every game that has kernels, with the threaded and the serial kernels.
The torch games are themselves checked against the reference package (tests/test_minatar_*.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastdqn
from fastdqn import envs
from fastdqn.minatar import NUMBA_GAMES

pytest.importorskip("numba")

GAMES = list(envs.MINATAR_NUMBA)

# (version, sticky, seeds, envs, steps, max_episode_steps, threaded kernels)
BLOCK = 50
RUNS = [  # (version, sticky, seeds, envs, steps, max_episode_steps, difficulty ramping, threaded kernels)
    ("v1", 0.1, [3, 4], 256, 1200, 50, True, False),  # two seed groups, truncation at 50 steps
    ("v0", 0.0, 7, 256, 800, None, False, False),  # all six actions, no sticky actions nor ramping
    # the threaded kernels (the same code compiled with prange): three chunks, the last one partial,
    # four seed groups
    ("v1", 0.1, [1, 2, 3, 4], 600, 200, 30, True, True),
]


def _scramble(game, s, gen):
    """Start states off the beaten track (then the runs go on from resets): what random play
    rarely reaches -- a wall nearly cleared, a ramp due, the end of Freeway's clock."""
    n = s.shape[1]

    def rand(lo, hi):
        return torch.randint(lo, hi + 1, (n,), generator=gen, dtype=torch.int32)

    def thin(rows, keep):  # cells of a grid kept with probability ``keep``
        s[rows] &= (torch.rand(s[rows].shape, generator=gen) < keep).int()

    if game == "Breakout":  # a few bricks left: the wall is cleared and refilled
        thin(slice(8, 108), 0.05)
    elif game == "Asterix":  # ramps soon, at any stage
        s[3], s[5], s[7], s[8] = rand(1, 10), rand(1, 5), rand(-1, 10), rand(0, 12)
        s[4], s[6] = rand(0, 3), rand(0, 3)
    elif game == "Freeway":  # the clock runs out within the run (or has: -1), cars of any speed, 0 too
        s[3] = rand(-1, 300)
        for c in range(8):
            s[20 + c] = rand(-5, 5)
            s[12 + c] = torch.minimum(rand(0, 5), s[20 + c].abs())
    elif game == "SpaceInvaders":  # a few aliens left anywhere, at any ramp, heading either way
        thin(slice(7, 107), 0.08)
        s[2], s[3], s[4], s[6] = rand(0, 1) * 2 - 1, rand(0, 5), rand(0, 9), rand(0, 6)
    elif game == "Seaquest":  # anywhere, low on oxygen, divers aboard (six: the surfacing bonus), crowded
        s[1], s[2], s[3] = rand(0, 9), rand(0, 8), rand(0, 1)  # column, row, facing
        s[4], s[5], s[6] = rand(1, 200), rand(0, 6), rand(0, 1)  # oxygen, divers, surfaced
        s[8], s[11], s[12] = rand(1, 20), rand(2, 5), rand(0, 12)  # spawn and move intervals, ramp index
        s[9] = torch.minimum(rand(0, 20), s[8])  # spawn timer


@pytest.fixture(autouse=True)
def one_thread():
    """The torch reference on one thread: small batched ops only lose to a thread pool."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pair(game, version, sticky, seeds, n, horizon, ramping, threaded):
    kw = dict(seed=seeds, sticky_action_prob=sticky, max_episode_steps=horizon, difficulty_ramping=ramping)
    ref = fastdqn.make(f"MinAtar/{game}-{version}", n, backend="torch", **kw)
    env = fastdqn.make(f"MinAtar/{game}-{version}", n, backend="numba", **kw)
    env._parallel = threaded  # pin the kernel (the size threshold is measured per machine)
    return ref, env


def _same_state(ref, env, where):
    assert torch.equal(ref._state, env._state), f"state differs {where}"
    assert torch.equal(ref._elapsed, env._elapsed), f"elapsed differs {where}"
    assert torch.equal(ref._round, env._round), f"round differs {where}"


@pytest.mark.parametrize("version, sticky, seeds, n, steps, horizon, ramping, threaded", RUNS)
@pytest.mark.parametrize("game", GAMES)
def test_numba_steps_equal_torch(game, version, sticky, seeds, n, steps, horizon, ramping, threaded):
    ref, env = _pair(game, version, sticky, seeds, n, horizon, ramping, threaded)
    _same_state(ref, env, "after reset")
    gen = torch.Generator().manual_seed(11)
    _scramble(game, ref._state, gen)
    env._state.copy_(ref._state)
    out = env.new_outputs()
    assert out.obs.is_contiguous() and out.final_obs.is_contiguous()
    ended = truncated = 0
    reward = 0.0
    # in blocks of steps: a block on numba, then on torch. Numba's threaded kernels (OpenMP layer)
    # set the process's OpenMP thread count, which torch's intra-op pool shares: torch goes back to
    # one thread after each numba block (tiny ops on a 2-thread pool of a loaded machine: 25x slower)
    for first in range(0, steps, BLOCK):
        block = [torch.randint(0, ref.n_actions, (n,), generator=gen) for _ in range(min(BLOCK, steps - first))]
        got = []
        for t, actions in enumerate(block):
            res = env.step(actions, out=out if t % 2 else None)  # new outputs and the caller's outputs
            got.append(([x.clone() for x in res], env._state.clone(), env._elapsed.clone()))
        torch.set_num_threads(1)
        for t, actions in enumerate(block):
            want = ref.step(actions)
            res, state, elapsed = got[t]
            for name, w, g in zip(want._fields, want, res, strict=True):
                assert w.dtype == g.dtype and w.shape == g.shape, f"{name} at step {first + t}"
                if not torch.equal(w, g):
                    bad = (w != g).reshape(n, -1).any(1).nonzero()[:, 0].tolist()
                    pytest.fail(f"{game}-{version}: {name} differs at step {first + t} in envs {bad[:8]}")
            assert torch.equal(ref._state, state), f"state differs after step {first + t}"
            assert torch.equal(ref._elapsed, elapsed), f"elapsed differs after step {first + t}"
            ended += int((want.terminated | want.truncated).sum())
            truncated += int(want.truncated.sum())
            reward += float(want.reward.sum())
        _same_state(ref, env, f"after step {first + len(block) - 1}")
    assert ended >= n  # the run covers resets
    assert reward > 0 or (game == "Freeway" and horizon < 100)  # and scoring (a chicken needs 27+ steps)
    if horizon is not None:
        assert truncated > 0
    # rollouts from where the steps left the envs: drawn actions, then given ones
    for actions in ("random", torch.randint(0, ref.n_actions, (150, n), generator=gen)):
        got = env.rollout(150, actions=actions, seed=5)
        torch.set_num_threads(1)
        want = ref.rollout(150, actions=actions, seed=5)
        assert torch.equal(want.reward, got.reward) and torch.equal(want.episodes, got.episodes)
        _same_state(ref, env, "after a rollout")


@pytest.mark.parametrize("game", GAMES)
def test_numba_is_the_cpu_default(game):
    env = fastdqn.make(f"MinAtar/{game}-v1", 8, seed=0)
    assert env.backend == "numba"
    obs = env.reset()
    assert obs.dtype == torch.bool and obs.shape == (8, *env.spec.obs_shape)
    out = env.step(torch.zeros(8, dtype=torch.int64))
    assert out.obs.shape == (8, *env.spec.obs_shape) and out.obs.is_contiguous()


def test_kernel_lists_agree():
    module = {name: mod for name, (mod, *_rest) in envs.MINATAR_GAMES.items()}
    assert sorted(module[g] for g in envs.MINATAR_NUMBA) == sorted(NUMBA_GAMES)
    for g in envs.MINATAR_GAMES:
        assert ("numba" in envs.spec(f"MinAtar/{g}-v1").backends) == (g in envs.MINATAR_NUMBA)


def test_rollout_reward_sums_are_float32_counts():
    env = fastdqn.make(f"MinAtar/{GAMES[0]}-v1", 64, backend="numba", seed=1)
    res = env.rollout(500)
    assert res.reward.dtype == torch.float32 and res.episodes.dtype == torch.int64
    assert np.all(res.reward.numpy() == np.round(res.reward.numpy()))
