"""fastdqn.CartPole as an environment: episodes, truncation, autoreset, reset RNG, validation."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
import torch
from fastdqn.kernels.cartpole_numba import PARALLEL_MIN_ENVS
from fastdqn.kernels.rng import reset_uniforms_reference
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

import fastdqn

BACKENDS = ["torch", "numba"]
DTYPES = [torch.float32, torch.float64]
DTYPE_IDS = ["float32", "float64"]
NP_DTYPE = {torch.float32: np.float32, torch.float64: np.float64}
# The numba backend runs a serial kernel below PARALLEL_MIN_ENVS envs and a threaded one from
# there up; batch sizes on both sides exercise both.
SIZES = [8, PARALLEL_MIN_ENVS + 8]


def _reference_reset_row(key: int, round_: int, num_envs: int, i: int, dtype) -> np.ndarray:
    """Reset state of env ``i`` for draw ``round_``: -0.05 + 0.1 * u, rounded to ``dtype``."""
    u = reset_uniforms_reference(int(key), int(round_), int(num_envs), int(i))
    return np.array([-0.05 + 0.1 * v for v in u], dtype=np.float64).astype(NP_DTYPE[dtype])


def _assert_reset_obs(rows: torch.Tensor) -> None:
    rows = rows.double()
    assert torch.all(rows.abs() <= np.float32(0.05)), rows


# ----------------------------------------------------------------------------- 2. episodes
@pytest.mark.parametrize("backend", BACKENDS)
def test_episodes_match_gymnasium_float64(backend):
    """200 whole episodes in one batch, identical random actions, against 200 CartPoleEnv."""
    n = 200
    env = fastdqn.CartPole(n, backend=backend, dtype=torch.float64, max_episode_steps=500, seed=123)
    refs = []
    for i in range(n):
        ref = CartPoleEnv()
        ref.reset(seed=i)
        ref.state = env.state[i].numpy().copy()
        refs.append(ref)
    rng = np.random.default_rng(7)
    alive = np.ones(n, dtype=bool)
    length_ref = np.zeros(n, dtype=int)
    length_ours = np.zeros(n, dtype=int)
    worst = 0.0
    t = 0
    while alive.any():
        t += 1
        acts = rng.integers(0, 2, n)
        result = env.step(torch.tensor(acts))
        final = result.final_obs.numpy()
        for i in np.flatnonzero(alive):
            _, r, term, trunc, _ = refs[i].step(int(acts[i]))
            worst = max(worst, float(np.max(np.abs(final[i] - refs[i].state))))
            np.testing.assert_allclose(final[i], refs[i].state, rtol=0, atol=1e-9, err_msg=f"env {i} step {t}")
            assert result.reward[i].item() == r == 1.0
            assert bool(result.terminated[i]) == term, f"env {i} step {t}"
            assert not trunc and not bool(result.truncated[i])
            if term:
                length_ref[i] = t
            if bool(result.terminated[i]):
                length_ours[i] = t
        alive &= ~result.terminated.numpy()
        assert t < 500
    np.testing.assert_array_equal(length_ours, length_ref)
    assert length_ref.min() >= 8 and length_ref.max() > length_ref.min()
    assert worst < 1e-12, worst  # in practice the trajectories agree to a few ulp


# ----------------------------------------------------------------------------- 3. truncation
@pytest.mark.parametrize("max_steps", [500, 200])
@pytest.mark.parametrize("backend", BACKENDS)
def test_truncation_fires_at_limit(backend, max_steps, gym_single_reference):
    n = 6
    env = fastdqn.CartPole(n, backend=backend, dtype=torch.float64, max_episode_steps=max_steps, seed=5)
    assert env.max_episode_steps == max_steps
    start = np.zeros((n, 4))
    start[:, 2] = np.linspace(-0.01, 0.01, n)
    env.state = torch.tensor(start)
    env.elapsed_steps[:] = max_steps - 2
    acts = np.array([0, 1] * (n // 2))

    first = env.step(torch.tensor(acts))
    assert not first.truncated.any() and not first.terminated.any()
    assert torch.equal(first.obs, first.final_obs)
    assert torch.all(env.elapsed_steps == max_steps - 1)

    ref_next, ref_term, _ = gym_single_reference(first.final_obs.numpy(), 1 - acts)
    round_ = 2  # draw rounds: 0 = the constructor's reset, then one per step
    second = env.step(torch.tensor(1 - acts))
    assert second.truncated.all(), "truncated must fire on the step that reaches max_episode_steps"
    assert not second.terminated.any() and not ref_term.any()
    assert torch.all(second.reward == 1.0)
    np.testing.assert_allclose(second.final_obs.numpy(), ref_next, rtol=0, atol=1e-14)
    _assert_reset_obs(second.obs)
    assert not torch.equal(second.obs, second.final_obs)
    for i in range(n):
        np.testing.assert_array_equal(second.obs[i].numpy(), _reference_reset_row(env._key, round_, n, i, torch.float64))
    assert torch.all(env.elapsed_steps == 0)
    assert torch.equal(env.state, second.obs)


@pytest.mark.parametrize("max_steps", [500, 200])
@pytest.mark.parametrize("backend", BACKENDS)
def test_full_length_episodes_truncate(backend, max_steps, balance_policy):
    """A balancing controller keeps every pole up; each episode is truncated after exactly
    max_episode_steps steps (counted here, not read from the env), the next one too."""
    n = 32
    env = fastdqn.CartPole(n, backend=backend, dtype=torch.float32, max_episode_steps=max_steps, seed=3)
    obs = env.state.clone()
    for t in range(1, 2 * max_steps + 1):
        result = env.step(torch.tensor(balance_policy(obs.numpy())))
        assert not result.terminated.any(), f"pole fell at step {t}"
        if t % max_steps:
            assert not result.truncated.any(), f"truncated early at step {t}"
            assert torch.all(env.elapsed_steps == t % max_steps)
            assert torch.equal(result.obs, result.final_obs)
        else:
            assert result.truncated.all(), f"not truncated at step {t}"
            _assert_reset_obs(result.obs)
            assert torch.all(env.elapsed_steps == 0)
        obs = result.obs


@pytest.mark.parametrize("backend", BACKENDS)
def test_terminated_and_truncated_on_the_same_step(backend):
    """Both flags fire together when the last allowed step also ends the episode; Gymnasium's
    CartPoleVectorEnv (with its step counter set the same way) is the reference."""
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

    n = 4
    start = np.array([[2.39, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.2, 1.0], [0.1, 0.0, -0.01, 0.0]])
    acts = np.array([1, 0, 1, 0])
    ref = CartPoleVectorEnv(num_envs=n, max_episode_steps=200)
    ref.reset(seed=0)
    ref.state = start.T.copy()
    ref.steps[:] = [199, 199, 10, 10]
    _, ref_rew, ref_term, ref_trunc, _ = ref.step(acts)
    np.testing.assert_array_equal(ref_term, [True, False, True, False])
    np.testing.assert_array_equal(ref_trunc, [True, True, False, False])

    env = fastdqn.CartPole(n, backend=backend, dtype=torch.float64, max_episode_steps=200, seed=0)
    env.state = torch.tensor(start)
    env.elapsed_steps[:] = torch.tensor([199, 199, 10, 10], dtype=torch.int32)
    r = env.step(torch.tensor(acts))
    np.testing.assert_array_equal(r.terminated.numpy(), ref_term)
    np.testing.assert_array_equal(r.truncated.numpy(), ref_trunc)
    np.testing.assert_array_equal(r.reward.numpy(), ref_rew)
    np.testing.assert_allclose(r.final_obs.numpy(), ref.state.T, rtol=1e-12, atol=1e-12)
    _assert_reset_obs(r.obs[:3])
    np.testing.assert_array_equal(env.elapsed_steps.numpy(), [0, 0, 0, 11])



_HUGE = [2**31, 2**32 + 1, 2**40, 2**63]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("limit", _HUGE)
def test_huge_max_episode_steps_rejected(backend, limit):
    """The per-env step counter is int32: a larger limit must be refused up front, not wrap."""
    with pytest.raises(ValueError, match="max_episode_steps"):
        fastdqn.CartPole(4, backend=backend, max_episode_steps=limit, seed=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("limit", [2**31 - 1])
def test_huge_max_episode_steps_means_no_truncation(backend, limit):
    """The largest accepted limit (a common way to switch truncation off) never truncates."""
    env = fastdqn.CartPole(4, backend=backend, max_episode_steps=limit, seed=0)
    for t in range(1, 4):
        r = env.step(torch.zeros(4, dtype=torch.int64))
        assert not r.truncated.any()
        assert torch.all(env.elapsed_steps == t)


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_view_is_writable(backend, gym_single_reference):
    """Writing into ``env.state`` in place moves the envs (the documented writable view)."""
    env = fastdqn.CartPole(3, backend=backend, dtype=torch.float64, seed=0)
    env.state[1] = torch.tensor([1.0, -0.5, 0.1, 0.3], dtype=torch.float64)
    env.state[:, 3] += 0.25
    start = env.state.numpy().copy()
    assert start[1, 0] == 1.0 and start[1, 3] == 0.55
    ref_next, _, _ = gym_single_reference(start, np.array([1, 1, 1]))
    np.testing.assert_allclose(env.step(torch.ones(3, dtype=torch.int64)).final_obs.numpy(), ref_next, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- 4. same-step autoreset
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_same_step_autoreset(backend, dtype, n, gym_single_reference):
    start = np.zeros((n, 4))
    start[:, 2] = 0.01
    start[0] = [2.39, 2.0, 0.0, 0.0]  # x -> 2.43: terminates
    start[3] = [0.0, 0.0, -0.2, -1.0]  # theta -> -0.22: terminates
    start[5] = [-2.39, -2.0, 0.1, 0.0]  # x -> -2.43: terminates
    start[n - 1] = [0.0, 0.0, 0.2, 1.0]  # theta -> 0.22: terminates
    start = start.astype(NP_DTYPE[dtype]).astype(np.float64)
    acts = np.arange(n) % 2
    done = np.zeros(n, dtype=bool)
    done[[0, 3, 5, n - 1]] = True

    env = fastdqn.CartPole(n, backend=backend, dtype=dtype, seed=11)
    env.state = torch.tensor(start, dtype=dtype)
    env.elapsed_steps[:] = 7
    ref_next, ref_term, ref_reward = gym_single_reference(start, acts)
    np.testing.assert_array_equal(ref_term, done)

    round_ = 1  # draw rounds: 0 = the constructor's reset, then one per step
    result = env.step(torch.tensor(acts))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(result.final_obs.double().numpy(), ref_next, rtol=tol, atol=tol)
    np.testing.assert_array_equal(result.terminated.numpy(), done)
    assert not result.truncated.any()
    np.testing.assert_array_equal(result.reward.numpy(), ref_reward)
    assert torch.all(result.reward == 1.0)
    # finished envs: obs is the reset draw of this step, not the physics result
    _assert_reset_obs(result.obs[torch.tensor(done)])
    for i in np.flatnonzero(done):
        np.testing.assert_array_equal(result.obs[i].numpy(), _reference_reset_row(env._key, round_, n, i, dtype))
    # the others: obs is the physics result
    live = torch.tensor(~done)
    assert torch.equal(result.obs[live], result.final_obs[live])
    np.testing.assert_array_equal(env.elapsed_steps.numpy(), np.where(done, 0, 8))

    # The env continues from obs (reset rows included): the next step is physics from obs.
    obs = result.obs.double().numpy()
    ref2, _, _ = gym_single_reference(obs, acts)
    result2 = env.step(torch.tensor(acts))
    np.testing.assert_allclose(result2.final_obs.double().numpy(), ref2, rtol=tol, atol=tol)
    assert not result2.terminated[torch.tensor(done)].any()
    np.testing.assert_array_equal(env.elapsed_steps.numpy(), np.where(done, 1, 9))


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_outputs_are_not_aliased(backend):
    """Results returned by one step stay valid after the env moves on or is written to."""
    env = fastdqn.CartPole(16, backend=backend, seed=0)
    acts = torch.ones(16, dtype=torch.int64)
    r1 = env.step(acts)
    saved = (r1.obs.clone(), r1.final_obs.clone(), r1.terminated.clone())
    env.step(acts)
    env.state = torch.full((16, 4), 3.0)
    env.reset()
    assert torch.equal(r1.obs, saved[0]) and torch.equal(r1.final_obs, saved[1]) and torch.equal(r1.terminated, saved[2])


# ----------------------------------------------------------------------------- 5. reset range
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_reset_range_and_distribution(backend, dtype):
    n = 100_000
    env = fastdqn.CartPole(n, backend=backend, dtype=dtype, seed=2024)
    obs = env.reset()
    assert obs.shape == (n, 4) and obs.dtype == dtype
    assert torch.equal(env.state, obs)
    assert torch.all(env.elapsed_steps == 0)
    o = obs.double().numpy()
    if dtype == torch.float64:
        assert np.all(o >= -0.05) and np.all(o < 0.05)
    else:  # float32 rounding of a value just below 0.05 can give float32(0.05)
        assert np.all(o >= np.float32(-0.05)) and np.all(o <= np.float32(0.05))
    sd = 0.1 / math.sqrt(12)
    np.testing.assert_allclose(o.mean(axis=0), 0.0, atol=5 * sd / math.sqrt(n))
    np.testing.assert_allclose(o.std(axis=0), sd, rtol=0.01)
    # roughly uniform: 10 equal bins each hold 10% +- 5 sigma
    for col in range(4):
        counts, _ = np.histogram(o[:, col], bins=10, range=(-0.05, 0.05))
        assert np.all(np.abs(counts - n / 10) < 5 * math.sqrt(n * 0.1 * 0.9)), counts
    # components are not correlated with each other
    corr = np.corrcoef(o.T) - np.eye(4)
    assert np.abs(corr).max() < 0.02


# ----------------------------------------------------------------------------- 6. seeding
def _trajectory(backend, seed, n=64, steps=40, dtype=torch.float32):
    env = fastdqn.CartPole(n, backend=backend, dtype=dtype, seed=seed)
    rng = np.random.default_rng(99)
    out = [env.state.clone()]
    for _ in range(steps):
        r = env.step(torch.tensor(rng.integers(0, 2, n)))
        out += [r.obs, r.final_obs, r.terminated, r.truncated]
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_trajectory(backend):
    a = _trajectory(backend, 42)
    b = _trajectory(backend, 42)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert sum(int(t.sum()) for t in a[3::4]) > 10  # the trajectory includes autoresets
    c = _trajectory(backend, 43)
    assert not torch.equal(a[0], c[0])
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("backend", BACKENDS)
def test_reset_with_seed_restarts_stream(backend):
    env = fastdqn.CartPole(32, backend=backend, seed=8)
    first = env.state.clone()
    second = env.reset()
    assert not torch.equal(first, second), "reset() without a seed continues the stream"
    assert torch.equal(env.reset(seed=8), first)
    assert torch.equal(env.reset(), second)


def test_numba_independent_of_thread_count():
    old = numba.get_num_threads()
    try:
        runs = []
        for threads in (1, 2):
            numba.set_num_threads(threads)
            runs.append(_trajectory("numba", 5, n=20_000, steps=30))
    finally:
        numba.set_num_threads(old)
    assert all(torch.equal(x, y) for x, y in zip(*runs, strict=True))




def test_numba_serial_and_parallel_kernels_have_separate_cache_entries(tmp_path):
    """A small batch (serial kernel) compiled first must not make the large-batch kernel load the
    serial machine code from numba's disk cache (it would then never use more than one thread).
    Runs in a fresh interpreter with an empty NUMBA_CACHE_DIR."""
    code = textwrap.dedent(
        """
        import torch
        import fastdqn
        from fastdqn.kernels import cartpole_numba as k

        for n in (8, k.PARALLEL_MIN_ENVS):  # serial kernel first, then the threaded one
            fastdqn.CartPole(n, backend="numba", seed=0).step(torch.zeros(n, dtype=torch.int64))
        print(sum(k.step_serial.stats.cache_hits.values()), sum(k.step.stats.cache_hits.values()))
        """
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    serial_hits, parallel_hits = map(int, out.stdout.split())
    assert serial_hits == 0  # nothing was cached before it
    assert parallel_hits == 0, "the parallel kernel was loaded from the serial kernel's cache entry"


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_backends_share_reset_draws(dtype, n):
    t = fastdqn.CartPole(n, backend="torch", dtype=dtype, seed=77)
    m = fastdqn.CartPole(n, backend="numba", dtype=dtype, seed=77)
    assert torch.equal(t.state, m.state)
    assert torch.equal(t.reset(), m.reset())
    # autoreset draws agree too: put every env past the edge so each step resets all of them
    for _ in range(3):
        past = torch.zeros(n, 4, dtype=dtype)
        past[:, 0] = 3.0
        t.state = past
        m.state = past
        rt = t.step(torch.zeros(n, dtype=torch.int64))
        rm = m.step(torch.zeros(n, dtype=torch.int64))
        assert rt.terminated.all() and rm.terminated.all()
        assert torch.equal(rt.obs, rm.obs)


@pytest.mark.parametrize("n", [50, PARALLEL_MIN_ENVS + 50])
@pytest.mark.parametrize("seed", [1, 2, 2**40 + 3])  # key (splitmix64 of the seed) below / above 2**63
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_reset_matches_pure_python_rng(backend, dtype, seed, n):
    env = fastdqn.CartPole(n, backend=backend, dtype=dtype, seed=seed)
    key = env._key
    assert 0 <= key < 2**64
    rows = [0, 1, 17, n - 1]
    for i in rows:  # the constructor's reset is draw round 0
        np.testing.assert_array_equal(env.state[i].numpy(), _reference_reset_row(key, 0, n, i, dtype))
    obs = env.reset()  # round 1
    for i in rows:
        np.testing.assert_array_equal(obs[i].numpy(), _reference_reset_row(key, 1, n, i, dtype))
    env.step(torch.zeros(n, dtype=torch.int64))  # round 2: nobody finishes
    past = env.state.clone()
    past[:, 0] = -2.5
    env.state = past
    result = env.step(torch.zeros(n, dtype=torch.int64))  # round 3: everybody resets
    assert result.terminated.all()
    for i in rows:
        np.testing.assert_array_equal(result.obs[i].numpy(), _reference_reset_row(key, 3, n, i, dtype))


def test_unseeded_envs_differ():
    a, b = fastdqn.CartPole(16, seed=None), fastdqn.CartPole(16)
    assert not torch.equal(a.state, b.state)


# ----------------------------------------------------------------------------- types
@pytest.mark.parametrize("backend", BACKENDS)
def test_defaults_and_output_types(backend):
    env = fastdqn.CartPole(3, backend=backend, seed=0)
    assert env.dtype == torch.float32 and env.max_episode_steps == 500 and env.num_envs == 3
    assert env.state.shape == (3, 4) and env.state.dtype == torch.float32
    assert env.elapsed_steps.dtype == torch.int32 and torch.all(env.elapsed_steps == 0)
    r = env.step(torch.zeros(3, dtype=torch.int64))
    assert r._fields == ("obs", "reward", "terminated", "truncated", "final_obs")
    assert r.obs.shape == r.final_obs.shape == (3, 4) and r.obs.dtype == r.final_obs.dtype == torch.float32
    assert r.reward.shape == (3,) and r.reward.dtype == torch.float32
    assert r.terminated.dtype == r.truncated.dtype == torch.bool and r.terminated.shape == r.truncated.shape == (3,)
    assert fastdqn.CartPole(3, backend=backend, dtype="float64", seed=0).state.dtype == torch.float64


# ----------------------------------------------------------------------------- 7. bad input
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_envs=0), "num_envs"),
        (dict(num_envs=-1), "num_envs"),
        (dict(num_envs=2.5), "num_envs"),
        (dict(num_envs=4, backend="jax"), "backend"),
        (dict(num_envs=4, backend="numba", device="cuda"), "numba.*CPU"),
        (dict(num_envs=4, dtype="float16"), "dtype"),
        (dict(num_envs=4, dtype=torch.float16), "dtype"),
        (dict(num_envs=4, max_episode_steps=0), "max_episode_steps"),
        (dict(num_envs=4, max_episode_steps=-5), "max_episode_steps"),
        (dict(num_envs=4, seed=-1), "seed"),
        (dict(num_envs=4, device="not-a-device"), "device"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fastdqn.CartPole(**kwargs)


def _bad_actions(n):
    return [
        (torch.zeros(n + 1, dtype=torch.int64), ValueError, "shape"),
        (torch.zeros(n, 1, dtype=torch.int64), ValueError, "shape"),
        (torch.zeros((), dtype=torch.int64), ValueError, "shape"),
        (torch.tensor([0, 1, 2, 0][:n]), ValueError, "0 or 1.*2"),
        (torch.tensor([0, -1, 1, 0][:n]), ValueError, "0 or 1.*-1"),
        (torch.tensor([0, 1, 1, 7], dtype=torch.int32), ValueError, "0 or 1.*7"),
        (torch.zeros(n, dtype=torch.float32), ValueError, "integer or bool.*float32"),
        (torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64), ValueError, "integer or bool.*float64"),
        (np.zeros(n, dtype=np.int64), TypeError, "torch.Tensor"),
        ([0, 1, 0, 1], TypeError, "torch.Tensor"),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_rejects_bad_actions_and_leaves_state_alone(backend):
    n = 4
    env = fastdqn.CartPole(n, backend=backend, seed=1)
    twin = fastdqn.CartPole(n, backend=backend, seed=1)
    env.step(torch.tensor([0, 1, 0, 1]))
    twin.step(torch.tensor([0, 1, 0, 1]))
    state, elapsed = env.state.clone(), env.elapsed_steps.clone()
    for bad, exc, match in _bad_actions(n):
        with pytest.raises(exc, match=match):
            env.step(bad)
        assert torch.equal(env.state, state) and torch.equal(env.elapsed_steps, elapsed)
    # nothing else moved either (e.g. the reset RNG): the env continues exactly like its twin,
    # including the reset draws of envs that finish
    past = env.state.clone()
    past[:2, 2] = 0.5
    env.state = past
    twin.state = past
    a, b = env.step(torch.tensor([1, 1, 0, 0])), twin.step(torch.tensor([1, 1, 0, 0]))
    assert a.terminated[:2].all()
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("backend", BACKENDS)
def test_bool_and_int32_actions_accepted(backend, gym_single_reference):
    n = 4
    start = np.array([[0.0, 0.1, 0.02, -0.1]] * n)
    ref_next, _, _ = gym_single_reference(start, np.array([0, 1, 1, 0]))
    for acts in (torch.tensor([False, True, True, False]), torch.tensor([0, 1, 1, 0], dtype=torch.int32)):
        env = fastdqn.CartPole(n, backend=backend, dtype=torch.float64, seed=0)
        env.state = torch.tensor(start)
        np.testing.assert_allclose(env.step(acts).final_obs.numpy(), ref_next, rtol=0, atol=1e-14)


def test_state_setter_rejects_wrong_shape():
    env = fastdqn.CartPole(4, seed=0)
    before = env.state.clone()
    for bad in (torch.zeros(3, 4), torch.zeros(4, 3), torch.zeros(4), torch.zeros(4, 4, 1)):
        with pytest.raises(ValueError, match="shape"):
            env.state = bad
        assert torch.equal(env.state, before)


def test_dense_and_sparse_reset_paths_agree():
    """torch_step's sync-free path (a draw for every env, selected with where: used on GPUs and
    under torch.compile) and its CPU-eager path (draws only for finished envs) are the same
    function of (state, actions, key, round)."""
    from fastdqn.kernels.rng import as_signed

    from fastdqn.cartpole import torch_step

    n = 512
    env = fastdqn.CartPole(n, backend="torch", dtype=torch.float64, seed=11)
    g = torch.Generator().manual_seed(1)
    key = torch.tensor(as_signed(env.state_dict()["keys"][0]))  # uint64 bits in an int64
    index = torch.arange(n)
    state, elapsed = env.state.clone(), env.elapsed_steps.clone()
    finished = 0
    for t in range(60):
        actions = torch.randint(0, 2, (n,), generator=g)
        round_ = torch.tensor(t + 1)
        dense, el_dense = torch_step(state, elapsed, actions, 500, key, round_, index, sparse_resets=False)
        sparse, el_sparse = torch_step(state, elapsed, actions, 500, key, round_, index, sparse_resets=True)
        for a, b in zip(dense, sparse):
            assert torch.equal(a, b)
        assert torch.equal(el_dense, el_sparse)
        finished += int((dense.terminated | dense.truncated).sum())
        state, elapsed = dense.obs, el_dense
    assert finished > n  # plenty of resets went through both paths


@pytest.mark.slow
def test_compiled_torch_backend_matches_eager():
    """CartPole(compile=True) (the torch.compile'd step) against the eager torch backend, resynced
    every step: same reset draws exactly, physics within float32 rounding, same flags."""
    n = 256
    eager = fastdqn.CartPole(n, backend="torch", seed=5)
    compiled = fastdqn.CartPole(n, backend="torch", seed=5, compile=True)
    g = torch.Generator().manual_seed(2)
    resets = 0
    for _ in range(40):
        actions = torch.randint(0, 2, (n,), generator=g)
        a, b = eager.step(actions), compiled.step(actions)
        torch.testing.assert_close(b.final_obs, a.final_obs, rtol=1e-6, atol=1e-6)
        assert torch.equal(a.terminated, b.terminated) and torch.equal(a.truncated, b.truncated)
        done = a.terminated | a.truncated
        assert torch.equal(a.obs[done], b.obs[done])  # reset draws: integer hashing, exact
        resets += int(done.sum())
        compiled.state = eager.state
    assert resets > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        fastdqn.CartPole(4, backend="torch", device="cuda")


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_seed_groups_reset_like_their_own_single_seed_env(backend):
    """CartPole(G*n, seed=[s0..sG-1]): group g steps and resets exactly as CartPole(n, seed=s_g),
    checked against separate single-seed envs driven with the same actions (episodes end often
    under random actions, so many resets are compared)."""
    seeds, n = [3, 11, 4], 6
    grouped = fastdqn.CartPole(len(seeds) * n, backend=backend, seed=seeds)
    singles = [fastdqn.CartPole(n, backend=backend, seed=s) for s in seeds]
    torch.testing.assert_close(grouped.state, torch.cat([e.state for e in singles]), rtol=0, atol=0)
    gen = torch.Generator().manual_seed(0)
    resets = 0
    for _ in range(120):
        actions = torch.randint(0, 2, (len(seeds) * n,), generator=gen)
        res = grouped.step(actions)
        for g, env in enumerate(singles):
            ref = env.step(actions[g * n:(g + 1) * n])
            rows = slice(g * n, (g + 1) * n)
            assert torch.equal(res.obs[rows], ref.obs) and torch.equal(res.final_obs[rows], ref.final_obs)
            assert torch.equal(res.terminated[rows], ref.terminated) and torch.equal(res.truncated[rows], ref.truncated)
            resets += int(ref.terminated.sum())
    assert resets > 20


def test_seed_groups_must_divide_num_envs():
    with pytest.raises(ValueError, match="multiple of the number of seeds"):
        fastdqn.CartPole(10, seed=[1, 2, 3])
