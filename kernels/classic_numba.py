"""Acrobot-v1 and MountainCar-v0 kernels for the CPU, in numba: the step fused with same-step
autoreset, and a multi-step rollout, for :class:`fastdqn.vector.VectorEnv` (``backend="numba"``).

For each env ``<prefix>`` in (``acrobot``, ``mountaincar``) there are two Python-level entry points
that pick the threaded (``prange`` over chunks of :data:`CHUNK` envs) or the serial kernel:

* ``<prefix>_step(state, elapsed, keys, round_, actions, max_steps, group_size, consts, obs,
  final_obs, reward, terminated, truncated, parallel)``: one step of every env in place, the same
  as ``fastdqn.vector.pure_step``;
* ``<prefix>_rollout(state, elapsed, keys, round_, max_steps, group_size, consts, actions,
  action_key, n_actions, reward_sum, episodes, parallel)``: ``T`` steps, keeping only per-env sums.

Arrays: ``state [S, N]`` (struct-of-arrays, float32 or float64: the physics runs in that dtype),
``elapsed [N]`` int32, ``keys [G]`` uint64 (one per seed group of ``group_size`` consecutive envs),
``round_ [1]`` uint64 (the reset-draw counter, advanced here), ``actions [N]`` int64 (valid:
the caller checks), ``consts``: ``dynamics.constants(dtype)`` of :mod:`fastdqn.classic` (numpy
scalars of the state dtype), ``obs``/``final_obs [D, N]`` (any strides), ``reward [N]`` float32,
``terminated``/``truncated [N]`` bool.

Arithmetic: the expression order of Gymnasium's ``AcrobotEnv``/``MountainCarEnv`` (and of
:mod:`fastdqn.classic`), with libm's sin/cos/pow, so float64 states equal Gymnasium's bit for
bit. Gymnasium squares NumPy float64 scalars with ``x**2``, which is libm's ``pow(x, 2.0)``; that
is not always the correctly rounded ``x * x`` (glibc differs in the last bit for ~0.1% of inputs),
so the float64 Acrobot squares with ``pow`` too, with the exponent passed in at run time so that
LLVM cannot fold ``pow(x, 2.0)`` into ``x * x``. float32 squares with ``x * x``, as the torch
dynamics do. Every literal goes through :func:`_like`, so a float32 state stays float32.

Reset draws: word ``w`` of env ``i`` in round ``r`` is SplitMix64(``key + ((r * group_size + i) * W
+ w + 1) * GOLDEN``), ``W = ceil(U / 2)``, each word giving its high then its low 32 bits as
uniforms (:func:`fastdqn.kernels.rng.reset_uniforms`). Acrobot (U = 4): ``float32(-0.1 + 0.2 *
u)`` for all four components; MountainCar (U = 1): position ``-0.6 + (-0.4 - -0.6) * u``,
velocity 0.
"""

import math
import types as types_module

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from .rng_numba import below, uniform_pair

CHUNK = 1024
"""Envs per task of the threaded kernels."""

_ONE = np.uint64(1)
_TWO = np.uint64(2)
_POW_EXPONENT = np.float64(2.0)
"""The exponent of the float64 squares, passed to the kernels at run time (see the module docstring)."""


# --- dtype helpers ------------------------------------------------------------------------------
def _like(ref, v):
    """``v`` as a number of ``ref``'s float type; numba-only (see the overload below)."""
    raise NotImplementedError("_like is only callable from numba-compiled code")


@overload(_like)
def _like_impl(ref, v):
    if ref == types.float32:
        return lambda ref, v: np.float32(v)
    return lambda ref, v: np.float64(v)


def _square(x, exponent):
    """``x**2`` as Gymnasium computes it in ``x``'s dtype; numba-only (see the overload below)."""
    raise NotImplementedError("_square is only callable from numba-compiled code")


@overload(_square)
def _square_impl(x, exponent):
    if x == types.float64:
        return lambda x, exponent: x**exponent  # libm pow, like NumPy's float64 scalar x**2
    return lambda x, exponent: x * x


@njit(inline="always")
def _clip(x, lo, hi):
    """``min(max(x, lo), hi)`` (NaN stays NaN)."""
    x = lo if x < lo else x
    return hi if x > hi else x


def _renamed(fn, name):
    """A copy of ``fn`` under another name: numba's disk cache is keyed by the function's name
    (not by ``parallel``), so the serial twin of a threaded kernel needs a name of its own."""
    clone = types_module.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    clone.__qualname__ = name
    return clone


def _serial(kernel):
    return njit(cache=True, error_model="numpy")(_renamed(kernel.py_func, kernel.py_func.__name__ + "_serial"))


@njit(inline="always")
def _group_word(keys, group_size, rnd, i, words):
    """(key, counter of word 0) of env ``i``'s reset draw in round ``rnd`` (uint64 arithmetic)."""
    gs = np.uint64(group_size)
    return keys[i // gs], (rnd * gs + i % gs) * np.uint64(words)


# --- Acrobot ------------------------------------------------------------------------------------
@njit(inline="always", error_model="numpy")
def _acrobot_dsdt(t1, t2, w1, w2, a, c_phi1, c_phi2, exponent):
    """Gymnasium's ``AcrobotEnv._dsdt`` ("book" dynamics) with its products of unit constants
    folded: each fold is exact or done in Gymnasium's order."""
    one, half, quarter = _like(t1, 1.0), _like(t1, 0.5), _like(t1, 0.25)
    half_pi = _like(t1, math.pi / 2.0)
    sin2 = np.sin(t2)
    cos2 = np.cos(t2)
    d1 = quarter + (_like(t1, 1.25) + cos2) + one + one
    d2 = (quarter + half * cos2) + one
    phi2 = c_phi2 * np.cos(t1 + t2 - half_pi)
    phi1 = -half * _square(w2, exponent) * sin2 - w2 * w1 * sin2 + c_phi1 * np.cos(t1 - half_pi) + phi2
    dd2 = (a + d2 / d1 * phi1 - half * _square(w1, exponent) * sin2 - phi2) / (
        _like(t1, 1.25) - _square(d2, exponent) / d1)
    dd1 = -(d2 * dd2 + phi1) / d1
    return w1, w2, dd1, dd2


@njit(inline="always")
def _wrap(x, pi, turn):
    """Into [-pi, pi] by whole turns, Gymnasium's loops (an infinite angle is left alone)."""
    while x > pi and x < np.inf:
        x = x - turn
    while x < -pi and x > -np.inf:
        x = x + turn
    return x


@njit(inline="always", error_model="numpy")
def _acrobot_physics(t1, t2, w1, w2, action, c, exponent):
    """One RK4 step of ``dt`` (Gymnasium's ``rk4`` over ``[0, dt]``), then the wrap of the angles
    and the clamp of the velocities: the next ``(theta1, theta2, dtheta1, dtheta2)``."""
    dt, max_vel_1, max_vel_2, c_phi1, c_phi2 = c
    a = _like(t1, action) - _like(t1, 1.0)  # torque -1, 0, +1
    dt2 = dt / _like(dt, 2.0)
    two = _like(dt, 2.0)
    p1, p2, p3, p4 = _acrobot_dsdt(t1, t2, w1, w2, a, c_phi1, c_phi2, exponent)
    q1, q2, q3, q4 = _acrobot_dsdt(t1 + dt2 * p1, t2 + dt2 * p2, w1 + dt2 * p3, w2 + dt2 * p4, a, c_phi1, c_phi2,
                                   exponent)
    r1, r2, r3, r4 = _acrobot_dsdt(t1 + dt2 * q1, t2 + dt2 * q2, w1 + dt2 * q3, w2 + dt2 * q4, a, c_phi1, c_phi2,
                                   exponent)
    s1, s2, s3, s4 = _acrobot_dsdt(t1 + dt * r1, t2 + dt * r2, w1 + dt * r3, w2 + dt * r4, a, c_phi1, c_phi2,
                                   exponent)
    dt6 = dt / _like(dt, 6.0)
    t1 = t1 + dt6 * (p1 + two * q1 + two * r1 + s1)
    t2 = t2 + dt6 * (p2 + two * q2 + two * r2 + s2)
    w1 = w1 + dt6 * (p3 + two * q3 + two * r3 + s3)
    w2 = w2 + dt6 * (p4 + two * q4 + two * r4 + s4)
    pi, turn = _like(t1, math.pi), _like(t1, math.pi - -math.pi)
    return _wrap(t1, pi, turn), _wrap(t2, pi, turn), _clip(w1, -max_vel_1, max_vel_1), _clip(w2, -max_vel_2, max_vel_2)


@njit(inline="always")
def _acrobot_draw(keys, group_size, rnd, i, ref):
    """Env ``i``'s reset state for round ``rnd``: four uniforms mapped to [-0.1, 0.1), rounded to
    float32 (Gymnasium draws float32), then held in ``ref``'s dtype."""
    key, k = _group_word(keys, group_size, rnd, i, 2)
    u0, u1 = uniform_pair(key, k + _ONE)
    u2, u3 = uniform_pair(key, k + _TWO)
    return (_like(ref, np.float32(-0.1 + 0.2 * u0)), _like(ref, np.float32(-0.1 + 0.2 * u1)),
            _like(ref, np.float32(-0.1 + 0.2 * u2)), _like(ref, np.float32(-0.1 + 0.2 * u3)))


@njit(inline="always")
def _acrobot_observe(out, i, t1, t2, w1, w2):
    """Write ``[cos t1, sin t1, cos t2, sin t2, dtheta1, dtheta2]`` into column ``i``; returns cos t1."""
    c1 = np.cos(t1)
    out[0, i] = c1
    out[1, i] = np.sin(t1)
    out[2, i] = np.cos(t2)
    out[3, i] = np.sin(t2)
    out[4, i] = w1
    out[5, i] = w2
    return c1


@njit(parallel=True, cache=True, error_model="numpy")
def _acrobot_step(state, elapsed, keys, round_, actions, max_steps, group_size, c, obs, final_obs, reward, terminated,
                  truncated, exponent):
    """One step of every env: physics, final_obs, flags; finished envs take reset draw ``round_``."""
    n = actions.shape[0]
    rnd = np.uint64(round_[0])
    for b in prange((n + CHUNK - 1) // CHUNK):
        for i in range(np.uint64(b * CHUNK), np.uint64(min(n, b * CHUNK + CHUNK))):
            t1, t2, w1, w2 = _acrobot_physics(state[0, i], state[1, i], state[2, i], state[3, i], actions[i], c,
                                              exponent)
            cos1 = _acrobot_observe(final_obs, i, t1, t2, w1, w2)
            term = -cos1 - np.cos(t2 + t1) > _like(t1, 1.0)  # the free end above the bar
            e = elapsed[i] + 1
            trunc = e >= max_steps
            reward[i] = np.float32(0.0) if term else np.float32(-1.0)
            terminated[i] = term
            truncated[i] = trunc
            if term or trunc:
                t1, t2, w1, w2 = _acrobot_draw(keys, group_size, rnd, i, t1)
                e = 0
                _acrobot_observe(obs, i, t1, t2, w1, w2)
            else:
                for d in range(6):
                    obs[d, i] = final_obs[d, i]
            state[0, i] = t1
            state[1, i] = t2
            state[2, i] = w1
            state[3, i] = w2
            elapsed[i] = e
    round_[0] += 1


@njit(parallel=True, cache=True, error_model="numpy")
def _acrobot_rollout(state, elapsed, keys, round_, max_steps, group_size, c, actions, action_key, n_actions, reward_sum,
                     episodes, exponent):
    """``T`` steps of every env (each env runs all its steps in registers): the same states,
    elapsed counts and draws as ``T`` calls of :func:`_acrobot_step`; ``reward_sum``/``episodes`` add up."""
    steps = actions.shape[0]
    n = reward_sum.shape[0]
    drawn = actions.shape[1] == 0
    nn = np.uint64(n)
    akey = np.uint64(action_key)
    r0 = np.uint64(round_[0])
    for b in prange((n + CHUNK - 1) // CHUNK):
        for i in range(np.uint64(b * CHUNK), np.uint64(min(n, b * CHUNK + CHUNK))):
            t1, t2, w1, w2 = state[0, i], state[1, i], state[2, i], state[3, i]
            e = np.int64(elapsed[i])
            ret = reward_sum[i]
            ended = episodes[i]
            for t in range(steps):
                a = below(akey, np.uint64(t) * nn + i + _ONE, n_actions) if drawn else actions[t, i]
                t1, t2, w1, w2 = _acrobot_physics(t1, t2, w1, w2, a, c, exponent)
                term = -np.cos(t1) - np.cos(t2 + t1) > _like(t1, 1.0)
                e += 1
                ret += np.float32(0.0) if term else np.float32(-1.0)
                if term or e >= max_steps:
                    t1, t2, w1, w2 = _acrobot_draw(keys, group_size, r0 + np.uint64(t), i, t1)
                    e = 0
                    ended += 1
            state[0, i] = t1
            state[1, i] = t2
            state[2, i] = w1
            state[3, i] = w2
            elapsed[i] = e
            reward_sum[i] = ret
            episodes[i] = ended
    round_[0] += steps


_acrobot_step_serial = _serial(_acrobot_step)
_acrobot_rollout_serial = _serial(_acrobot_rollout)


def acrobot_step(state, elapsed, keys, round_, actions, max_steps, group_size, consts, obs, final_obs, reward,
                 terminated, truncated, parallel):
    """One Acrobot step of every env in place (see the module docstring)."""
    kernel = _acrobot_step if parallel else _acrobot_step_serial
    kernel(state, elapsed, keys, round_, actions, max_steps, group_size, consts, obs, final_obs, reward, terminated,
           truncated, _POW_EXPONENT)


def acrobot_rollout(state, elapsed, keys, round_, max_steps, group_size, consts, actions, action_key, n_actions,
                    reward_sum, episodes, parallel):
    """``T`` Acrobot steps of every env; ``actions [T, N]``, or ``[T, 0]``: drawn, env i's action at
    step t being ``below(action_key, t * N + i + 1, n_actions)``."""
    kernel = _acrobot_rollout if parallel else _acrobot_rollout_serial
    kernel(state, elapsed, keys, round_, max_steps, group_size, consts, actions, action_key, n_actions, reward_sum,
           episodes, _POW_EXPONENT)


# --- MountainCar --------------------------------------------------------------------------------
@njit(inline="always", error_model="numpy")
def _mountaincar_physics(p, v, action, c):
    """Gymnasium's ``MountainCarEnv.step`` arithmetic: the next ``(position, velocity)`` and terminated."""
    min_p, max_p, max_speed, goal, force, gravity = c
    v = v + (_like(p, action - 1) * force + np.cos(_like(p, 3.0) * p) * -gravity)
    v = _clip(v, -max_speed, max_speed)
    p = _clip(p + v, min_p, max_p)
    if p == min_p and v < _like(p, 0.0):  # inelastic wall on the left
        v = _like(p, 0.0)
    return p, v, p >= goal and v >= _like(p, 0.0)


@njit(inline="always")
def _mountaincar_draw(keys, group_size, rnd, i, ref):
    """Env ``i``'s reset position for round ``rnd`` (the high 32 bits of its one word), in ``ref``'s dtype."""
    key, k = _group_word(keys, group_size, rnd, i, 1)
    u, _ = uniform_pair(key, k + _ONE)
    return _like(ref, -0.6 + (-0.4 - -0.6) * u)


@njit(parallel=True, cache=True, error_model="numpy")
def _mountaincar_step(state, elapsed, keys, round_, actions, max_steps, group_size, c, obs, final_obs, reward,
                      terminated, truncated):
    """One step of every env: physics, final_obs, flags; finished envs take reset draw ``round_``."""
    n = actions.shape[0]
    rnd = np.uint64(round_[0])
    for b in prange((n + CHUNK - 1) // CHUNK):
        for i in range(np.uint64(b * CHUNK), np.uint64(min(n, b * CHUNK + CHUNK))):
            p, v, term = _mountaincar_physics(state[0, i], state[1, i], actions[i], c)
            final_obs[0, i] = p
            final_obs[1, i] = v
            e = elapsed[i] + 1
            trunc = e >= max_steps
            reward[i] = np.float32(-1.0)
            terminated[i] = term
            truncated[i] = trunc
            if term or trunc:
                p = _mountaincar_draw(keys, group_size, rnd, i, p)
                v = _like(p, 0.0)
                e = 0
            obs[0, i] = state[0, i] = p
            obs[1, i] = state[1, i] = v
            elapsed[i] = e
    round_[0] += 1


@njit(parallel=True, cache=True, error_model="numpy")
def _mountaincar_rollout(state, elapsed, keys, round_, max_steps, group_size, c, actions, action_key, n_actions,
                         reward_sum, episodes):
    """``T`` steps of every env, as :func:`_acrobot_rollout` does them."""
    steps = actions.shape[0]
    n = reward_sum.shape[0]
    drawn = actions.shape[1] == 0
    nn = np.uint64(n)
    akey = np.uint64(action_key)
    r0 = np.uint64(round_[0])
    for b in prange((n + CHUNK - 1) // CHUNK):
        for i in range(np.uint64(b * CHUNK), np.uint64(min(n, b * CHUNK + CHUNK))):
            p, v = state[0, i], state[1, i]
            e = np.int64(elapsed[i])
            ret = reward_sum[i]
            ended = episodes[i]
            for t in range(steps):
                a = below(akey, np.uint64(t) * nn + i + _ONE, n_actions) if drawn else actions[t, i]
                p, v, term = _mountaincar_physics(p, v, a, c)
                e += 1
                ret += np.float32(-1.0)
                if term or e >= max_steps:
                    p = _mountaincar_draw(keys, group_size, r0 + np.uint64(t), i, p)
                    v = _like(p, 0.0)
                    e = 0
                    ended += 1
            state[0, i] = p
            state[1, i] = v
            elapsed[i] = e
            reward_sum[i] = ret
            episodes[i] = ended
    round_[0] += steps


_mountaincar_step_serial = _serial(_mountaincar_step)
_mountaincar_rollout_serial = _serial(_mountaincar_rollout)


def mountaincar_step(state, elapsed, keys, round_, actions, max_steps, group_size, consts, obs, final_obs, reward,
                     terminated, truncated, parallel):
    """One MountainCar step of every env in place (see the module docstring)."""
    kernel = _mountaincar_step if parallel else _mountaincar_step_serial
    kernel(state, elapsed, keys, round_, actions, max_steps, group_size, consts, obs, final_obs, reward, terminated,
           truncated)


def mountaincar_rollout(state, elapsed, keys, round_, max_steps, group_size, consts, actions, action_key, n_actions,
                        reward_sum, episodes, parallel):
    """``T`` MountainCar steps of every env (actions as for :func:`acrobot_rollout`)."""
    kernel = _mountaincar_rollout if parallel else _mountaincar_rollout_serial
    kernel(state, elapsed, keys, round_, max_steps, group_size, consts, actions, action_key, n_actions, reward_sum,
           episodes)


STEP_KERNELS = {
    "acrobot": (_acrobot_step, _acrobot_step_serial, (_POW_EXPONENT,)),
    "mountaincar": (_mountaincar_step, _mountaincar_step_serial, ()),
}
"""prefix -> (threaded step kernel, serial step kernel, the arguments they take after ``truncated``):
what :mod:`fastdqn.kernels.collect_numba` fuses into the trainer's collect step."""
