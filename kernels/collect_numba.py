"""The trainer's fused collect step for any env with a numba step kernel (Acrobot, MountainCar):
epsilon-greedy actions, the env's own step kernel, the transitions written into the packed replay
rings, the episode bookkeeping, the counters and the iteration's replay sample indices, in one call.

It computes what the tensor program of ``fastdqn.engine.Engine.collect`` computes, in the same
order and precision (the tests hold the two equal bit for bit):

* agent k's random words are SplitMix64 of ``keys[k] + (draws * width + j) * GOLDEN``; column
  j < N decides env j's action (u = top 24 bits / 2**24; explore if u < eps[k], then action
  ``min(u * A / eps[k], A - 1)``), columns N + b give sample index b: ``(h >> 32) * size >> 32``;
* the env step is the env's kernel, called as ``step(state, elapsed, env_keys, round_, actions,
  max_steps, group_size, consts, obs, final_obs, reward, terminated, truncated, *extra)`` with
  its outputs in scratch arrays (observations ``[D, K*N]``);
* replay ``[K, C, 2D + 4]`` packed rows ``obs | action | reward | next_obs | terminated |
  truncated`` written at ``pos``; ``pos``, ``size``, ``draws``, ``env_steps``: 0-d int64 counters
  advanced here; ``obs [K, N, D]`` the agents' current observations; ``ep_return [K, N]``;
  ``finished``/``finished_return [K]`` accumulate; ``sample_idx [K, B]`` is the output (B may be 0).

Each env's kernels come from :func:`kernel`, which compiles the template below once per step
kernel (threaded or serial), with the step as a global so that numba's disk cache finds it again.
The epsilon-greedy draw, the sample indices and the counters are helpers that CartPole's own
fused kernel (:func:`fastdqn.kernels.cartpole_numba.collect`) shares.
"""

import types as types_module

import numpy as np
from numba import njit, prange

from .rng_numba import GOLDEN_U64 as _GOLDEN
from .rng_numba import mix64 as _mix64

_S32 = np.uint64(32)
_S40 = np.uint64(40)
_INV_2_24 = np.float32(5.9604644775390625e-08)


@njit(inline="always")
def epsilon_greedy(key, base, i, eps, greedy_action, n_actions):
    """Env ``i``'s action from word ``base + i`` of the agent's stream: u = top 24 bits / 2**24;
    explore if u < eps, then ``min(u * A / eps, A - 1)`` (float32, as the tensor path), else ``greedy_action``."""
    h = _mix64(key + (base + np.uint64(i)) * _GOLDEN)
    u = np.float32(h >> _S40) * _INV_2_24
    if u < eps:
        return np.int64(min(u * np.float32(n_actions) / max(eps, np.float32(1e-30)), np.float32(n_actions - 1)))
    return greedy_action


@njit(inline="always")
def sample_indices(key, base, n, size_after, out):
    """Replay sample index b from word ``base + n + b``: ``(h >> 32) * size_after >> 32``, into ``out [B]``."""
    for b in range(out.shape[0]):
        h = _mix64(key + (base + np.uint64(n + b)) * _GOLDEN)
        out[b] = np.int64(((h >> _S32) * np.uint64(size_after)) >> _S32)


@njit(inline="always")
def advance_counters(pos, size, env_steps, draws, p0, n, cap, size_after):
    """The 0-d counters after a vector step of ``n`` transitions per agent written from ``p0``."""
    pos[()] = (p0 + n) % cap
    size[()] = size_after
    env_steps[()] += n
    draws[()] += 1


def _collect_template(greedy, eps, keys, draws, width, n_actions, state, elapsed, env_keys, round_, max_steps,
                      group_size, c, extra, actions, step_obs, step_final, step_reward, step_term, step_trunc, replay,
                      pos, size, obs, ep_return, finished, finished_return, env_steps, sample_idx):
    k_agents, n = greedy.shape
    d = obs.shape[2]
    cap = replay.shape[1]
    p0 = pos[()]
    size_after = min(size[()] + n, cap)
    base = np.uint64(draws[()]) * np.uint64(width)
    for k in prange(k_agents):
        key = np.uint64(keys[k])
        for i in range(n):
            actions[k * n + i] = epsilon_greedy(key, base, i, eps[k], greedy[k, i], n_actions)
    _STEP(state, elapsed, env_keys, round_, actions, max_steps, group_size, c, step_obs, step_final, step_reward,
          step_term, step_trunc, *extra)
    for k in prange(k_agents):
        fin = np.float32(0.0)
        fin_ret = np.float32(0.0)
        for i in range(n):
            j = k * n + i
            row = (p0 + i) % cap
            for q in range(d):
                replay[k, row, q] = obs[k, i, q]
                replay[k, row, d + 2 + q] = step_final[q, j]
                obs[k, i, q] = step_obs[q, j]
            replay[k, row, d] = actions[j]
            replay[k, row, d + 1] = step_reward[j]
            replay[k, row, 2 * d + 2] = step_term[j]
            replay[k, row, 2 * d + 3] = step_trunc[j]
            ret = ep_return[k, i] + step_reward[j]
            if step_term[j] | step_trunc[j]:
                fin += np.float32(1.0)
                fin_ret += ret
                ret = np.float32(0.0)
            ep_return[k, i] = ret
        finished[k] += fin
        finished_return[k] += fin_ret
        sample_indices(np.uint64(keys[k]), base, n, size_after, sample_idx[k])
    advance_counters(pos, size, env_steps, draws, p0, n, cap, size_after)


_compiled: dict = {}


def kernel(name: str, step, parallel: bool):
    """The fused collect kernel around the numba step kernel ``step`` (a dispatcher, threaded or
    serial as ``parallel`` says), compiled once per ``name`` (which names the env and variant)."""
    if name not in _compiled:
        env = dict(globals())
        env["_STEP"] = step
        fn = types_module.FunctionType(_collect_template.__code__, env, f"_collect_{name}")
        fn.__qualname__ = f"_collect_{name}"
        _compiled[name] = njit(parallel=parallel, cache=True, error_model="numpy")(fn)
    return _compiled[name]
