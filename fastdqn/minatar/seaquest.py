"""MinAtar Seaquest, batched.

Rules: the player steers a two-cell submarine (its front cell, and a back cell behind it on the side
it last moved away from) over rows 0-8, columns 0-9; row 0 is the surface. Moving left or right
also turns the submarine; up and down change the row (clamped). Fire, when the gun's cool-down is
0, launches a shot from the front cell in the facing direction and sets the cool-down to 5 (fire
during the cool-down does nothing). Enemies (fish, and submarines that shoot) and divers travel
along rows 1-8, one cell per move, away from the side they entered; all enemies in a row head the
same way. A step does, in order:

1. enemy spawn, when the enemy spawn timer reads 0: a side (column 0 heading right or column 9
   heading left), a kind (submarine or fish) and a row 1-8 are drawn; the enemy enters unless an
   enemy heading the other way is already in that row; it carries a move timer starting at the
   current move interval (and, for a submarine, a shot timer starting at 10). The timer restarts at
   the spawn interval either way;
2. diver spawn, when the diver timer reads 0: a side and a row 1-8 are drawn, the diver enters
   with a move timer of 5, and the diver timer restarts at 30;
3. the player's action;
4. the player's shots, the newest first: each moves one cell (leaving the grid, it is gone);
   on a fish it removes the fish that came first and itself and scores 1, else on a submarine the
   same with the submarine that came first;
5. divers, the newest first: a diver on the player's cell is picked up if fewer than 6 are aboard;
   otherwise, when its move timer reads 0 it moves (the timer restarts at 5), leaves or is picked
   up likewise on the player's cell, else its timer counts down;
6. enemies, submarines (newest first) and then fish (newest first): one on the player's cell ends
   the episode; when its move timer reads 0 it moves and its timer restarts at the current move
   interval -- it leaves past the edge, ends the episode on the player's cell, or else on a player
   shot removes itself and the shot that came first on that cell (scoring 1); otherwise its timer
   counts down. Every submarine that was there at the start of this phase (also one that just
   left or was shot) then fires when its shot timer reads 0 (a shot from its cell, heading its
   way; the timer restarts at 10), else that timer counts down;
7. enemy shots move one cell (leaving the grid, they are gone); one on the player's cell before
   or after the move ends the episode (they touch nothing else);
8. the three spawn and cool-down timers count down (not below 0); the episode ends if the oxygen
   is at 0 or below; below the surface the oxygen drops by 1; arriving at the surface (the step
   before was below it) with no diver aboard ends the episode, with 6 scores ``oxygen * 10 // 200``
   and empties the submarine, and with any other count drops one diver (a count of 6 thus becomes
   -1, and a negative count never ends an episode at the surface). Arriving refills the oxygen to
   200 and, when ramping is on and the spawn interval is above 1 or the move interval above 2,
   ramps: the move interval drops by one (not below 2) when the ramp index is odd, the spawn
   interval drops by one (not below 1), and the ramp index grows by one.

An episode starts with the submarine at the surface in column 5 facing left, 200 oxygen, no diver,
no objects, enemy spawn interval and timer 20, diver timer 30, move interval 5, no cool-down.

Observation channels: submarine front, submarine back, player shot, trail (the cell behind each
enemy and diver, where inside the grid), enemy shot, fish, enemy submarine, oxygen gauge (row 9,
the first ``oxygen * 10 // 200`` columns), diver gauge (row 9, the ``count`` columns left of
column 9), diver.

Uniforms. Reset: one, unused (the start is fixed; it carries the batch size and device). Step:
five, drawn every step and used only on a spawn: ``u[0] < 1/2`` puts an enemy at column 0 heading
right (else column 9 heading left), ``u[1] < 1/3`` makes it a submarine (else a fish), its row is
``1 + floor(u[2] * 8)``; ``u[3] < 1/2`` puts a diver at column 0 heading right, its row is
``1 + floor(u[4] * 8)``.

Bounds. The reference keeps every object kind in an unbounded list; here:

* player shots: 2 slots. A shot lives at most 9 steps and the cool-down allows one every 5 steps,
  so at most one is alive when another is fired and at most two at once.
* divers: 2 slots. A diver lives at most 59 steps (first move after 5 steps, then one every 6, gone
  on the 10th) and one enters every 30 steps: at most one is alive when another enters.
* enemy shots: no slots at all. They interact with nothing but the player, so the set of (row,
  heading, column) cells holding one is all that matters (two in one cell moving the same way stay
  together for good): a 10-bit column mask per row and heading. Exact, with no bound.
* enemies: 32 slots. At most one enemy enters per step and one lives at most 10 moves, one every
  ``m + 1`` steps for the move interval ``m`` of the time (first after ``m``): 10 m + 9 steps. With
  the final intervals (spawn 1, move 2) that is at most 29 alive at once, and the ramp lowers the
  move interval to 2 while the spawn interval is still 14, so only a few enemies that entered
  under a slower move interval can add to that. In principle (every spawn allowed, none shot) the
  bound of 59 (one enemy per step over the longest life) could only be approached by ramping
  faster than the rules allow; a spawn into a full table is dropped (a documented deviation that
  the conformance runs check for).

The order of the reference's lists matters where objects share a cell; each enemy keeps its entry
number (``SEQ``, from a per-episode counter) and player shots and divers sit in their slots
oldest first, which reproduces every "newest first" / "came first" rule above.
"""

from __future__ import annotations

import torch

SHOTS = 2  # player shot slots, slot 0 the older
DIVER_SLOTS = 2  # diver slots, slot 0 the older
ENEMIES = 32  # enemy slots

# state rows: scalars, then one row per slot for each field of player shots, divers and enemies,
# and the enemy shots as column masks per grid row 1-8 (bit x: column x), one block per heading
(SUB_X, SUB_Y, SUB_RIGHT, OXYGEN, DIVERS, SURFACED, COOL_DOWN, SPAWN_SPEED, SPAWN_TIMER, DIVER_TIMER, MOVE_SPEED,
 RAMP_INDEX, NEXT_SEQ) = range(13)
SHOT_ALIVE = 13
SHOT_X = SHOT_ALIVE + SHOTS
SHOT_Y = SHOT_X + SHOTS
SHOT_RIGHT = SHOT_Y + SHOTS
DIVER_ALIVE = SHOT_RIGHT + SHOTS
DIVER_X = DIVER_ALIVE + DIVER_SLOTS
DIVER_Y = DIVER_X + DIVER_SLOTS
DIVER_RIGHT = DIVER_Y + DIVER_SLOTS
DIVER_MOVE = DIVER_RIGHT + DIVER_SLOTS  # the diver's move timer
ENEMY_SHOTS_RIGHT = DIVER_MOVE + DIVER_SLOTS  # 8 rows: grid rows 1-8
ENEMY_SHOTS_LEFT = ENEMY_SHOTS_RIGHT + 8
ALIVE = ENEMY_SHOTS_LEFT + 8
ENEMY_X = ALIVE + ENEMIES
ENEMY_Y = ENEMY_X + ENEMIES
ENEMY_RIGHT = ENEMY_Y + ENEMIES
IS_SUB = ENEMY_RIGHT + ENEMIES  # 1: submarine, 0: fish
ENEMY_MOVE = IS_SUB + ENEMIES  # move timer
ENEMY_FIRE = ENEMY_MOVE + ENEMIES  # a submarine's shot timer
SEQ = ENEMY_FIRE + ENEMIES  # entry number: higher is newer

MAX_OXYGEN = 200
SPAWN_INTERVAL = 20
MOVE_INTERVAL = 5
DIVER_INTERVAL = 30
DIVER_MOVE_INTERVAL = 5
COOL = 5
FIRE_INTERVAL = 10
SUB_SHARE = 1 / 3
MAX_DIVERS = 6
LOWEST = torch.iinfo(torch.int32).min


def _or_over(t: torch.Tensor) -> torch.Tensor:
    """Bitwise OR over dim 0 (pairwise halving: a handful of ops for any static size)."""
    while t.shape[0] > 1:
        h = t.shape[0] // 2
        folded = t[:h] | t[h:2 * h]
        t = torch.cat([folded, t[2 * h:]]) if t.shape[0] % 2 else folded
    return t[0]


def _row_masks(rows, cols, on, n_rows: int, ar) -> torch.Tensor:
    """``[n_rows, N]``: per row, the mask of columns holding an object (objects ``[K, N]`` at
    ``rows``/``cols``, counted where ``on`` and the column is inside the grid)."""
    on = on & (cols >= 0) & (cols <= 9)
    bit = torch.where(on, 1 << cols.clamp(0, 9), 0)
    per_row = torch.where(rows[:, None] == ar[:n_rows, None], bit[:, None], 0)
    return _or_over(per_row)


def _pick(mask, prefer, seq, newest: bool):
    """The one object of ``mask`` ([K, N]) the reference would reach first: among ``prefer`` if any
    of them qualifies, else among the rest; the newest (highest ``seq``) or the oldest."""
    pool = torch.where((mask & prefer).any(0), mask & prefer, mask)
    key = torch.where(pool, seq if newest else -seq, LOWEST)
    return pool & (key == key.amax(0))


class Seaquest:
    name = "seaquest"
    channels = ("sub_front", "sub_back", "friendly_bullet", "trail", "enemy_bullet", "enemy_fish", "enemy_sub",
                "oxygen_guage", "diver_guage", "diver")
    minimal_actions = (0, 1, 2, 3, 4, 5)  # all six
    state_dim = SEQ + ENEMIES
    n_uniforms = 1
    step_uniforms = 5

    def __init__(self, difficulty_ramping: bool = True):
        self.ramping = bool(difficulty_ramping)
        self._tables = {}

    def _ar(self, device):
        """0..15 as a column, on ``device``."""
        if device not in self._tables:
            self._tables[device] = torch.arange(16, dtype=torch.int32, device=device)
        return self._tables[device]

    def reset_state(self, u, dtype):
        n, dev = u[0].shape[0], u[0].device
        s = torch.zeros(self.state_dim, n, dtype=torch.int32, device=dev)
        s[SUB_X] = 5
        s[OXYGEN] = MAX_OXYGEN
        s[SURFACED] = 1
        s[SPAWN_SPEED] = s[SPAWN_TIMER] = SPAWN_INTERVAL
        s[DIVER_TIMER] = DIVER_INTERVAL
        s[MOVE_SPEED] = MOVE_INTERVAL
        return s

    def step(self, s, a, u):
        ar = self._ar(s.device)
        move_speed, spawn_speed, ramp_index = s[MOVE_SPEED], s[SPAWN_SPEED], s[RAMP_INDEX]

        def block(first, k):
            return s[first:first + k]

        alive = block(ALIVE, ENEMIES) == 1
        ex, ey, right = block(ENEMY_X, ENEMIES), block(ENEMY_Y, ENEMIES), block(ENEMY_RIGHT, ENEMIES) == 1
        sub, emove, efire, seq = (block(IS_SUB, ENEMIES) == 1, block(ENEMY_MOVE, ENEMIES),
                                  block(ENEMY_FIRE, ENEMIES), block(SEQ, ENEMIES))

        # 1. enemy spawn into the first free slot, unless the row holds an enemy heading the other way
        due = s[SPAWN_TIMER] == 0
        from_left = u[0] < 0.5
        row = 1 + (u[2] * 8).floor().to(torch.int32).clamp(0, 7)
        blocked = (alive & (ey == row) & (right != from_left)).any(0)
        free = ~alive
        born = due & ~blocked & free & (free.cumsum(0, dtype=torch.int32) == 1)
        alive = alive | born
        ex = torch.where(born, 9 - 9 * from_left.int(), ex)
        ey = torch.where(born, row, ey)
        right = torch.where(born, from_left, right)
        sub = torch.where(born, u[1] < SUB_SHARE, sub)
        emove = torch.where(born, move_speed, emove)
        efire = torch.where(born, FIRE_INTERVAL, efire)
        seq = torch.where(born, s[NEXT_SEQ], seq)
        next_seq = s[NEXT_SEQ] + born.any(0).int()
        spawn_timer = torch.where(due, spawn_speed, s[SPAWN_TIMER])

        # 2. diver spawn into the first free slot (slots stay oldest first: slot 1 is free when slot 0 is taken)
        dalive = list(block(DIVER_ALIVE, 2) == 1)
        dx, dy = list(block(DIVER_X, 2)), list(block(DIVER_Y, 2))
        dright, dmove = list(block(DIVER_RIGHT, 2) == 1), list(block(DIVER_MOVE, 2))
        d_due = s[DIVER_TIMER] == 0
        d_left, d_row = u[3] < 0.5, 1 + (u[4] * 8).floor().to(torch.int32).clamp(0, 7)
        for i, born_d in enumerate((d_due & ~dalive[0], d_due & dalive[0])):
            dalive[i] = dalive[i] | born_d
            dx[i] = torch.where(born_d, 9 - 9 * d_left.int(), dx[i])
            dy[i] = torch.where(born_d, d_row, dy[i])
            dright[i] = torch.where(born_d, d_left, dright[i])
            dmove[i] = torch.where(born_d, DIVER_MOVE_INTERVAL, dmove[i])
        diver_timer = torch.where(d_due, DIVER_INTERVAL, s[DIVER_TIMER])

        # 3. the player's action
        px, py, facing = s[SUB_X], s[SUB_Y], s[SUB_RIGHT]
        cool = s[COOL_DOWN]
        fire = (a == 5) & (cool == 0)
        balive = list(block(SHOT_ALIVE, 2) == 1)
        bx, by, bright = list(block(SHOT_X, 2)), list(block(SHOT_Y, 2)), list(block(SHOT_RIGHT, 2) == 1)
        for i, shot in enumerate((fire & ~balive[0], fire & balive[0])):
            balive[i] = balive[i] | shot
            bx[i] = torch.where(shot, px, bx[i])
            by[i] = torch.where(shot, py, by[i])
            bright[i] = torch.where(shot, facing == 1, bright[i])
        cool = torch.where(fire, COOL, cool)
        px = torch.where(a == 1, (px - 1).clamp(min=0), torch.where(a == 3, (px + 1).clamp(max=9), px))
        facing = torch.where(a == 1, 0, torch.where(a == 3, 1, facing))
        py = torch.where(a == 2, (py - 1).clamp(min=0), torch.where(a == 4, (py + 1).clamp(max=8), py))

        # 4. player shots move, the newer first; each removes the first-come fish, else submarine, on its cell
        reward = torch.zeros_like(px)
        for i in (1, 0):
            bx[i] = bx[i] + torch.where(balive[i], 2 * bright[i].int() - 1, 0)
            balive[i] = balive[i] & (bx[i] >= 0) & (bx[i] <= 9)
            kill = _pick(alive & (ex == bx[i]) & (ey == by[i]) & balive[i], ~sub, seq, newest=False)
            got = kill.any(0)
            alive = alive & ~kill
            balive[i] = balive[i] & ~got
            reward = reward + got.int()

        # 5. divers, the newer first
        divers = s[DIVERS]
        for i in (1, 0):
            room = divers < MAX_DIVERS
            picked = dalive[i] & (dx[i] == px) & (dy[i] == py) & room
            rest = dalive[i] & ~picked
            moves = rest & (dmove[i] == 0)
            dmove[i] = torch.where(moves, DIVER_MOVE_INTERVAL, torch.where(rest, dmove[i] - 1, dmove[i]))
            dx[i] = dx[i] + torch.where(moves, 2 * dright[i].int() - 1, 0)
            gone = moves & ((dx[i] < 0) | (dx[i] > 9))
            picked = picked | (moves & ~gone & (dx[i] == px) & (dy[i] == py) & room)
            divers = divers + picked.int()
            dalive[i] = dalive[i] & ~picked & ~gone

        # 6. enemies: contact, moves, shots meeting a moved enemy (older shot first, to the enemy the
        # reference reaches first: submarines before fish, newest first), then submarines fire
        terminal = (alive & (ex == px) & (ey == py)).any(0)
        shooters = alive & sub
        moves = alive & (emove == 0)
        emove = torch.where(moves, move_speed, torch.where(alive, emove - 1, emove))
        ex = ex + torch.where(moves, 2 * right.int() - 1, 0)
        gone = moves & ((ex < 0) | (ex > 9))
        on_player = moves & ~gone & (ex == px) & (ey == py)
        terminal = terminal | on_player.any(0)
        can_hit = moves & ~gone & ~on_player
        alive = alive & ~gone
        for i in (0, 1):
            kill = _pick(can_hit & (ex == bx[i]) & (ey == by[i]) & balive[i], sub, seq, newest=True)
            got = kill.any(0)
            can_hit = can_hit & ~kill
            alive = alive & ~kill
            balive[i] = balive[i] & ~got
            reward = reward + got.int()
        fires = shooters & (efire == 0)
        efire = torch.where(shooters, torch.where(efire == 0, FIRE_INTERVAL, efire - 1), efire)
        fired = _row_masks((ey - 1) + 8 * (~right).int(), ex, fires, 16, ar)

        # 7. enemy shots: contact before and after their move
        shots_r = block(ENEMY_SHOTS_RIGHT, 8) | fired[:8]
        shots_l = block(ENEMY_SHOTS_LEFT, 8) | fired[8:]
        player_row = (py - 1).clamp(0, 7)[None]

        def shot_at_player(r, left):
            mask = (r | left).gather(0, player_row)[0]
            return (py >= 1) & (((mask >> px) & 1) == 1)

        terminal = terminal | shot_at_player(shots_r, shots_l)
        shots_r, shots_l = (shots_r << 1) & 1023, shots_l >> 1
        terminal = terminal | shot_at_player(shots_r, shots_l)

        # 8. timers, oxygen, surfacing and the ramp
        spawn_timer = spawn_timer - (spawn_timer > 0).int()
        diver_timer = diver_timer - (diver_timer > 0).int()
        cool = cool - (cool > 0).int()
        oxygen = s[OXYGEN]
        terminal = terminal | (oxygen <= 0)
        below = py > 0
        oxygen = torch.where(below, oxygen - 1, oxygen)
        arriving = ~below & (s[SURFACED] == 0)
        terminal = terminal | (arriving & (divers == 0))
        arrive = arriving & (divers != 0)
        full = arrive & (divers == MAX_DIVERS)
        reward = reward + torch.where(full, oxygen * 10 // MAX_OXYGEN, 0)
        oxygen = torch.where(arrive, MAX_OXYGEN, oxygen)
        divers = torch.where(arrive, torch.where(full, 0, divers) - 1, divers)
        surfaced = torch.where(below, 0, torch.where(arrive, 1, s[SURFACED]))
        if self.ramping:
            ramp = arrive & ((spawn_speed > 1) | (move_speed > 2))
            move_speed = move_speed - (ramp & (move_speed > 2) & (ramp_index % 2 == 1)).int()
            spawn_speed = spawn_speed - (ramp & (spawn_speed > 1)).int()
            ramp_index = ramp_index + ramp.int()

        # slots oldest first again (the older of two shots or divers gone: the newer moves to slot 0)
        for al, fields in ((balive, (bx, by, bright)), (dalive, (dx, dy, dright, dmove))):
            shift = ~al[0] & al[1]
            for f in fields:
                f[0] = torch.where(shift, f[1], f[0])
            al[0], al[1] = al[0] | shift, al[1] & ~shift

        def slots(al, fields):  # dead slots zeroed
            keep = torch.stack(al).int()
            return [keep] + [torch.stack(f).int() * keep for f in fields]

        keep = alive.int()
        out = torch.cat([
            torch.stack([px, py, facing, oxygen, divers, surfaced, cool, spawn_speed, spawn_timer, diver_timer,
                         move_speed, ramp_index, next_seq]),
            *slots(balive, (bx, by, bright)),
            *slots(dalive, (dx, dy, dright, dmove)),
            shots_r, shots_l,
            keep, ex * keep, ey * keep, right.int() * keep, sub.int() * keep, emove * keep, efire * keep, seq * keep,
        ])
        return out, reward.float(), terminal

    def observe(self, s):
        # every channel as a column mask per grid row ([10 channels, 10 rows, N]), expanded to bool planes once
        ar = self._ar(s.device)
        n = s.shape[1]
        rows = ar[:10, None]
        px, py, facing = s[SUB_X], s[SUB_Y], s[SUB_RIGHT]

        def at(y, x):  # one cell per env
            return torch.where(rows == y, 1 << x, 0)

        def objects(first_alive, first_x, first_y, k, also=None):
            on = s[first_alive:first_alive + k] == 1
            if also is not None:
                on = on & also
            return _row_masks(s[first_y:first_y + k], s[first_x:first_x + k], on, 10, ar)

        def behind(first_x, first_right, k):
            return s[first_x:first_x + k] + 1 - 2 * s[first_right:first_right + k]

        alive = s[ALIVE:ALIVE + ENEMIES] == 1
        dalive = s[DIVER_ALIVE:DIVER_ALIVE + DIVER_SLOTS] == 1
        is_sub = s[IS_SUB:IS_SUB + ENEMIES] == 1
        trail = _row_masks(torch.cat([s[ENEMY_Y:ENEMY_Y + ENEMIES], s[DIVER_Y:DIVER_Y + DIVER_SLOTS]]),
                           torch.cat([behind(ENEMY_X, ENEMY_RIGHT, ENEMIES), behind(DIVER_X, DIVER_RIGHT, DIVER_SLOTS)]),
                           torch.cat([alive, dalive]), 10, ar)
        edge = torch.zeros(1, n, dtype=torch.int32, device=s.device)
        enemy_shots = torch.cat([edge, s[ENEMY_SHOTS_RIGHT:ENEMY_SHOTS_RIGHT + 8] | s[ENEMY_SHOTS_LEFT:ENEMY_SHOTS_LEFT + 8],
                                 edge])
        bars = s[OXYGEN].clamp(min=0) * 10 // MAX_OXYGEN
        aboard = s[DIVERS].clamp(0, 9)
        oxygen = torch.where(rows == 9, (1 << bars) - 1, 0)
        diver_gauge = torch.where(rows == 9, ((1 << 9) - 1) ^ ((1 << (9 - aboard)) - 1), 0)
        masks = torch.stack([
            at(py, px),
            at(py, px + 1 - 2 * facing),
            objects(SHOT_ALIVE, SHOT_X, SHOT_Y, SHOTS),
            trail,
            enemy_shots,
            objects(ALIVE, ENEMY_X, ENEMY_Y, ENEMIES, ~is_sub),
            objects(ALIVE, ENEMY_X, ENEMY_Y, ENEMIES, is_sub),
            oxygen,
            diver_gauge,
            objects(DIVER_ALIVE, DIVER_X, DIVER_Y, DIVER_SLOTS),
        ])  # [10, 10, N]
        return ((masks.permute(2, 0, 1)[..., None] >> ar[:10]) & 1).bool()

    def difficulty(self, s):
        return s[RAMP_INDEX].clone()
