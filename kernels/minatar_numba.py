"""MinAtar kernels for the CPU, in numba: Breakout, Asterix, Freeway and SpaceInvaders, each the
step fused with same-step autoreset and a multi-step rollout, for
:class:`fastdqn.vector.VectorEnv` (``backend="numba"``) over ``fastdqn.minatar.MinAtarDynamics``.

For each game ``<prefix>`` (``breakout``, ``asterix``, ``freeway``, ``space_invaders``):

* ``<prefix>_step(state, elapsed, keys, round_, actions, max_steps, group_size, consts, obs,
  final_obs, reward, terminated, truncated, parallel)``: one step of every env in place, the same
  as ``fastdqn.vector.pure_step`` over the torch game;
* ``<prefix>_rollout(state, elapsed, keys, round_, max_steps, group_size, consts, actions,
  action_key, n_actions, reward_sum, episodes, parallel)``: ``T`` steps, keeping only per-env sums
  (each env runs all its steps in registers, loaded and stored once).

Arrays: ``state [S, N]`` int32 (row 0 the previous action in the full six-action set, kept across
resets; then the torch game's rows), ``elapsed [N]`` int32, ``keys [G]`` uint64, ``round_ [1]``
uint64, ``actions [N]`` int64 (indices into the env's action set: ``consts[1]`` maps them to the
full set), ``consts = (sticky_action_prob float64, action map int64 [A], ramping bool)``,
``obs``/``final_obs [N, C, 10, 10]`` bool (any strides), ``reward [N]`` float32,
``terminated``/``truncated [N]`` bool.

Each game is a scalar re-statement, per env, of the rules of the torch game in
``fastdqn/minatar/<game>.py`` (see there), with 10 x 10 grids held as two uint64 bitboards (rows 0-4
in the first word, rows 5-9 in the second, cell ``(y, x)`` at bit ``10 y + x`` of its half).
The kernels assume states the games reach (grid cells 0 or 1, indices in range).

Uniforms: per env and round, ``U = n_uniforms + step_uniforms`` of
:func:`fastdqn.kernels.rng.reset_uniforms` (``W = ceil(U / 2)`` words, high then low 32 bits of
each): the first ``n_uniforms`` for a reset, then the sticky-action draw, then the game's step
draws; a step and the reset that may follow it take the same round's words, as
``fastdqn.vector.advance`` does. Only the words a step uses are computed.
"""

import types as types_module

import numpy as np
from numba import njit, prange

from .rng_numba import below, mix64, GOLDEN_U64

CHUNK = 256
"""Envs per task of the threaded kernels."""

_U = np.uint64
_ONE = _U(1)
_ZERO = _U(0)
_M10 = _U(0x3FF)
_M50 = _U((1 << 50) - 1)
_COL0 = _U(sum(1 << (10 * r) for r in range(5)))  # column 0 of the five rows of a half
_COL9 = _U(sum(1 << (10 * r + 9) for r in range(5)))
_NOT_COL0 = _U(((1 << 50) - 1) & ~sum(1 << (10 * r) for r in range(5)))
_NOT_COL9 = _U(((1 << 50) - 1) & ~sum(1 << (10 * r + 9) for r in range(5)))
_ROWS_1_3 = _U(sum(1 << c for c in range(10, 40)))  # Breakout's wall (all in the first half)
_WAVE = _U(sum(1 << (10 * r + c) for r in range(4) for c in range(2, 8)))  # SpaceInvaders' block
_S10 = _U(10)
_S40 = _U(40)
_INV_2_32 = 1.0 / 4294967296.0


# --- shared helpers ----------------------------------------------------------------------------
@njit(inline="always")
def _uniform(key, k, j):
    """Uniform ``j`` of the round whose word 0 is counter ``k + 1`` (see the module docstring)."""
    h = mix64(key + (k + _U(j // 2 + 1)) * GOLDEN_U64)
    return float(h & _U(0xFFFFFFFF)) * _INV_2_32 if j % 2 else float(h >> _U(32)) * _INV_2_32


@njit(inline="always")
def _popcount(x):
    x = x - ((x >> _ONE) & _U(0x5555555555555555))
    x = (x & _U(0x3333333333333333)) + ((x >> _U(2)) & _U(0x3333333333333333))
    x = (x + (x >> _U(4))) & _U(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * _U(0x0101010101010101)) >> _U(56))


@njit(inline="always")
def _bit(lo, hi, c):
    """Cell ``c = 10 y + x`` of the bitboard ``(lo, hi)``."""
    if c < 50:
        return (lo >> _U(c)) & _ONE != _ZERO
    return (hi >> _U(c - 50)) & _ONE != _ZERO


@njit(inline="always")
def _load_grid(sc, row, j):
    lo, hi = _ZERO, _ZERO
    for c in range(50):
        if sc[j, row + c] != 0:
            lo |= _ONE << _U(c)
        if sc[j, row + 50 + c] != 0:
            hi |= _ONE << _U(c)
    return lo, hi


@njit(inline="always")
def _store_grid(sc, row, j, lo, hi):
    for c in range(50):
        sc[j, row + c] = np.int32((lo >> _U(c)) & _ONE)
        sc[j, row + 50 + c] = np.int32((hi >> _U(c)) & _ONE)


@njit(inline="always")
def _write_grid(out, i, ch, lo, hi):
    for c in range(50):
        out[i, ch, c // 10, c % 10] = (lo >> _U(c)) & _ONE != _ZERO
        out[i, ch, 5 + c // 10, c % 10] = (hi >> _U(c)) & _ONE != _ZERO


@njit(inline="always")
def _clear(out, i, channels):
    for ch in range(channels):
        for y in range(10):
            for x in range(10):
                out[i, ch, y, x] = False


@njit(inline="always")
def _put(out, i, ch, y, x):
    """Set a cell that lies inside the grid (else nothing, as ``fastdqn.minatar.at`` does)."""
    if 0 <= y <= 9 and 0 <= x <= 9:
        out[i, ch, y, x] = True


@njit(inline="always")
def _copy_frame(src, dst, i, channels):
    for ch in range(channels):
        for y in range(10):
            for x in range(10):
                dst[i, ch, y, x] = src[i, ch, y, x]


@njit(inline="always")
def _sticky(a, prev, key, k, j, sticky):
    """The action played: ``a`` (mapped to the full set), or the previous one when uniform ``j`` is
    below the sticky-action probability."""
    return prev if _uniform(key, k, j) < sticky else a


@njit(inline="always")
def _gather(state, first, m):
    """Envs ``first .. first + m`` of ``state [S, N]`` as a ``[CHUNK, S]`` block (one row per env):
    reading the state row by row keeps to a few pages at a time."""
    sc = np.empty((CHUNK, state.shape[0]), np.int32)
    for r in range(state.shape[0]):
        for j in range(m):
            sc[j, r] = state[r, first + j]
    return sc


@njit(inline="always")
def _scatter(state, first, m, sc):
    for r in range(state.shape[0]):
        for j in range(m):
            state[r, first + j] = sc[j, r]


# The kernels of a game are these two templates compiled with the game's functions as globals
# (``_physics``, ``_load``, ...: see :func:`_kernels`); globals, not closure variables, so that
# numba's disk cache (which keys closures by their pickled contents) finds them again.
def _step_template(state, elapsed, keys, round_, actions, max_steps, group_size, c, obs, final_obs, reward,
                   terminated, truncated):
    n = actions.shape[0]
    gs = _U(group_size)
    rnd = _U(round_[0])
    sticky, amap, ramping = c
    for b in prange((n + CHUNK - 1) // CHUNK):
        first = b * CHUNK
        m = min(n, first + CHUNK) - first
        sc = _gather(state, first, m)
        for j in range(m):
            i = first + j
            iu = _U(i)
            key = keys[iu // gs]
            k = (rnd * gs + iu % gs) * _WORDS
            a = _sticky(amap[actions[i]], np.int64(sc[j, 0]), key, k, _N_RESET, sticky)
            g, r, term = _physics(_load(sc, j), a, ramping, key, k)
            _observe(final_obs, i, g)
            e = elapsed[i] + 1
            trunc = e >= max_steps
            reward[i] = np.float32(r)
            terminated[i] = term
            truncated[i] = trunc
            if term or trunc:
                g = _reset(key, k)
                e = 0
                _observe(obs, i, g)
            else:
                _copy_frame(final_obs, obs, i, _CHANNELS)
            sc[j, 0] = a
            _store(sc, j, g)
            elapsed[i] = e
        _scatter(state, first, m, sc)
    round_[0] += 1


def _rollout_template(state, elapsed, keys, round_, max_steps, group_size, c, actions, action_key, n_actions,
                      reward_sum, episodes):
    steps = actions.shape[0]
    n = reward_sum.shape[0]
    drawn = actions.shape[1] == 0
    nn = _U(n)
    akey = _U(action_key)
    gs = _U(group_size)
    r0 = _U(round_[0])
    sticky, amap, ramping = c
    for b in prange((n + CHUNK - 1) // CHUNK):
        first = b * CHUNK
        m = min(n, first + CHUNK) - first
        sc = _gather(state, first, m)
        for j in range(m):
            i = first + j
            iu = _U(i)
            key = keys[iu // gs]
            lane = iu % gs
            g = _load(sc, j)
            prev = np.int64(sc[j, 0])
            e = np.int64(elapsed[i])
            ret = reward_sum[i]
            ended = episodes[i]
            for t in range(steps):
                k = ((r0 + _U(t)) * gs + lane) * _WORDS
                a = below(akey, _U(t) * nn + iu + _ONE, n_actions) if drawn else actions[t, i]
                prev = _sticky(amap[a], prev, key, k, _N_RESET, sticky)
                g, r, term = _physics(g, prev, ramping, key, k)
                e += 1
                ret += np.float32(r)
                if term or e >= max_steps:
                    g = _reset(key, k)
                    e = 0
                    ended += 1
            sc[j, 0] = prev
            _store(sc, j, g)
            elapsed[i] = e
            reward_sum[i] = ret
            episodes[i] = ended
        _scatter(state, first, m, sc)
    round_[0] += steps


def _kernels(prefix, n_reset, words, channels, load, store, reset, physics, observe):
    """``<prefix>_step`` and ``<prefix>_rollout`` (threaded and serial) of one game from its
    scalar ``load(sc, j) -> g``, ``store(sc, j, g)`` (``sc [CHUNK, S]``: the chunk's states, one
    row per env, see :func:`_gather`), ``reset(key, k) -> g``, ``physics(g, a, ramping, key, k) ->
    (g, reward, terminal)`` and ``observe(out, i, g)``; ``n_reset`` reset uniforms, ``words`` words
    per round, ``channels`` observation channels."""
    env = dict(globals())
    env.update(_physics=physics, _load=load, _store=store, _reset=reset, _observe=observe, _N_RESET=n_reset,
               _WORDS=_U(words), _CHANNELS=channels)

    def compiled(template, name, parallel):
        fn = types_module.FunctionType(template.__code__, env, name)
        fn.__qualname__ = name
        return njit(parallel=parallel, cache=True, error_model="numpy", boundscheck=False)(fn)

    k_step = compiled(_step_template, f"_{prefix}_step", True)
    k_step_serial = compiled(_step_template, f"_{prefix}_step_serial", False)
    k_roll = compiled(_rollout_template, f"_{prefix}_rollout", True)
    k_roll_serial = compiled(_rollout_template, f"_{prefix}_rollout_serial", False)

    def entry_step(state, elapsed, keys, round_, actions, max_steps, group_size, consts, obs, final_obs, reward,
                   terminated, truncated, parallel):
        (k_step if parallel else k_step_serial)(state, elapsed, keys, round_, actions, max_steps, group_size, consts,
                                                obs, final_obs, reward, terminated, truncated)

    def entry_rollout(state, elapsed, keys, round_, max_steps, group_size, consts, actions, action_key, n_actions,
                      reward_sum, episodes, parallel):
        (k_roll if parallel else k_roll_serial)(state, elapsed, keys, round_, max_steps, group_size, consts, actions,
                                                action_key, n_actions, reward_sum, episodes)

    entry_step.__name__, entry_rollout.__name__ = f"{prefix}_step", f"{prefix}_rollout"
    return entry_step, entry_rollout


# --- Breakout ----------------------------------------------------------------------------------
# rows (after the previous action): ball x, y, direction, paddle, last x, y, strike, bricks [100]
# directions 0..3 up-left, up-right, down-right, down-left: dx -1 1 1 -1, dy -1 -1 1 1;
# flips: off a side wall d ^ 1, off the ceiling / a brick / straight back 3 - d, off a corner d ^ 2
@njit(cache=True)
def _breakout_load(sc, j):
    lo, hi = _load_grid(sc, 8, j)
    return (np.int64(sc[j, 1]), np.int64(sc[j, 2]), np.int64(sc[j, 3]), np.int64(sc[j, 4]),
            np.int64(sc[j, 5]), np.int64(sc[j, 6]), np.int64(sc[j, 7]), lo, hi)


@njit(inline="always")
def _breakout_store(sc, j, g):
    x, y, d, paddle, lx, ly, strike, lo, hi = g
    sc[j, 1], sc[j, 2], sc[j, 3], sc[j, 4] = np.int32(x), np.int32(y), np.int32(d), np.int32(paddle)
    sc[j, 5], sc[j, 6], sc[j, 7] = np.int32(lx), np.int32(ly), np.int32(strike)
    _store_grid(sc, 8, j, lo, hi)


@njit(cache=True)
def _breakout_reset(key, k):
    right = _uniform(key, k, 0) >= 0.5
    x = np.int64(9) if right else np.int64(0)
    return x, np.int64(3), np.int64(3) if right else np.int64(2), np.int64(4), x, np.int64(3), np.int64(0), \
        _ROWS_1_3, _ZERO


@njit(cache=True)
def _breakout_physics(g, a, ramping, key, k):
    x, y, d, paddle, _, _, strike, lo, hi = g
    if a == 1:
        paddle = max(paddle - 1, 0)
    elif a == 3:
        paddle = min(paddle + 1, 9)
    nx = x + (1 if d == 1 or d == 2 else -1)
    ny = y + (-1 if d < 2 else 1)
    if nx < 0 or nx > 9:
        nx = min(max(nx, 0), 9)
        d = d ^ 1
    ceiling = ny < 0
    ny = max(ny, 0)
    entered = ny * 10 + nx
    brick_here = _bit(lo, hi, entered)
    hit_brick = not ceiling and brick_here
    scores = hit_brick and strike != 1
    bottom = not ceiling and not brick_here and ny == 9
    straight = bottom and x == paddle
    corner = bottom and not straight and nx == paddle
    terminal = bottom and not straight and not corner
    if ceiling or scores or straight:
        d = 3 - d
    elif corner:
        d = d ^ 2
    if scores or straight or corner:
        ny = y
    if scores:
        if entered < 50:
            lo &= ~(_ONE << _U(entered))
        else:
            hi &= ~(_ONE << _U(entered - 50))
    elif bottom and lo == _ZERO and hi == _ZERO:
        lo |= _ROWS_1_3
    g = (nx, ny, d, paddle, x, y, np.int64(1) if hit_brick else np.int64(0), lo, hi)
    return g, 1 if scores else 0, terminal


@njit(inline="always")
def _breakout_observe(out, i, g):
    x, y, _, paddle, lx, ly, _, lo, hi = g
    _clear(out, i, 3)
    _put(out, i, 0, 9, paddle)
    _put(out, i, 1, y, x)
    _put(out, i, 2, ly, lx)
    _write_grid(out, i, 3, lo, hi)


breakout_step, breakout_rollout = _kernels("breakout", 1, 1, 4, _breakout_load, _breakout_store, _breakout_reset,
                                           _breakout_physics, _breakout_observe)
