"""CartPole kernels for the CPU, in numba: the step fused with same-step autoreset, a multi-step
rollout, and the trainer's fused collect step.

Gymnasium's Euler step (same expression order as ``gymnasium.envs.classic_control.cartpole``),
termination and truncation for every env, then a reset draw from the counter-based RNG in
:mod:`fastdqn.kernels.rng` for the finished ones. The arithmetic runs in the dtype of ``state``
(float32 or float64): the physical constants arrive as a tuple of that dtype, so numba
specialises one kernel per dtype and caches it on disk.
"""

import types as types_module

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .collect_numba import advance_counters, epsilon_greedy, sample_indices
from .rng_numba import GOLDEN_U64 as _GOLDEN
from .rng_numba import mix64 as _mix64
from .rng_numba import uniform_pair

_ONE = np.uint64(1)
_TWO = np.uint64(2)


# pi/2 split in two doubles (Cody-Waite): k * _PIO2_HI is exact for |k| < 2**20.
_PIO2_HI = 1.5707963267341256
_PIO2_LO = 6.077100506506192e-11
_TWO_OVER_PI = 0.6366197723675814


def sincos(x):
    """(sin x, cos x); numba-only (see the overload below)."""
    raise NotImplementedError("sincos is only callable from numba-compiled code")


@overload(sincos)
def _sincos_impl(x):
    if x != types.float32:
        return lambda x: (np.sin(x), np.cos(x))

    def sincos_f32(x):
        # libm's sinf/cosf are scalar calls that stop the loop from vectorising. This is
        # Cephes' float32 minimax pair on |r| <= pi/4 after a float64 quadrant reduction:
        # within ~1 ulp of float32 for |x| < 1e6 rad, branch-free, so the loop vectorises.
        xd = np.float64(x)
        k = np.rint(xd * _TWO_OVER_PI)
        r = np.float32((xd - k * _PIO2_HI) - k * _PIO2_LO)
        q = np.int32(k)  # int32, not int64: AVX2 has no packed double -> int64 conversion
        z = r * r
        s = ((np.float32(-1.9515295891e-4) * z + np.float32(8.3321608736e-3)) * z
             - np.float32(1.6666654611e-1)) * z * r + r
        c = (((np.float32(2.443315711809948e-5) * z - np.float32(1.388731625493765e-3)) * z
              + np.float32(4.166664568298827e-2)) * z * z - np.float32(0.5) * z + np.float32(1.0))
        sn = s if (q & 1) == 0 else c
        cs = c if (q & 1) == 0 else s
        sn = -sn if (q & 2) != 0 else sn
        cs = -cs if ((q + 1) & 2) != 0 else cs
        return sn, cs

    return sincos_f32


@njit(inline="always")
def _uniform_pair(key, k):
    u, v = uniform_pair(key, k)
    return -0.05 + 0.1 * u, -0.05 + 0.1 * v


@njit(inline="always", error_model="numpy")
def _physics(x, x_dot, theta, theta_dot, push_right, c):
    """Gymnasium's Euler step of one env (its expression order): the next state and terminated."""
    gravity, masspole, total_mass, length, polemass_length, force_mag, tau, four_thirds, th_t, x_t = c
    force = force_mag if push_right else -force_mag
    sintheta, costheta = sincos(theta)
    temp = (force + polemass_length * (theta_dot * theta_dot) * sintheta) / total_mass
    thetaacc = (gravity * sintheta - costheta * temp) / (
        length * (four_thirds - masspole * (costheta * costheta) / total_mass)
    )
    xacc = temp - polemass_length * thetaacc * costheta / total_mass
    x = x + tau * x_dot
    x_dot = x_dot + tau * xacc
    theta = theta + tau * theta_dot
    theta_dot = theta_dot + tau * thetaacc
    return x, x_dot, theta, theta_dot, (x < -x_t) | (x > x_t) | (theta < -th_t) | (theta > th_t)


CHUNK = 1024
"""Envs per task of the threaded kernels: one chunk's rows (~40 KB) stay in L1/L2 through the passes."""


@njit(inline="always", error_model="numpy")
def _step_span(state, actions, elapsed, max_steps, keys, group_size, rnd, c, obs, final_obs, reward, terminated,
               truncated, lo, hi):
    """Step envs ``lo..hi-1``: physics, then resets for the finished ones, then obs = state.

    Three loops, not one: a loop that stores into three arrays (state, obs, final_obs) needs more
    run-time overlap checks than LLVM allows and stays scalar (~2.5x slower on the EPYC); these loops
    vectorise. Indices are unsigned, which spares each access numba's negative-index fix-up
    (another thing that stops the vectoriser)."""
    lo = np.uint64(lo)
    hi = np.uint64(hi)
    for i in range(lo, hi):
        x, x_dot, theta, theta_dot, term = _physics(state[0, i], state[1, i], state[2, i], state[3, i],
                                                    actions[i] != 0, c)
        final_obs[0, i] = state[0, i] = x
        final_obs[1, i] = state[1, i] = x_dot
        final_obs[2, i] = state[2, i] = theta
        final_obs[3, i] = state[3, i] = theta_dot
        e = elapsed[i] + 1
        elapsed[i] = e
        reward[i] = 1.0
        terminated[i] = term
        truncated[i] = e >= max_steps
    for i in range(lo, hi):
        if terminated[i] | truncated[i]:
            _draw(state, elapsed, keys, group_size, rnd, i)
    for d in range(4):
        for i in range(lo, hi):
            obs[d, i] = state[d, i]


@njit(parallel=True, cache=True, error_model="numpy")
def step(state, actions, elapsed, max_steps, keys, group_size, round_, c, obs, final_obs, reward, terminated, truncated):
    """Advance every env one step in place; finished envs restart from a fresh reset draw.

    Layout is struct-of-arrays: state, obs and final_obs are [4, >= N] (rows x, x_dot, theta,
    theta_dot; N = len(actions); a row may be longer than N, so callers can pad rows apart in
    memory), so each component streams contiguously and the physics vectorises. state is read,
    then overwritten with the post-reset state. actions [N]: 0 = left, anything else = right
    (validate with :func:`count_invalid_actions`). elapsed [N] int32: steps into the episode.
    keys uint64 [G]: the RNG key of each group of ``group_size`` consecutive envs (G = 1: one key
    for all); round_ uint64 [1]: the draw counter, advanced here. c: :func:`fastdqn.cartpole.physics_constants`.
    Outputs: obs/final_obs [4, >= N], reward/terminated/truncated [N].

    The envs are cut into chunks of :data:`CHUNK`, one task each; a chunk runs the physics for
    all its envs, then draws reset states only for its finished ones (hashing every env would cost
    as much as the physics), then copies the state out to obs.
    """
    n = actions.shape[0]
    rnd = np.uint64(round_[0])
    for b in prange((n + CHUNK - 1) // CHUNK):
        _step_span(state, actions, elapsed, max_steps, keys, group_size, rnd, c, obs, final_obs, reward, terminated,
                   truncated, b * CHUNK, min(n, b * CHUNK + CHUNK))
    round_[0] += 1


def _renamed(fn, name):
    """A copy of ``fn`` under another name: numba's disk cache is keyed by the function's name
    (not by ``parallel``), so the serial twin needs a name of its own."""
    clone = types_module.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    clone.__qualname__ = name
    return clone


# The same kernel without threads: for small batches, waking the thread pool costs more than the
# work (N=32: ~25 us parallel vs ~2 us serial on 2 cores). fastdqn.CartPole picks by N, from a
# measurement of both on the machine (fastdqn.calibrate).
step_serial = njit(cache=True, error_model="numpy")(_renamed(step.py_func, "step_serial"))
PARALLEL_MIN_ENVS = 4096
"""Where the trainer's fused :func:`collect` switches to its threaded version (K * N envs). The env
step's switch is measured per machine instead (:mod:`fastdqn.calibrate`); the tests pin
it to this value."""


@njit(inline="always")
def _draw(state, elapsed, keys, group_size, round_, i):
    """Reset env ``i`` (of its group of ``group_size``) to its draw for round ``round_``."""
    gs = np.uint64(group_size)
    i = np.uint64(i)
    key = keys[i // gs]
    k = (np.uint64(round_) * gs + i % gs) * _TWO
    u0, u1 = _uniform_pair(key, k + _ONE)
    u2, u3 = _uniform_pair(key, k + _TWO)
    state[0, i] = u0
    state[1, i] = u1
    state[2, i] = u2
    state[3, i] = u3
    elapsed[i] = 0


@njit(parallel=True, cache=True, error_model="numpy")
def rollout(state, elapsed, max_steps, keys, group_size, round_, c, actions, action_key, reward_sum, episodes):
    """``T`` steps of every env in one call, as ``T`` calls of :func:`step` would take them (same
    physics, autoreset and reset draws; ``round_`` advances by ``T``), keeping only per-env sums:
    ``reward_sum [N]`` (float32) and ``episodes [N]`` (int64, episodes ended) are added to.

    ``actions [T, N]`` (0 = left, else right) gives the actions; with ``actions`` of shape
    ``(T, 0)`` they are drawn here instead: env i's action at step t is bit ``t % 64`` of
    SplitMix64 of ``action_key + ((t // 64) * N + i + 1) * GOLDEN`` (one hash per 64 steps; see
    :func:`fastdqn.cartpole.rollout_actions`). Each chunk of :data:`CHUNK` envs runs all ``T``
    steps while its rows stay in cache.
    """
    steps = actions.shape[0]
    n = reward_sum.shape[0]
    drawn = actions.shape[1] == 0
    nn = np.uint64(n)
    akey = np.uint64(action_key)
    r0 = np.uint64(round_[0])
    for b in prange((n + CHUNK - 1) // CHUNK):
        lo = np.uint64(b * CHUNK)
        hi = np.uint64(min(n, b * CHUNK + CHUNK))
        bits = np.empty(CHUNK, np.uint64)
        act = np.empty(CHUNK, np.bool_)
        done = np.empty(CHUNK, np.bool_)
        for t in range(steps):
            shift = np.uint64(t % 64)
            if drawn:
                if shift == 0:
                    base = np.uint64(t // 64) * nn + _ONE
                    for i in range(lo, hi):
                        bits[i - lo] = _mix64(akey + (base + i) * _GOLDEN)
                for i in range(lo, hi):
                    act[i - lo] = ((bits[i - lo] >> shift) & _ONE) != 0
            else:
                for i in range(lo, hi):
                    act[i - lo] = actions[t, i] != 0
            for i in range(lo, hi):
                x, x_dot, theta, theta_dot, term = _physics(state[0, i], state[1, i], state[2, i], state[3, i],
                                                            act[i - lo], c)
                state[0, i] = x
                state[1, i] = x_dot
                state[2, i] = theta
                state[3, i] = theta_dot
                e = elapsed[i] + 1
                elapsed[i] = e
                reward_sum[i] += np.float32(1.0)
                done[i - lo] = term | (e >= max_steps)
            for i in range(lo, hi):
                if done[i - lo]:
                    _draw(state, elapsed, keys, group_size, r0 + np.uint64(t), i)
                    episodes[i] += 1
    round_[0] += steps


rollout_serial = njit(cache=True, error_model="numpy")(_renamed(rollout.py_func, "rollout_serial"))


@njit(cache=True)
def count_invalid_actions(actions):
    """Number of actions outside {0, 1} (one cheap pass, no allocation)."""
    bad = 0
    for i in range(actions.shape[0]):
        a = actions[i]
        if a != 0 and a != 1:
            bad += 1
    return bad


@njit(parallel=True, cache=True, error_model="numpy")
def collect(greedy, eps, keys, draws, width, state, elapsed, max_steps, env_keys, round_, c, replay, pos, size,
            obs, ep_return, finished, finished_return, env_steps, sample_idx):
    """One vector step of a population's training loop on the CPU, fused: epsilon-greedy actions,
    the env step with autoreset, the transitions written into the replay rings, the episode
    bookkeeping, the counters, and this iteration's replay sample indices.

    The same arithmetic, in the same order and precision, as the torch path of
    ``fastdqn.engine.Engine.collect`` (which the tests hold it to, bit for bit):

    * agent k's random words are SplitMix64 of ``keys[k] + (draws * width + j) * GOLDEN``;
      column j < N decides env j's action (u = top 24 bits / 2**24: explore if u < eps[k], then
      action floor(u * 2 / eps[k])), columns N + b give sample index b: ``(h >> 32) * size >> 32``;
    * greedy [K, N] int64: the network's argmax actions; eps [K] float32;
    * state [4, K*N], elapsed [K*N], env_keys [K], round_ [1]: the envs (one seed group per agent),
      c: :func:`fastdqn.cartpole.physics_constants`; a finished env restarts from reset draw ``round_``;
    * replay [K, C, 12] packed rows ``obs | action | reward | next_obs | terminated | truncated``
      written at ``pos``; pos, size, draws, env_steps: 0-d int64 counters advanced here;
    * obs [K, N, 4] the agents' current observations; ep_return [K, N] running returns;
      finished / finished_return [K]: episodes ended and their summed returns (accumulated);
    * sample_idx [K, B]: output (B may be 0).
    """
    k_agents, n = greedy.shape
    cap = replay.shape[1]
    p0 = pos[()]
    size_after = min(size[()] + n, cap)
    base = np.uint64(draws[()]) * np.uint64(width)
    rnd = np.uint64(round_[0])
    for k in prange(k_agents):
        key = np.uint64(keys[k])
        fin = np.float32(0.0)
        fin_ret = np.float32(0.0)
        for i in range(n):
            a = epsilon_greedy(key, base, i, eps[k], greedy[k, i], 2)
            j = k * n + i
            row = (p0 + i) % cap
            for d in range(4):
                replay[k, row, d] = obs[k, i, d]
            replay[k, row, 4] = a
            replay[k, row, 5] = 1.0
            x, x_dot, theta, theta_dot, term = _physics(state[0, j], state[1, j], state[2, j], state[3, j], a != 0, c)
            el = elapsed[j] + 1
            trunc = el >= max_steps
            replay[k, row, 6] = x
            replay[k, row, 7] = x_dot
            replay[k, row, 8] = theta
            replay[k, row, 9] = theta_dot
            replay[k, row, 10] = term
            replay[k, row, 11] = trunc
            ret = ep_return[k, i] + np.float32(1.0)
            if term | trunc:
                fin += np.float32(1.0)
                fin_ret += ret
                ret = np.float32(0.0)
                r = (rnd * np.uint64(n) + np.uint64(i)) * _TWO
                x, x_dot = _uniform_pair(env_keys[k], r + _ONE)
                theta, theta_dot = _uniform_pair(env_keys[k], r + _TWO)
                el = 0
            state[0, j] = obs[k, i, 0] = x
            state[1, j] = obs[k, i, 1] = x_dot
            state[2, j] = obs[k, i, 2] = theta
            state[3, j] = obs[k, i, 3] = theta_dot
            elapsed[j] = el
            ep_return[k, i] = ret
        finished[k] += fin
        finished_return[k] += fin_ret
        sample_indices(key, base, n, size_after, sample_idx[k])
    advance_counters(pos, size, env_steps, draws, p0, n, cap, size_after)
    round_[0] += 1


collect_serial = njit(cache=True, error_model="numpy")(_renamed(collect.py_func, "collect_serial"))
