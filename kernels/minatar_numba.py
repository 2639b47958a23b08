"""MinAtar kernels for the CPU, in numba: Breakout, Asterix, Freeway, SpaceInvaders and Seaquest, each the
step fused with same-step autoreset and a multi-step rollout, for
:class:`fastdqn.vector.VectorEnv` (``backend="numba"``) over ``fastdqn.minatar.MinAtarDynamics``.

For each game ``<prefix>`` (``breakout``, ``asterix``, ``freeway``, ``space_invaders``, ``seaquest``):

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
in the first word, rows 5-9 in the second, cell ``(y, x)`` at bit ``10 y + x`` of its half);
Seaquest's state (303 rows) is updated in place in the env's row of the chunk instead.
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
from numba.cpython.unsafe.numbers import trailing_zeros

from .rng_numba import GOLDEN_U64, below, mix64

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
def _byte(p, j):
    return (p >> np.int64(8 * j)) & np.int64(0xFF)


@njit(inline="always")
def _with_byte(p, j, v):
    return (p & ~(np.int64(0xFF) << np.int64(8 * j))) | (np.int64(v) << np.int64(8 * j))


_SPREAD = np.array([sum(((m >> b) & 1) << (8 * b) for b in range(8)) for m in range(256)], np.int64)
"""Bit ``b`` of the index as byte ``b`` (0 or 1) of the entry."""


@njit(inline="always")
def _bytes_equal(p, v):
    """The bytes of ``p`` equal to ``v``, as a bit mask."""
    m = np.int64(0)
    for j in range(8):
        m |= np.int64(_byte(p, j) == v) << np.int64(j)
    return m


@njit(inline="always")
def _sticky(a, prev, key, k, j, sticky):
    """The action played: ``a`` (mapped to the full set), or the previous one when uniform ``j`` is
    below the sticky-action probability."""
    return prev if _uniform(key, k, j) < sticky else a


@njit(inline="always")
def _gather(state, first, m):
    """Envs ``first .. first + m`` of ``state [S, N]`` as a ``[CHUNK, S + 1]`` block (one row per env,
    and a spare column a game may use while the chunk runs: Seaquest keeps its live-enemy mask there):
    reading the state row by row keeps to a few pages at a time."""
    sc = np.empty((CHUNK, state.shape[0] + 1), np.int32)
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
                g = _reset(g, key, k)
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
                    g = _reset(g, key, k)
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
    row per env, see :func:`_gather`), ``reset(g, key, k) -> g`` (a fresh start, which may reuse
    ``g``'s memory), ``physics(g, a, ramping, key, k) -> (g, reward, terminal)`` and
    ``observe(out, i, g)``; ``n_reset`` reset uniforms, ``words`` words per round, ``channels``
    observation channels."""
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
def _breakout_reset(g, key, k):
    right = _uniform(key, k, 0) >= 0.5
    x = np.int64(9) if right else np.int64(0)
    return x, np.int64(3), np.int64(3) if right else np.int64(2), np.int64(4), x, np.int64(3), np.int64(0), \
        _ROWS_1_3, _ZERO


@njit(cache=True)
def _breakout_physics(g, a, ramping, key, k):
    x, y, d, paddle, _, _, strike, lo, hi = g
    paddle = min(max(paddle + np.int64(a == 3) - np.int64(a == 1), 0), 9)  # branch-free: actions are random
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


# --- Asterix -----------------------------------------------------------------------------------
# rows (after the previous action): player x, y, spawn interval, spawn timer, move interval, move
# timer, ramp timer, ramp index, then per slot (grid row slot + 1) alive [8], x [8], right [8], gold [8].
# Held as: the eight scalars, alive/right/gold as 8-bit masks, the columns 8 bits each in one int.
_GOLD_SHARE = 1.0 / 3.0


@njit(cache=True)
def _asterix_load(sc, j):
    alive, right, gold, xs = np.int64(0), np.int64(0), np.int64(0), np.int64(0)
    for s in range(8):
        if sc[j, 9 + s] == 1:
            alive |= np.int64(1) << np.int64(s)
        if sc[j, 25 + s] == 1:
            right |= np.int64(1) << np.int64(s)
        if sc[j, 33 + s] == 1:
            gold |= np.int64(1) << np.int64(s)
        xs = _with_byte(xs, s, sc[j, 17 + s])
    return (np.int64(sc[j, 1]), np.int64(sc[j, 2]), np.int64(sc[j, 3]), np.int64(sc[j, 4]), np.int64(sc[j, 5]),
            np.int64(sc[j, 6]), np.int64(sc[j, 7]), np.int64(sc[j, 8]), alive, xs, right, gold)


@njit(inline="always")
def _asterix_store(sc, j, g):
    px, py, sspd, stim, mspd, mtim, rtim, ridx, alive, xs, right, gold = g
    sc[j, 1], sc[j, 2], sc[j, 3], sc[j, 4] = np.int32(px), np.int32(py), np.int32(sspd), np.int32(stim)
    sc[j, 5], sc[j, 6], sc[j, 7], sc[j, 8] = np.int32(mspd), np.int32(mtim), np.int32(rtim), np.int32(ridx)
    for s in range(8):
        on = (alive >> np.int64(s)) & np.int64(1)
        sc[j, 9 + s] = np.int32(on)
        sc[j, 17 + s] = np.int32(_byte(xs, s) * on)
        sc[j, 25 + s] = np.int32(((right >> np.int64(s)) & np.int64(1)) * on)
        sc[j, 33 + s] = np.int32(((gold >> np.int64(s)) & np.int64(1)) * on)


@njit(cache=True)
def _asterix_reset(g, key, k):
    z = np.int64(0)
    return (np.int64(5), np.int64(5), np.int64(10), np.int64(10), np.int64(5), np.int64(5), np.int64(100), z, z, z,
            z, z)


@njit(cache=True)
def _asterix_physics(g, a, ramping, key, k):
    px, py, sspd, stim, mspd, mtim, rtim, ridx, alive, xs, right, gold = g
    one = np.int64(1)
    if stim == 0:  # 1. spawn into the free row of rank floor(u2 * free rows)
        free = ~alive & np.int64(0xFF)
        nfree = np.int64(0)
        for s in range(8):
            nfree += (free >> np.int64(s)) & one
        if nfree > 0:
            from_left = _uniform(key, k, 2) < 0.5
            is_gold = _uniform(key, k, 3) < _GOLD_SHARE
            rank = min(np.int64(np.floor(_uniform(key, k, 4) * nfree)), 7)
            seen = np.int64(0)
            for s in range(8):
                if (free >> np.int64(s)) & one:
                    if seen == rank:
                        bit = one << np.int64(s)
                        alive |= bit
                        xs = _with_byte(xs, s, 0 if from_left else 9)
                        right = (right | bit) if from_left else (right & ~bit)
                        gold = (gold | bit) if is_gold else (gold & ~bit)
                        break
                    seen += 1
        stim = sspd
    px = min(max(px + np.int64(a == 3) - np.int64(a == 1), 0), 9)  # 2. the player's move (branch-free)
    py = min(max(py + np.int64(a == 4) - np.int64(a == 2), 1), 8)
    moving = mtim == 0
    got = 0
    hit = False
    bit = one << (py - 1)  # 3. contact: only the object of the player's row can touch it
    if alive & bit and _byte(xs, py - 1) == px:
        if gold & bit:
            got += 1
            alive &= ~bit
        else:
            hit = True
    if moving:  # 4. every object moves (all eight at once, a byte each); those leaving the grid are gone
        go_right, go_left = alive & right, alive & ~right
        stay = alive & ~((go_right & _bytes_equal(xs, 9)) | (go_left & _bytes_equal(xs, 0)))
        xs = xs + _SPREAD[go_right & stay] - _SPREAD[go_left & stay]  # no byte under- or overflows
        alive = stay
        if alive & bit and _byte(xs, py - 1) == px:  # contact again
            if gold & bit:
                got += 1
                alive &= ~bit
            else:
                hit = True
        mtim = mspd
    if ramping:  # 6. difficulty ramp
        active = sspd > 1 or mspd > 1
        ramp = active and rtim < 0
        if ramp:
            rtim = np.int64(100)
            if mspd > 1 and ridx % 2 == 1:
                mspd -= 1
            if sspd > 1:
                sspd -= 1
            ridx += 1
        elif active and rtim >= 0:
            rtim -= 1
    return (px, py, sspd, stim - 1, mspd, mtim - 1, rtim, ridx, alive, xs, right, gold), got, hit


@njit(inline="always")
def _asterix_observe(out, i, g):
    px, py, _, _, _, _, _, _, alive, xs, right, gold = g
    _clear(out, i, 4)
    _put(out, i, 0, py, px)
    for s in range(8):
        bit = np.int64(1) << np.int64(s)
        if alive & bit:
            x = _byte(xs, s)
            _put(out, i, 3 if gold & bit else 1, s + 1, x)
            _put(out, i, 2, s + 1, x - 1 if right & bit else x + 1)


asterix_step, asterix_rollout = _kernels("asterix", 1, 3, 4, _asterix_load, _asterix_store, _asterix_reset,
                                         _asterix_physics, _asterix_observe)


# --- Freeway -----------------------------------------------------------------------------------
# rows (after the previous action): chicken row, move cooldown, time left, then per car (lane car + 1)
# column [8], countdown [8], signed speed [8]; held as three scalars and three ints of 8 bytes
# (the speeds biased by 8), plus the speeds' sizes (8 bytes) and the right-moving cars (8 bits).
@njit(inline="always")
def _freeway_sizes(speeds):
    """The sizes of the packed biased speeds (8 bytes), and the positive ones as a bit mask."""
    sizes, forward = np.int64(0), np.int64(0)
    for c in range(8):
        v = _byte(speeds, c) - 8
        sizes |= abs(v) << np.int64(8 * c)
        forward |= np.int64(v > 0) << np.int64(c)
    return sizes, forward


@njit(inline="always")
def _freeway_cars(key, k, first):
    """Signed speeds (biased by 8, packed) from uniforms ``first .. first + 15``; their countdowns
    start at the speeds' sizes."""
    speeds = np.int64(0)
    for c in range(8):
        speed = 1 + np.int64(np.floor(_uniform(key, k, first + c) * 5.0))
        d = _uniform(key, k, first + 8 + c)
        sign = (1 if d > 0.5 else 0) - (1 if d < 0.5 else 0)
        speeds = _with_byte(speeds, c, speed * sign + 8)
    return speeds


@njit(cache=True)
def _freeway_load(sc, j):
    xs, timers, speeds = np.int64(0), np.int64(0), np.int64(0)
    for c in range(8):
        xs = _with_byte(xs, c, sc[j, 4 + c])
        timers = _with_byte(timers, c, sc[j, 12 + c])
        speeds = _with_byte(speeds, c, sc[j, 20 + c] + 8)
    sizes, forward = _freeway_sizes(speeds)
    return np.int64(sc[j, 1]), np.int64(sc[j, 2]), np.int64(sc[j, 3]), xs, timers, speeds, sizes, forward


@njit(inline="always")
def _freeway_store(sc, j, g):
    pos, cool, time, xs, timers, speeds, _, _ = g
    sc[j, 1], sc[j, 2], sc[j, 3] = np.int32(pos), np.int32(cool), np.int32(time)
    for c in range(8):
        sc[j, 4 + c] = np.int32(_byte(xs, c))
        sc[j, 12 + c] = np.int32(_byte(timers, c))
        sc[j, 20 + c] = np.int32(_byte(speeds, c) - 8)


@njit(cache=True)
def _freeway_reset(g, key, k):
    speeds = _freeway_cars(key, k, 0)
    sizes, forward = _freeway_sizes(speeds)
    return np.int64(9), np.int64(3), np.int64(2500), np.int64(0), sizes, speeds, sizes, forward


@njit(cache=True)
def _freeway_physics(g, a, ramping, key, k):
    pos, cool, time, xs, timers, speeds, sizes, forward = g
    if time < 0:  # an ended episode: nothing changes
        return g, 0, True
    up, down = np.int64(cool == 0 and a == 2), np.int64(cool == 0 and a == 4)  # branch-free
    pos = min(max(pos - up + down, 0), 9)
    cool = np.int64(3) if up + down else cool
    crossed = pos == 0
    if crossed:
        pos = np.int64(9)
        speeds = _freeway_cars(key, k, 17)
        sizes, forward = _freeway_sizes(speeds)
        timers = sizes
    # the cars whose countdown reads 0 move a column (wrapping around), their countdowns restart at
    # their speeds' sizes; the others count down: all eight at once, a byte each
    due = _bytes_equal(timers, 0)
    ahead, back = due & forward, due & ~forward & np.int64(0xFF)
    wrap_ahead, wrap_back = ahead & _bytes_equal(xs, 9), back & _bytes_equal(xs, 0)
    old = xs
    xs = (xs + _SPREAD[ahead & ~wrap_ahead] + 9 * _SPREAD[wrap_back]) - (_SPREAD[back & ~wrap_back]
                                                                        + 9 * _SPREAD[wrap_ahead])
    timers = timers - _SPREAD[~due & np.int64(0xFF)] + (sizes & (_SPREAD[due] * np.int64(0xFF)))
    if 1 <= pos <= 8 and (_byte(old, pos - 1) == 4 or _byte(xs, pos - 1) == 4):
        pos = np.int64(9)
    if cool > 0:
        cool -= 1
    time -= 1
    return (pos, cool, time, xs, timers, speeds, sizes, forward), 1 if crossed else 0, time < 0


@njit(inline="always")
def _freeway_observe(out, i, g):
    pos, _, _, xs, _, speeds, _, _ = g
    _clear(out, i, 7)
    _put(out, i, 0, pos, 4)
    carried = np.int64(0)
    for c in range(8):
        x, speed = _byte(xs, c), _byte(speeds, c) - 8
        _put(out, i, 1, c + 1, x)
        if speed != 0:
            carried = abs(speed)
        if carried > 0:
            _put(out, i, 1 + carried, c + 1, (x - (1 if speed > 0 else -1)) % 10)


freeway_step, freeway_rollout = _kernels("freeway", 16, 17, 7, _freeway_load, _freeway_store, _freeway_reset,
                                         _freeway_physics, _freeway_observe)


# --- SpaceInvaders -----------------------------------------------------------------------------
# rows (after the previous action): cannon column, heading (-1 left, +1 right), move timer, fire timer,
# cool-down, ramp index, aliens [100], cannon shots [100], alien shots [100] (three bitboards)
@njit(inline="always")
def _roll_left(w):
    """Every row of a half one column left, column 0 wrapping to 9."""
    return ((w >> _ONE) & _NOT_COL9) | ((w & _COL0) << _U(9))


@njit(inline="always")
def _roll_right(w):
    return ((w << _ONE) & _NOT_COL0) | ((w & _COL9) >> _U(9))


@njit(cache=True)
def _space_invaders_load(sc, j):
    al_lo, al_hi = _load_grid(sc, 7, j)
    sh_lo, sh_hi = _load_grid(sc, 107, j)
    as_lo, as_hi = _load_grid(sc, 207, j)
    return (np.int64(sc[j, 1]), np.int64(sc[j, 2]), np.int64(sc[j, 3]), np.int64(sc[j, 4]), np.int64(sc[j, 5]),
            np.int64(sc[j, 6]), al_lo, al_hi, sh_lo, sh_hi, as_lo, as_hi)


@njit(inline="always")
def _space_invaders_store(sc, j, g):
    pos, heading, mtim, ftim, cool, ramp, al_lo, al_hi, sh_lo, sh_hi, as_lo, as_hi = g
    sc[j, 1], sc[j, 2], sc[j, 3] = np.int32(pos), np.int32(heading), np.int32(mtim)
    sc[j, 4], sc[j, 5], sc[j, 6] = np.int32(ftim), np.int32(cool), np.int32(ramp)
    _store_grid(sc, 7, j, al_lo, al_hi)
    _store_grid(sc, 107, j, sh_lo, sh_hi)
    _store_grid(sc, 207, j, as_lo, as_hi)


@njit(cache=True)
def _space_invaders_reset(g, key, k):
    return (np.int64(5), np.int64(-1), np.int64(12), np.int64(10), np.int64(0), np.int64(0), _WAVE, _ZERO, _ZERO,
            _ZERO, _ZERO, _ZERO)


@njit(cache=True)
def _space_invaders_physics(g, a, ramping, key, k):
    pos, heading, mtim, ftim, cool, ramp, al_lo, al_hi, sh_lo, sh_hi, as_lo, as_hi = g
    fire = a == 5 and cool == 0
    fired_at = pos
    pos = min(max(pos + np.int64(a == 3) - np.int64(a == 1), 0), 9)  # branch-free
    if fire:
        cool = np.int64(5)
    # shots move: the cannon's up (the new one lands on row 8), the aliens' down
    sh_lo = (sh_lo >> _S10) | ((sh_hi & _M10) << _S40)
    sh_hi = sh_hi >> _S10
    if fire:
        sh_hi |= _ONE << _U(30 + fired_at)
    as_hi = ((as_hi << _S10) & _M50) | (as_lo >> _S40)
    as_lo = (as_lo << _S10) & _M50
    terminal = ((as_hi | al_hi) >> _U(40 + pos)) & _ONE != _ZERO
    # the aliens move
    interval = 12 - ramp
    if mtim == 0:
        mtim = min(_popcount(al_lo) + _popcount(al_hi), interval)
        wall = _COL0 if heading < 0 else _COL9
        if (al_lo | al_hi) & wall != _ZERO:
            if al_hi >> _S40 != _ZERO:
                terminal = True
            al_lo, al_hi = ((al_lo << _S10) & _M50) | (al_hi >> _S40), ((al_hi << _S10) & _M50) | (al_lo >> _S40)
            heading = -heading
        elif heading < 0:
            al_lo, al_hi = _roll_left(al_lo), _roll_left(al_hi)
        else:
            al_lo, al_hi = _roll_right(al_lo), _roll_right(al_hi)
    if (al_hi >> _U(40 + pos)) & _ONE != _ZERO:
        terminal = True
    # an alien fires: the lowest alien of the occupied column nearest the cannon (left on ties)
    if ftim == 0:
        ftim = np.int64(10)
        both = al_lo | al_hi
        occupied = (both | (both >> _S10) | (both >> _U(20)) | (both >> _U(30)) | (both >> _S40)) & _M10
        if occupied != _ZERO:
            col = np.int64(-1)
            for d in range(10):
                if pos - d >= 0 and (occupied >> _U(pos - d)) & _ONE != _ZERO:
                    col = pos - d
                    break
                if pos + d <= 9 and (occupied >> _U(pos + d)) & _ONE != _ZERO:
                    col = pos + d
                    break
            for r in range(9, -1, -1):
                if _bit(al_lo, al_hi, r * 10 + col):
                    if r < 5:
                        as_lo |= _ONE << _U(r * 10 + col)
                    else:
                        as_hi |= _ONE << _U(r * 10 + col - 50)
                    break
    # hits
    h_lo, h_hi = al_lo & sh_lo, al_hi & sh_hi
    reward = _popcount(h_lo) + _popcount(h_hi)
    al_lo, al_hi, sh_lo, sh_hi = al_lo & ~h_lo, al_hi & ~h_hi, sh_lo & ~h_lo, sh_hi & ~h_hi
    # timers, and a new wave when the block is gone
    if cool > 0:
        cool -= 1
    if al_lo == _ZERO and al_hi == _ZERO:
        if ramping and interval > 6:
            ramp += 1
        al_lo = _WAVE
    return (pos, heading, mtim - 1, ftim - 1, cool, ramp, al_lo, al_hi, sh_lo, sh_hi, as_lo, as_hi), reward, terminal


@njit(inline="always")
def _space_invaders_observe(out, i, g):
    pos, heading, _, _, _, _, al_lo, al_hi, sh_lo, sh_hi, as_lo, as_hi = g
    _clear(out, i, 1)
    out[i, 0, 9, min(max(pos, 0), 9)] = True
    _write_grid(out, i, 1, al_lo, al_hi)
    left = heading < 0
    _write_grid(out, i, 2, al_lo if left else _ZERO, al_hi if left else _ZERO)
    _write_grid(out, i, 3, _ZERO if left else al_lo, _ZERO if left else al_hi)
    _write_grid(out, i, 4, sh_lo, sh_hi)
    _write_grid(out, i, 5, as_lo, as_hi)


space_invaders_step, space_invaders_rollout = _kernels(
    "space_invaders", 1, 1, 6, _space_invaders_load, _space_invaders_store, _space_invaders_reset,
    _space_invaders_physics, _space_invaders_observe)


# --- Seaquest ----------------------------------------------------------------------------------
# The state row of an env (``sc[j]``: the previous action, then the torch game's rows: scalars, two
# player-shot slots, two diver slots, the enemy shots as column masks per grid row and heading, 32
# enemy slots with their entry numbers) is the game state itself: the physics updates it in place.
(_SQ_X, _SQ_Y, _SQ_RIGHT, _SQ_OXYGEN, _SQ_DIVERS, _SQ_SURFACED, _SQ_COOL, _SQ_SPAWN_SPEED, _SQ_SPAWN_TIMER,
 _SQ_DIVER_TIMER, _SQ_MOVE_SPEED, _SQ_RAMP, _SQ_NEXT_SEQ) = range(1, 14)
_SQ_SHOT = 14  # alive, x, y, right: 2 slots each, slot 0 the older
_SQ_DIVER = 22  # alive, x, y, right, move timer: 2 slots each
_SQ_ESHOTS = 32  # right-moving masks of grid rows 1-8, then the left-moving ones
_SQ_ENEMY = 48  # alive, x, y, right, submarine, move timer, fire timer, entry number: 32 slots each
_SQ_SLOTS = 32
_SQ_ROWS = _SQ_ENEMY + 8 * _SQ_SLOTS
_SQ_MASK = _SQ_ROWS  # the chunk's spare column: the live enemy slots as a bit mask, kept up to date by the physics
_SQ_ALL = np.int64(0xFFFFFFFF)


@njit(inline="always")
def _sq(field, slot):
    """Index of enemy field ``field`` (0 alive .. 7 entry number) of ``slot``."""
    return _SQ_ENEMY + field * _SQ_SLOTS + slot


@njit(inline="always")
def _sq_free(g, first, fields):
    """Empty the shot or diver slot at ``first`` (its alive flag; its fields ``2, 4, ..`` rows on)."""
    for f in range(fields):
        g[first + 2 * f] = 0


@njit(inline="always")
def _seaquest_load(sc, j):
    g = sc[j]
    g[_SQ_MASK] = _sq_alive(g)
    return g


@njit(inline="always")
def _seaquest_store(sc, j, g):
    """Nothing to do: ``g`` is ``sc[j]`` itself (physics and reset update it in place)."""


@njit(inline="always")
def _sq_alive(g):
    """The live enemy slots as a bit mask."""
    am = np.int64(0)
    for s in range(_SQ_SLOTS):
        am |= np.int64(g[_sq(0, s)]) << s
    return am


@njit(inline="always")
def _sq_row(key, k, j):
    """A spawn row 1-8 from uniform ``j``."""
    return 1 + min(max(np.int64(np.floor(_uniform(key, k, j) * 8.0)), 0), 7)


@njit(inline="always")
def _seaquest_reset(g, key, k):
    g[1:] = 0  # in place: no allocation per episode
    g[_SQ_X], g[_SQ_OXYGEN], g[_SQ_SURFACED] = 5, 200, 1
    g[_SQ_SPAWN_SPEED], g[_SQ_SPAWN_TIMER], g[_SQ_DIVER_TIMER], g[_SQ_MOVE_SPEED] = 20, 20, 30, 5
    return g


@njit(inline="always")
def _seaquest_pick(g, am, x, y, prefer_sub, newest):
    """The enemy slot of ``am`` (alive-mask) at ``(y, x)`` the reference reaches first: of the preferred kind
    if any is there, the newest or oldest (entry number); -1 if none."""
    best, best_pref, best_seq = -1, False, 0
    while am:
        s = trailing_zeros(am)
        am &= am - 1
        if g[_sq(1, s)] == x and g[_sq(2, s)] == y:
            pref = (g[_sq(4, s)] == 1) == prefer_sub
            seq = g[_sq(7, s)]
            if best < 0 or (pref and not best_pref) or (pref == best_pref and (seq > best_seq) == newest):
                best, best_pref, best_seq = s, pref, seq
    return best


@njit(inline="always")
def _seaquest_physics(g, a, ramping, key, k):
    am = np.int64(g[_SQ_MASK]) & _SQ_ALL
    move_speed, spawn_speed = np.int64(g[_SQ_MOVE_SPEED]), np.int64(g[_SQ_SPAWN_SPEED])
    # 1. enemy spawn into the first free slot, unless the row holds an enemy heading the other way
    if g[_SQ_SPAWN_TIMER] == 0:
        from_left = _uniform(key, k, 2) < 0.5
        row = _sq_row(key, k, 4)
        blocked = False
        m = am
        while m:
            s = trailing_zeros(m)
            m &= m - 1
            if g[_sq(2, s)] == row and (g[_sq(3, s)] == 1) != from_left:
                blocked = True
        if not blocked and am != _SQ_ALL:
            s = trailing_zeros(~am)
            am |= np.int64(1) << s
            g[_sq(0, s)], g[_sq(1, s)], g[_sq(2, s)] = 1, 0 if from_left else 9, row
            g[_sq(3, s)], g[_sq(4, s)] = 1 if from_left else 0, 1 if _uniform(key, k, 3) < 1.0 / 3.0 else 0
            g[_sq(5, s)], g[_sq(6, s)], g[_sq(7, s)] = move_speed, 10, g[_SQ_NEXT_SEQ]
            g[_SQ_NEXT_SEQ] += 1
        g[_SQ_SPAWN_TIMER] = spawn_speed
    was = am
    # 2. diver spawn (slot 1 when slot 0 is taken)
    if g[_SQ_DIVER_TIMER] == 0:
        d = _SQ_DIVER + (1 if g[_SQ_DIVER] == 1 else 0)
        left = _uniform(key, k, 5) < 0.5
        g[d], g[d + 2], g[d + 4] = 1, 0 if left else 9, _sq_row(key, k, 6)
        g[d + 6], g[d + 8] = 1 if left else 0, 5
        g[_SQ_DIVER_TIMER] = 30
    # 3. the player's action
    px, py, facing = np.int64(g[_SQ_X]), np.int64(g[_SQ_Y]), np.int64(g[_SQ_RIGHT])
    if a == 5 and g[_SQ_COOL] == 0:
        b = _SQ_SHOT + (1 if g[_SQ_SHOT] == 1 else 0)
        g[b], g[b + 2], g[b + 4], g[b + 6] = 1, px, py, facing
        g[_SQ_COOL] = 5
    left, right = np.int64(a == 1), np.int64(a == 3)  # branch-free: actions are random
    px = min(max(px + right - left, 0), 9)
    py = min(max(py + np.int64(a == 4) - np.int64(a == 2), 0), 8)
    facing = right | (facing & (1 - left))
    # 4. player shots move, the newer first; each removes the first-come fish, else submarine, on its cell
    reward = 0
    for i in (1, 0):
        b = _SQ_SHOT + i
        if g[b] == 1:
            g[b + 2] += 1 if g[b + 6] == 1 else -1
            if g[b + 2] < 0 or g[b + 2] > 9:
                _sq_free(g, b, 4)
            else:
                s = _seaquest_pick(g, am, g[b + 2], g[b + 4], False, False)
                if s >= 0:
                    am &= ~(np.int64(1) << s)
                    _sq_free(g, b, 4)
                    reward += 1
    # 5. divers, the newer first
    divers = np.int64(g[_SQ_DIVERS])
    for i in (1, 0):
        d = _SQ_DIVER + i
        if g[d] != 1:
            continue
        room = divers < 6
        if room and g[d + 2] == px and g[d + 4] == py:
            divers += 1
            _sq_free(g, d, 5)
        elif g[d + 8] == 0:
            g[d + 8] = 5
            g[d + 2] += 1 if g[d + 6] == 1 else -1
            if g[d + 2] < 0 or g[d + 2] > 9:
                _sq_free(g, d, 5)
            elif room and g[d + 2] == px and g[d + 4] == py:
                divers += 1
                _sq_free(g, d, 5)
        else:
            g[d + 8] -= 1
    # 6. enemies: contact, moves, shots meeting a moved enemy (older shot first, to the submarine, else fish,
    # that came last), then every submarine there at the start of the phase fires when its timer reads 0
    terminal = False
    shooters, can_hit = np.int64(0), np.int64(0)
    m = am
    while m:
        s = trailing_zeros(m)
        m &= m - 1
        bit = np.int64(1) << s
        x, y = g[_sq(1, s)], g[_sq(2, s)]
        if g[_sq(4, s)] == 1:
            shooters |= bit
        if x == px and y == py:
            terminal = True
        if g[_sq(5, s)] == 0:
            g[_sq(5, s)] = move_speed
            x += 1 if g[_sq(3, s)] == 1 else -1
            g[_sq(1, s)] = x
            if x < 0 or x > 9:
                am &= ~bit
            elif x == px and y == py:
                terminal = True
            else:
                can_hit |= bit
        else:
            g[_sq(5, s)] -= 1
    for i in (0, 1):
        b = _SQ_SHOT + i
        if g[b] == 1:
            s = _seaquest_pick(g, can_hit, g[b + 2], g[b + 4], True, True)
            if s >= 0:
                can_hit &= ~(np.int64(1) << s)
                am &= ~(np.int64(1) << s)
                _sq_free(g, b, 4)
                reward += 1
    while shooters:
        s = trailing_zeros(shooters)
        shooters &= shooters - 1
        if g[_sq(6, s)] == 0:
            g[_sq(6, s)] = 10
            x = g[_sq(1, s)]
            if 0 <= x <= 9:
                r = _SQ_ESHOTS + g[_sq(2, s)] - 1 + (0 if g[_sq(3, s)] == 1 else 8)
                g[r] |= 1 << x
        else:
            g[_sq(6, s)] -= 1
    # 7. enemy shots move; one on the player's cell before or after the move ends the episode
    if py >= 1 and ((g[_SQ_ESHOTS + py - 1] | g[_SQ_ESHOTS + 7 + py]) >> px) & 1:
        terminal = True
    for r in range(8):
        g[_SQ_ESHOTS + r] = (g[_SQ_ESHOTS + r] << 1) & 1023
        g[_SQ_ESHOTS + 8 + r] >>= 1
    if py >= 1 and ((g[_SQ_ESHOTS + py - 1] | g[_SQ_ESHOTS + 7 + py]) >> px) & 1:
        terminal = True
    # 8. timers, oxygen, surfacing and the ramp
    for t in (_SQ_SPAWN_TIMER, _SQ_DIVER_TIMER, _SQ_COOL):
        if g[t] > 0:
            g[t] -= 1
    oxygen = np.int64(g[_SQ_OXYGEN])
    if oxygen <= 0:
        terminal = True
    if py > 0:
        oxygen -= 1
        g[_SQ_SURFACED] = 0
    elif g[_SQ_SURFACED] == 0:
        if divers == 0:
            terminal = True
        else:
            if divers == 6:
                reward += oxygen * 10 // 200
                divers = 0
            divers -= 1
            oxygen = 200
            g[_SQ_SURFACED] = 1
            if ramping and (spawn_speed > 1 or move_speed > 2):
                if move_speed > 2 and g[_SQ_RAMP] % 2 == 1:
                    g[_SQ_MOVE_SPEED] = move_speed - 1
                if spawn_speed > 1:
                    g[_SQ_SPAWN_SPEED] = spawn_speed - 1
                g[_SQ_RAMP] += 1
    g[_SQ_X], g[_SQ_Y], g[_SQ_RIGHT], g[_SQ_OXYGEN], g[_SQ_DIVERS] = px, py, facing, oxygen, divers
    # slots oldest first again (the newer of two shots or divers moves to slot 0); the dead are zeroed
    for first, fields in ((_SQ_SHOT, 4), (_SQ_DIVER, 5)):
        if g[first] == 0 and g[first + 1] == 1:
            for f in range(fields):
                g[first + 2 * f] = g[first + 2 * f + 1]
            _sq_free(g, first + 1, fields)
    dead = was & ~am
    while dead:
        s = trailing_zeros(dead)
        dead &= dead - 1
        for f in range(8):
            g[_sq(f, s)] = 0
    g[_SQ_MASK] = np.int32(am)  # bit 31 wraps to the sign: read back masked with _SQ_ALL
    return g, reward, terminal


@njit(inline="always")
def _seaquest_observe(out, i, g):
    _clear(out, i, 10)
    px, py = g[_SQ_X], g[_SQ_Y]
    _put(out, i, 0, py, px)
    _put(out, i, 1, py, px + 1 - 2 * g[_SQ_RIGHT])
    for b in range(2):
        if g[_SQ_SHOT + b] == 1:
            _put(out, i, 2, g[_SQ_SHOT + 4 + b], g[_SQ_SHOT + 2 + b])
        d = _SQ_DIVER + b
        if g[d] == 1:
            _put(out, i, 9, g[d + 4], g[d + 2])
            _put(out, i, 3, g[d + 4], g[d + 2] + 1 - 2 * g[d + 6])
    for r in range(8):
        m = g[_SQ_ESHOTS + r] | g[_SQ_ESHOTS + 8 + r]
        for x in range(10):
            if (m >> x) & 1:
                out[i, 4, r + 1, x] = True
    am = np.int64(g[_SQ_MASK]) & _SQ_ALL
    while am:
        s = trailing_zeros(am)
        am &= am - 1
        x, y = g[_sq(1, s)], g[_sq(2, s)]
        _put(out, i, 6 if g[_sq(4, s)] == 1 else 5, y, x)
        _put(out, i, 3, y, x + 1 - 2 * g[_sq(3, s)])
    for x in range(max(g[_SQ_OXYGEN], 0) * 10 // 200):
        out[i, 7, 9, x] = True
    for x in range(9 - min(max(g[_SQ_DIVERS], 0), 9), 9):
        out[i, 8, 9, x] = True


seaquest_step, seaquest_rollout = _kernels("seaquest", 1, 4, 10, _seaquest_load, _seaquest_store, _seaquest_reset,
                                           _seaquest_physics, _seaquest_observe)
