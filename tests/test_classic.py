"""Acrobot-v1 and MountainCar-v0 (:mod:`fastdqn.classic` run by :class:`fastdqn.vector.VectorEnv`,
backends numba and torch) against Gymnasium's own ``AcrobotEnv``/``MountainCarEnv``.

References: Gymnasium's single envs (``gym.make(id).unwrapped``, ``.state`` set, ``step`` called),
the pure-Python SplitMix64 of :mod:`fastdqn.kernels.rng`, and a second env of ours stepped another
way (step loop vs rollout, one backend vs the other, seed groups vs single seeds).

Measured here (Gymnasium 1.4, glibc 2.36, torch 2.13 CPU): the numba float64 step equals
Gymnasium bit for bit (states, flags, rewards, observations), along whole trajectories too. The
torch float64 step differs in the last places on ~1.5% of the Acrobot rows here (torch's vectorised
sin/cos differ from libm by an ulp on ~0.2% of inputs, and it squares with ``x * x`` where
Gymnasium's NumPy scalars call ``pow(x, 2.0)``, which glibc rounds differently for ~0.1% of inputs),
by at most ~5e-14; on MountainCar on ~0.03% of rows, by ~1e-18. float32 follows float64 to
~1e-5 (Acrobot's velocities to ~2e-6 times their squared scale: the terms of the dynamics grow
with the squared angular velocities, up to ~800).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from fastdqn.kernels import rng

from fastdqn import envs
from fastdqn.vector import rollout_actions

IDS = ["Acrobot-v1", "MountainCar-v0"]
BACKENDS = ["numba", "torch"]
DTYPES = {"float32": torch.float32, "float64": torch.float64}
PARALLEL_N = 4104  # above the threaded kernels' switch (conftest pins it to 4096), not a multiple of the chunk
F32_ROUND = lambda x: np.asarray(x, dtype=np.float32).astype(np.float64)  # noqa: E731


def make(env_id, n, backend, dtype=torch.float64, seed=0, **kw):
    return envs.make(env_id, n, backend=backend, seed=seed, dtype=dtype, **kw)


# ------------------------------------------------------------------------------ test states
def _acrobot_states(seed=0):
    """[wide | at the velocity bounds | near termination] float64 states and the block names.

    wide: angles uniform in [-pi, pi], velocities uniform within the bounds. bounds: the same with
    velocities at +-4pi / +-9pi and angles at +-pi (wrap and clamp at their edges). near: states
    whose post-step height ``-cos t1 - cos(t1 + t2)`` lies within 1e-2 of the goal (1.0), picked
    from a pool by one float64 step of ours per action (the picking only; Gymnasium judges them)."""
    g = np.random.default_rng(seed)

    def uniform(m):
        return np.column_stack([g.uniform(-np.pi, np.pi, m), g.uniform(-np.pi, np.pi, m),
                                g.uniform(-4 * np.pi, 4 * np.pi, m), g.uniform(-9 * np.pi, 9 * np.pi, m)])

    wide = uniform(1500)
    bounds = uniform(150)
    bounds[:, 2] = g.choice([-4 * np.pi, 4 * np.pi], 150)
    bounds[:, 3] = g.choice([-9 * np.pi, 9 * np.pi], 150)
    bounds[:50, 0] = g.choice([-np.pi, np.pi], 50)
    bounds[50:100, 1] = g.choice([-np.pi, np.pi], 50)
    pool = uniform(50_000)
    pool[:, 2:] *= 0.3
    near = []
    for a in range(3):
        env = make("Acrobot-v1", len(pool), "numba")
        env.state = torch.tensor(pool)
        o = env.step(torch.full((len(pool),), a)).final_obs.numpy()
        height = -o[:, 0] - (o[:, 0] * o[:, 2] - o[:, 1] * o[:, 3])
        near.append(pool[np.flatnonzero(np.abs(height - 1.0) < 1e-2)[:200]])
    near = np.concatenate(near)
    assert len(near) == 600
    return np.concatenate([wide, bounds, near]), {"wide": slice(0, 1500), "bounds": slice(1500, 1650),
                                                  "near": slice(1650, 2250)}


def _mountaincar_states(seed=0):
    """[wide | at/near the left wall | near the goal | at the edges] float64 states.

    wide: positions in [-1.2, 0.6], velocities in [-0.07, 0.07]. wall: position -1.2 with negative
    velocity, and positions just right of the wall moving into it (clipped). goal: positions within
    0.02 left of 0.5 with small velocities (crossing or not, velocity sign either way). edges: the
    position bounds and the speed limit exactly."""
    g = np.random.default_rng(seed)
    wide = np.column_stack([g.uniform(-1.2, 0.6, 1500), g.uniform(-0.07, 0.07, 1500)])
    wall = np.column_stack([np.full(200, -1.2), g.uniform(-0.07, 0.0, 200)])
    into = np.column_stack([g.uniform(-1.2, -1.15, 200), g.uniform(-0.07, -0.01, 200)])
    goal = np.column_stack([g.uniform(0.48, 0.5, 400), g.uniform(-0.005, 0.025, 400)])
    edges = np.array([[-1.2, -0.07], [-1.2, 0.0], [-1.2, 0.07], [0.6, 0.07], [0.6, -0.07], [0.5, 0.0], [0.5, 0.07],
                      [-0.5, 0.07], [-0.5, -0.07], [0.6, 0.0]])
    return np.concatenate([wide, wall, into, goal, edges]), {"wide": slice(0, 1500), "wall": slice(1500, 1900),
                                                            "goal": slice(1900, 2300)}


@pytest.fixture(scope="module")
def cases():
    return {"Acrobot-v1": _acrobot_states(), "MountainCar-v0": _mountaincar_states()}


# ------------------------------------------------------------------------------ Gymnasium oracle
def gym_observe64(env_id, s):
    """Gymnasium's observation of state ``s`` before its float32 cast (its own scalar arithmetic)."""
    if env_id == "Acrobot-v1":
        return [np.cos(s[0]), np.sin(s[0]), np.cos(s[1]), np.sin(s[1]), s[2], s[3]]
    return [s[0], s[1]]


def gym_step(env_id, states, action):
    """One step of Gymnasium's single env from each float64 state with ``action``:
    ``(next states [N, S], terminated, reward, float64 observation of the next state)``."""
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    n = len(states)
    nxt, obs = np.empty_like(states), np.empty((n, 6 if env_id == "Acrobot-v1" else 2))
    term, reward = np.empty(n, dtype=bool), np.empty(n)
    for i, s in enumerate(states):
        env.state = np.array(s, dtype=np.float64)
        _, reward[i], term[i], truncated, _ = env.step(action)
        assert not truncated
        nxt[i] = np.asarray(env.state, dtype=np.float64)
        obs[i] = gym_observe64(env_id, nxt[i])
    return nxt, term, reward, obs


@pytest.fixture(scope="module")
def gym_refs(cases):
    """Gymnasium's step of every case state, for each action, from the float64 states and from
    the states rounded to float32: ``{(env_id, dtype name, action): (start, next, term, reward, obs)}``."""
    out = {}
    for env_id, (states, _) in cases.items():
        for name in DTYPES:
            start = states if name == "float64" else F32_ROUND(states)
            for a in range(3):
                out[env_id, name, a] = (start, *gym_step(env_id, start, a))
    return out


def height(next_states):
    """Acrobot's goal test value ``-cos t1 - cos(t2 + t1)`` (terminated: > 1)."""
    return -np.cos(next_states[:, 0]) - np.cos(next_states[:, 1] + next_states[:, 0])


def near_threshold(env_id, next_states, tol):
    """Rows whose Gymnasium post-step state lies within ``tol`` of a decision boundary."""
    if env_id == "Acrobot-v1":
        return np.abs(height(next_states) - 1.0) <= tol
    p, v = next_states[:, 0], next_states[:, 1]
    return (np.abs(p - 0.5) <= tol) | ((p >= 0.5 - tol) & (np.abs(v) <= tol))


def our_step(env_id, backend, dtype, start, action):
    env = make(env_id, len(start), backend, dtype)
    env.state = torch.tensor(start, dtype=dtype)
    assert np.array_equal(env.state.double().numpy(), start)
    res = env.step(torch.full((len(start),), action))
    return res, env.state.double().numpy()


# ------------------------------------------------------------------------------ one step vs Gymnasium
@pytest.mark.parametrize("env_id", IDS)
def test_numba_float64_step_equals_gymnasium_exactly(env_id, cases, gym_refs):
    """Every state, every action: the post-step float64 state of each env that did not finish is
    Gymnasium's to the last bit; finished envs' final_obs is Gymnasium's observation of its post-step
    state (float64, before Gymnasium's float32 cast), exactly; terminated and reward exactly."""
    _, blocks = cases[env_id]
    for a in range(3):
        start, ref_next, ref_term, ref_reward, ref_obs = gym_refs[env_id, "float64", a]
        res, after = our_step(env_id, "numba", torch.float64, start, a)
        term = res.terminated.numpy()
        np.testing.assert_array_equal(term, ref_term)
        np.testing.assert_array_equal(res.reward.numpy(), ref_reward.astype(np.float32))
        assert not res.truncated.any()
        live = ~term
        bad = np.flatnonzero((after[live] != ref_next[live]).any(axis=1))
        assert len(bad) == 0, f"action {a}: {len(bad)} states differ, e.g. {start[live][bad[0]]}"
        bad = np.flatnonzero((res.final_obs.numpy() != ref_obs).any(axis=1))
        assert len(bad) == 0, f"action {a}: final_obs differs at rows {bad[:10]}"
        np.testing.assert_array_equal(res.obs.numpy()[live], res.final_obs.numpy()[live])
        # the finished envs were reset (Acrobot: within +-0.1; MountainCar: velocity 0)
        if term.any():
            if env_id == "Acrobot-v1":
                assert np.all(np.abs(after[term]) <= 0.1)
            else:
                assert np.all(after[term, 1] == 0.0)
    # both outcomes occur where they should
    all_terms = np.stack([gym_refs[env_id, "float64", a][2] for a in range(3)])
    near = all_terms[:, blocks["near" if env_id == "Acrobot-v1" else "goal"]]
    assert 0.2 < near.mean() < 0.8, near.mean()
    if env_id == "MountainCar-v0":  # most of the wall block hits the wall, where Gymnasium zeroes the velocity
        for a in range(3):
            hit = gym_refs[env_id, "float64", a][1][blocks["wall"]]
            assert np.mean((hit[:, 0] == -1.2) & (hit[:, 1] == 0.0)) > 0.5


@pytest.mark.parametrize("env_id", IDS)
def test_torch_float64_step_matches_gymnasium_to_last_places(env_id, cases, gym_refs):
    """The torch backend in float64: within 1e-12 of Gymnasium (torch's vectorised sin/cos and
    ``x * x`` differ from libm's sin/cos/pow in the last place), flags equal except within 1e-12 of
    a threshold. Prints the measured share of bit-identical rows and the largest difference."""
    exact, worst, rows = 0, 0.0, 0
    for a in range(3):
        start, ref_next, ref_term, ref_reward, ref_obs = gym_refs[env_id, "float64", a]
        res, _ = our_step(env_id, "torch", torch.float64, start, a)
        got = res.final_obs.numpy()
        worst = max(worst, float(np.abs(got - ref_obs).max()))
        exact += int((got == ref_obs).all(axis=1).sum())
        rows += len(got)
        excluded = near_threshold(env_id, ref_next, 1e-12)
        mismatch = (res.terminated.numpy() != ref_term) & ~excluded
        assert not mismatch.any(), f"action {a}: terminated differs at rows {np.flatnonzero(mismatch)[:10]}"
        np.testing.assert_array_equal(res.reward.numpy()[~excluded], ref_reward[~excluded].astype(np.float32))
    print(f"\n{env_id} torch float64 vs Gymnasium: {exact}/{rows} rows bit-identical, max |diff| {worst:.3g}")
    assert worst <= 1e-12
    assert exact >= 0.9 * rows


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("env_id", IDS)
def test_float32_step_matches_gymnasium_within_rounding(env_id, backend, cases, gym_refs):
    """float32 (from the same float32-representable states): within float32 rounding of Gymnasium's
    float64 step; terminated equal except near a threshold."""
    for a in range(3):
        start, ref_next, ref_term, _, ref_obs = gym_refs[env_id, "float32", a]
        res, _ = our_step(env_id, backend, torch.float32, start, a)
        got = res.final_obs.double().numpy()
        if env_id == "Acrobot-v1":
            np.testing.assert_allclose(got[:, :4], ref_obs[:, :4], rtol=0, atol=3e-5)
            scale = 1.0 + start[:, 2] ** 2 + start[:, 3] ** 2  # the dynamics' terms grow with the squared speeds
            assert np.all(np.abs(got[:, 4:] - ref_obs[:, 4:]) <= 2e-5 * scale[:, None])
            excluded = near_threshold(env_id, ref_next, 1e-4)
        else:
            np.testing.assert_allclose(got, ref_obs, rtol=1e-5, atol=1e-7)
            excluded = near_threshold(env_id, ref_next, 1e-6)
        assert excluded.mean() < 0.05
        mismatch = (res.terminated.numpy() != ref_term) & ~excluded
        assert not mismatch.any(), f"action {a}: terminated differs at rows {np.flatnonzero(mismatch)[:10]}"


def test_acrobot_hand_cases_against_gymnasium():
    """Hanging at rest with no torque stays at rest (up to cos(-pi/2) = 6e-17, as in Gymnasium); the
    torque turns the second link its way and the first the other way."""
    start = np.zeros((3, 4))
    for a, sign in ((1, 0.0), (0, -1.0), (2, 1.0)):
        res, after = our_step("Acrobot-v1", "numba", torch.float64, start, a)
        np.testing.assert_array_equal(after, gym_step("Acrobot-v1", start, a)[0])
        assert not res.terminated.any()
        if sign == 0.0:
            assert np.all(np.abs(after) < 1e-15)
        else:
            assert np.sign(after[0, 3]) == sign and np.sign(after[0, 2]) == -sign and abs(after[0, 3]) > 0.1


# ------------------------------------------------------------------------------ trajectories vs Gymnasium
@pytest.mark.parametrize(("env_id", "n", "steps"), [("Acrobot-v1", 128, 300), ("MountainCar-v0", 256, 300)])
def test_numba_float64_trajectories_equal_gymnasium(env_id, n, steps):
    """N Gymnasium single envs stepped alongside ours with the same random actions: every step,
    every env that did not finish holds Gymnasium's state bit for bit; a finished env's final_obs is
    Gymnasium's observation, after which Gymnasium's env is put where our autoreset put ours (its
    own resets and time limit are not used). A short horizon makes truncations happen too."""
    env = make(env_id, n, "numba", seed=7, max_episode_steps=90)
    if env_id == "Acrobot-v1":  # half the envs start swinging hard, so that episodes end at the goal too
        start = env.state.clone()
        start[::2] = torch.tensor(_acrobot_states(7)[0][: n // 2])
        env.state = start
    refs = [gym.make(env_id).unwrapped for _ in range(n)]
    for g, s in zip(refs, env.state.numpy()):
        g.reset(seed=0)
        g.state = s.copy()
    actions = np.random.default_rng(7).integers(0, 3, (steps, n))
    ended = {"terminated": 0, "truncated": 0}
    for t in range(steps):
        res = env.step(torch.from_numpy(actions[t]))
        state, term, trunc = env.state.numpy(), res.terminated.numpy(), res.truncated.numpy()
        final_obs, reward = res.final_obs.numpy(), res.reward.numpy()
        for i, g in enumerate(refs):
            _, r, te, _, _ = g.step(int(actions[t, i]))
            gs = np.asarray(g.state, dtype=np.float64)
            assert te == term[i] and r == reward[i], (t, i)
            assert gym_observe64(env_id, gs) == list(final_obs[i]), (t, i)
            if term[i] or trunc[i]:
                g.state = state[i].copy()
            else:
                assert np.array_equal(gs, state[i]), (t, i, gs, state[i])
        ended["terminated"] += int(term.sum())
        ended["truncated"] += int(trunc.sum())
    assert ended["truncated"] > n // 2  # the horizon was reached
    if env_id == "Acrobot-v1":
        assert ended["terminated"] > n // 4  # and the goal


# ------------------------------------------------------------------------------ truncation and resets
def _reset_reference(env_id, key, round_, group_size, i):
    """Env ``i``'s reset state in draw ``round_`` from the pure-Python SplitMix64 (the documented stream)."""
    words = 2 if env_id == "Acrobot-v1" else 1
    u = []
    for w in range(words):
        h = rng.splitmix64((key + ((round_ * group_size + i) * words + w + 1) * rng.GOLDEN) & rng.MASK64)
        u += [(h >> 32) * rng.INV_2_32, (h & 0xFFFFFFFF) * rng.INV_2_32]
    if env_id == "Acrobot-v1":
        return [float(np.float32(-0.1 + 0.2 * v)) for v in u]
    return [-0.6 + (-0.4 - -0.6) * u[0], 0.0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("env_id", IDS)
def test_truncation_at_max_episode_steps_resets(env_id, backend):
    """No torque / no push never reaches the goal from a reset state: every episode runs to the
    spec's limit (500 / 200) and truncates there, and the env restarts from its documented draw."""
    limit = {"Acrobot-v1": 500, "MountainCar-v0": 200}[env_id]
    n = 16
    env = make(env_id, n, backend, seed=3)
    assert env.max_episode_steps == limit
    idle = torch.ones(limit - 1, n, dtype=torch.int64)
    r = env.rollout(limit - 1, actions=idle)
    assert torch.all(r.episodes == 0) and torch.all(r.reward == -(limit - 1))
    assert torch.all(env.elapsed_steps == limit - 1)
    round_before = int(env._round.item())
    res = env.step(torch.ones(n, dtype=torch.int64))
    assert res.truncated.all() and not res.terminated.any()
    assert torch.all(env.elapsed_steps == 0)
    key = env._keys[0]
    want = np.array([_reset_reference(env_id, key, round_before, n, i) for i in range(n)])
    np.testing.assert_array_equal(env.state.double().numpy(), want)
    assert not torch.equal(res.final_obs, res.obs)
    # a second episode truncates after the full limit again (rollout counts it)
    r = env.rollout(limit, actions=torch.ones(limit, n, dtype=torch.int64))
    assert torch.all(r.episodes == 1) and torch.all(env.elapsed_steps == 0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("env_id", IDS)
def test_truncation_of_chosen_envs(env_id, backend):
    """Envs put one step before the limit truncate (and only they); terminated stays the physics' flag."""
    n = 12
    env = make(env_id, n, backend, seed=5)
    env.elapsed_steps[::3] = env.max_episode_steps - 1
    res = env.step(torch.ones(n, dtype=torch.int64))
    want = torch.zeros(n, dtype=torch.bool)
    want[::3] = True
    assert torch.equal(res.truncated, want) and not res.terminated.any()
    assert torch.equal(env.elapsed_steps, torch.where(want, 0, 1).int())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("env_id", IDS)
def test_reset_distribution(env_id, dtype, backend):
    """Reset states (the initial reset and the kernels' autoresets, max_episode_steps=1: every
    step resets every env): Acrobot all four within [-0.1, 0.1] and float32 values; MountainCar
    position in [-0.6, -0.4), velocity 0; both spread uniformly; equal to the documented stream."""
    n = 20_000
    env = make(env_id, n, backend, dtype, seed=9, max_episode_steps=1)
    draws = [env.state.double().numpy().copy()]
    for _ in range(2):
        res = env.step(torch.zeros(n, dtype=torch.int64))
        assert res.truncated.all()
        draws.append(env.state.double().numpy().copy())
    key = env._keys[0]
    for r, s in enumerate(draws):
        for i in (0, 1, n - 1):
            want = _reset_reference(env_id, key, r, n, i)
            np.testing.assert_array_equal(s[i], want if dtype == torch.float64 else F32_ROUND(want))
        if env_id == "Acrobot-v1":
            assert np.all(np.abs(s) <= 0.1)
            assert np.array_equal(s, F32_ROUND(s))
            assert np.all(np.abs(s.mean(axis=0)) < 0.003) and np.allclose(s.std(axis=0), 0.2 / math.sqrt(12), rtol=0.02)
        else:
            assert np.all((s[:, 0] >= -0.6) & (s[:, 0] < -0.4)) and np.all(s[:, 1] == 0.0)
            assert abs(s[:, 0].mean() + 0.5) < 0.003 and abs(s[:, 0].std() - 0.2 / math.sqrt(12)) < 0.002
    assert not np.array_equal(draws[1], draws[2])


# ------------------------------------------------------------------------------ backends and API
@pytest.mark.parametrize("n", [64, PARALLEL_N])
@pytest.mark.parametrize("env_id", IDS)
def test_numba_and_torch_backends_agree(env_id, n):
    """Same seed, same actions, float64: the two backends step alike (states and observations within
    1e-12, the reset draws identical, rewards and flags exactly), then their random rollouts agree.
    Acrobot is chaotic: torch's last-place sin/cos differences grow along a trajectory (~1e-11 after
    300 steps), so its horizon is shorter; a short episode limit makes resets happen."""
    small = n < PARALLEL_N  # the large batch (threaded kernel) runs fewer, shorter episodes: torch is slow there
    steps, limit, rollout_steps = ((120 if env_id == "Acrobot-v1" else 300), 50, 60) if small else (30, 20, 20)
    a_env = make(env_id, n, "numba", seed=4, max_episode_steps=limit)
    b_env = make(env_id, n, "torch", seed=4, max_episode_steps=limit)
    assert torch.equal(a_env.state, b_env.state)
    gen = torch.Generator().manual_seed(2)
    resets = 0
    for _ in range(steps):
        acts = torch.randint(0, 3, (n,), generator=gen)
        ra, rb = a_env.step(acts), b_env.step(acts)
        assert torch.equal(ra.terminated, rb.terminated) and torch.equal(ra.truncated, rb.truncated)
        assert torch.equal(ra.reward, rb.reward)
        torch.testing.assert_close(ra.final_obs, rb.final_obs, rtol=0, atol=1e-12)
        torch.testing.assert_close(ra.obs, rb.obs, rtol=0, atol=1e-12)
        done = ra.terminated | ra.truncated
        assert torch.equal(a_env.state[done], b_env.state[done])  # reset draws: the same stream, bit for bit
        torch.testing.assert_close(a_env.state, b_env.state, rtol=0, atol=1e-12)
        assert torch.equal(a_env.elapsed_steps, b_env.elapsed_steps)
        resets += int(done.sum())
    assert resets >= n
    ra, rb = a_env.rollout(rollout_steps, seed=8), b_env.rollout(rollout_steps, seed=8)
    assert torch.equal(ra.reward, rb.reward) and torch.equal(ra.episodes, rb.episodes)
    torch.testing.assert_close(a_env.state, b_env.state, rtol=0, atol=1e-12)
    assert torch.equal(a_env.elapsed_steps, b_env.elapsed_steps) and torch.equal(a_env._round, b_env._round)


def _step_loop(env, actions):
    reward = torch.zeros(env.num_envs)
    episodes = torch.zeros(env.num_envs, dtype=torch.int64)
    for a in actions:
        r = env.step(a)
        reward += r.reward
        episodes += r.terminated | r.truncated
    return reward, episodes


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("env_id", IDS)
def test_rollout_equals_step_loop(env_id, backend, dtype):
    """``rollout(T)`` ends where T calls of ``step`` do, bit for bit: with given actions, and with
    drawn ones (which are :func:`fastdqn.vector.rollout_actions`); seed groups; the draw counter
    moved by T. numba: the serial and the threaded kernel."""
    steps = 150 if dtype == torch.float64 else 60
    for n in ([8, PARALLEL_N] if backend == "numba" else [8]):
        seed = [4, 9] if n % 2 == 0 else 4
        for given in (True, False):
            looped = make(env_id, n, backend, dtype, seed=seed, max_episode_steps=40)
            rolled = make(env_id, n, backend, dtype, seed=seed, max_episode_steps=40)
            if given:
                acts = torch.from_numpy(np.random.default_rng(3).integers(0, 3, (steps, n)))
                got = rolled.rollout(steps, actions=acts)
            else:
                acts = rollout_actions(n, steps, rng.seed_key(21), 3)
                got = rolled.rollout(steps, seed=21)
            want_reward, want_episodes = _step_loop(looped, acts)
            assert torch.equal(got.reward, want_reward) and torch.equal(got.episodes, want_episodes)
            assert torch.equal(rolled.state, looped.state) and torch.equal(rolled.elapsed_steps, looped.elapsed_steps)
            assert torch.equal(rolled._round, looped._round)
            assert got.episodes.sum() >= (3 if steps > 120 else 1) * n
            if not given:
                assert set(torch.unique(acts).tolist()) == {0, 1, 2}


def test_rollout_actions_are_the_documented_draws():
    n, steps, key = 37, 50, rng.seed_key(2**40 + 5)
    acts = rollout_actions(n, steps, key, 3)
    assert acts.shape == (steps, n) and acts.dtype == torch.int64
    for t, i in [(0, 0), (1, 5), (49, 36), (20, 17)]:
        h = rng.splitmix64((key + (t * n + i + 1) * rng.GOLDEN) & rng.MASK64)
        assert acts[t, i].item() == ((h >> 32) * 3) >> 32


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("env_id", IDS)
def test_seed_groups_match_single_seed_envs(env_id, backend):
    """env(G*n, seed=[s0..]): group g steps, finishes and resets exactly as env(n, seed=s_g)."""
    seeds, n = [3, 11, 4], 6
    grouped = make(env_id, len(seeds) * n, backend, seed=seeds, max_episode_steps=15)
    singles = [make(env_id, n, backend, seed=s, max_episode_steps=15) for s in seeds]
    assert torch.equal(grouped.state, torch.cat([e.state for e in singles]))
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        acts = torch.randint(0, 3, (len(seeds) * n,), generator=gen)
        res = grouped.step(acts)
        for g, env in enumerate(singles):
            ref, rows = env.step(acts[g * n:(g + 1) * n]), slice(g * n, (g + 1) * n)
            assert all(torch.equal(x[rows], y) for x, y in zip(res, ref, strict=True))
    acts = torch.from_numpy(np.random.default_rng(2).integers(0, 3, (40, len(seeds) * n)))
    r = grouped.rollout(40, actions=acts)
    for g, env in enumerate(singles):
        rows = slice(g * n, (g + 1) * n)
        ref = env.rollout(40, actions=acts[:, rows])
        assert torch.equal(r.reward[rows], ref.reward) and torch.equal(r.episodes[rows], ref.episodes)
        assert torch.equal(grouped.state[rows], env.state)
    assert r.episodes.sum() >= len(seeds) * n


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("env_id", IDS)
def test_state_dict_round_trip_continues_identically(env_id, backend):
    env = make(env_id, 10, backend, seed=[1, 2], max_episode_steps=25)
    env.rollout(30, seed=3)
    saved = env.state_dict()
    acts = torch.from_numpy(np.random.default_rng(0).integers(0, 3, (60, 10)))
    want = [env.step(a) for a in acts]
    other = make(env_id, 10, backend, seed=[7, 8], max_episode_steps=25)
    other.load_state_dict(saved)
    got = [other.step(a) for a in acts]
    for x, y in zip(got, want, strict=True):
        assert all(torch.equal(u, v) for u, v in zip(x, y, strict=True))
    assert torch.equal(other.state, env.state) and torch.equal(other._round, env._round)
    assert sum(int(r.truncated.sum()) for r in want) > 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("env_id", IDS)
def test_bad_actions_raise_one_line_value_errors(env_id, backend):
    n = 4
    env = make(env_id, n, backend, seed=1)
    state, elapsed = env.state.clone(), env.elapsed_steps.clone()
    for bad, match in [(torch.tensor([0, 1, 3, 0]), r"\[0, 2\].*3"), (torch.tensor([0, -1, 1, 2]), r"\[0, 2\].*-1"),
                       (torch.zeros(n), "integer"), (torch.zeros(n, dtype=torch.float64), "integer"),
                       (torch.zeros(n + 1, dtype=torch.int64), "shape")]:
        with pytest.raises(ValueError, match=match) as err:
            env.step(bad)
        assert "\n" not in str(err.value)
        assert torch.equal(env.state, state) and torch.equal(env.elapsed_steps, elapsed)
    with pytest.raises(ValueError, match="integer") as err:
        env.rollout(3, actions=torch.zeros(3, n))
    assert "\n" not in str(err.value)
    env.step(torch.tensor([0, 1, 2, 1], dtype=torch.int32))  # any integer dtype is fine


@pytest.mark.parametrize("layout", ["new_outputs", "row_major"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("env_id", IDS)
def test_out_gives_the_same_values_as_fresh_outputs(env_id, backend, layout):
    n, dtype = 50, torch.float64
    fresh = make(env_id, n, backend, seed=5, max_episode_steps=7)
    into = make(env_id, n, backend, seed=5, max_episode_steps=7)
    d = into.spec.obs_shape[0]
    out = into.new_outputs() if layout == "new_outputs" else type(into.new_outputs())(
        torch.empty(n, d, dtype=dtype), torch.empty(n), torch.empty(n, dtype=torch.bool),
        torch.empty(n, dtype=torch.bool), torch.empty(n, d, dtype=dtype))
    ptrs = [t.data_ptr() for t in out]
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        acts = torch.randint(0, 3, (n,), generator=gen)
        want = fresh.step(acts)
        got = into.step(acts, out=out)
        assert got is out and [t.data_ptr() for t in got] == ptrs
        assert all(torch.equal(x, y) for x, y in zip(got, want, strict=True))
