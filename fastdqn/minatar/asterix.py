"""MinAtar Asterix, batched.

Rules: the player stands on rows 1-8 (columns 0-9) and moves one cell per step in the four
directions (clamped to that area; fire does nothing). Each of the rows 1-8 holds at most one
object, an enemy or a piece of gold, that travels along its row, one cell per move, away from the
side it came in from; an object that leaves the grid is gone. A step does, in order:

1. spawn, when the spawn timer reads 0: an object enters at column 0 heading right or at column 9
   heading left, is gold or an enemy, and takes one of the free rows (nothing enters when all eight
   rows are taken); the spawn timer restarts at the spawn interval;
2. the player's move;
3. contact: gold on the player's cell is collected (+1, the gold is gone); an enemy there ends the
   episode (the enemy stays);
4. when the move timer reads 0 every object moves one cell (the move timer restarts at the move
   interval), then contact is checked again as in 3;
5. both timers count down by one;
6. difficulty ramp (unless ramping is off, and only while either interval is above 1): a ramp
   timer counts down from 100 through -1; on the step after it reached -1 the spawn interval
   drops by one (not below 1), the move interval too (not below 1) when the ramp index is odd
   before this ramp, the ramp index grows by one and the ramp timer restarts at 100.

An episode starts with the player at (row 5, column 5), no objects, spawn interval and timer 10,
move interval and timer 5, ramp timer 100 and ramp index 0 (the first ramp comes at step 102).

Observation channels: player, enemy, trail (the cell behind each object, where inside the grid),
gold.

Uniforms. Reset: one, unused (it only carries the batch size and device; the start is fixed).
Step: three, drawn every step and used only when a spawn happens: ``u[0] < 1/2`` spawns at
column 0 heading right (else column 9 heading left), ``u[1] < 1/3`` makes it gold (else an
enemy), and with ``k`` free rows ``floor(u[2] * k)`` picks the free row by its rank from the top.
"""

from __future__ import annotations

import torch

# state rows: scalars, then one row per object slot (slot i lives on grid row i + 1) for each field
PLAYER_X, PLAYER_Y, SPAWN_SPEED, SPAWN_TIMER, MOVE_SPEED, MOVE_TIMER, RAMP_TIMER, RAMP_INDEX = range(8)
SLOTS = 8
ALIVE = 8  # 1 where the slot holds an object
OBJ_X = ALIVE + SLOTS  # its column
RIGHT = OBJ_X + SLOTS  # 1: heading right (came in at column 0), 0: heading left
GOLD = RIGHT + SLOTS  # 1: gold, 0: enemy

SPAWN_INTERVAL = 10
MOVE_INTERVAL = 5
RAMP_INTERVAL = 100
GOLD_SHARE = 1 / 3


class Asterix:
    name = "asterix"
    channels = ("player", "enemy", "trail", "gold")
    minimal_actions = (0, 1, 2, 3, 4)  # n, l, u, r, d
    state_dim = GOLD + SLOTS
    n_uniforms = 1
    step_uniforms = 3

    def __init__(self, difficulty_ramping: bool = True):
        self.ramping = bool(difficulty_ramping)
        self._tables = {}

    def _t(self, device):
        """(grid row of each slot [8, 1], grid rows [1, 10, 1], grid columns [1, 1, 10]) on ``device``."""
        if device not in self._tables:
            ten = torch.arange(10, dtype=torch.int32, device=device)
            self._tables[device] = (ten[1:SLOTS + 1, None], ten.view(1, 10, 1), ten.view(1, 1, 10))
        return self._tables[device]

    def reset_state(self, u, dtype):
        n, dev = u[0].shape[0], u[0].device
        s = torch.zeros(self.state_dim, n, dtype=torch.int32, device=dev)
        s[PLAYER_X] = 5
        s[PLAYER_Y] = 5
        s[SPAWN_SPEED] = s[SPAWN_TIMER] = SPAWN_INTERVAL
        s[MOVE_SPEED] = s[MOVE_TIMER] = MOVE_INTERVAL
        s[RAMP_TIMER] = RAMP_INTERVAL
        return s

    def step(self, s, a, u):
        slot_row = self._t(s.device)[0]
        alive = s[ALIVE:ALIVE + SLOTS] == 1
        x = s[OBJ_X:OBJ_X + SLOTS]
        right = s[RIGHT:RIGHT + SLOTS] == 1
        gold = s[GOLD:GOLD + SLOTS] == 1

        # 1. spawn into the free row of rank floor(u[2] * k), k free rows, when the timer is up
        due = s[SPAWN_TIMER] == 0
        free = ~alive
        k = free.sum(0, dtype=torch.int32)
        rank = (u[2] * k).floor().to(torch.int32).clamp(max=SLOTS - 1)
        born = due & free & (free.cumsum(0, dtype=torch.int32) - 1 == rank)
        from_left = u[0] < 0.5
        alive = alive | born
        x = torch.where(born, 9 - 9 * from_left.int(), x)
        right = torch.where(born, from_left, right)
        gold = torch.where(born, u[1] < GOLD_SHARE, gold)
        spawn_timer = torch.where(due, s[SPAWN_SPEED], s[SPAWN_TIMER])

        # 2. the player's move
        px, py = s[PLAYER_X], s[PLAYER_Y]
        px = torch.where(a == 1, (px - 1).clamp(min=0), torch.where(a == 3, (px + 1).clamp(max=9), px))
        py = torch.where(a == 2, (py - 1).clamp(min=1), torch.where(a == 4, (py + 1).clamp(max=8), py))
        on_player_row = slot_row == py

        # 3. contact before the objects move
        touch = alive & on_player_row & (x == px)
        got, hit = touch & gold, touch & ~gold
        alive = alive & ~got

        # 4. the objects move when the move timer is up, then contact again
        moving = s[MOVE_TIMER] == 0
        x = torch.where(alive & moving, x + 2 * right.int() - 1, x)
        alive = alive & (x >= 0) & (x <= 9)
        touch = alive & on_player_row & (x == px)
        got, hit = got | (touch & gold), hit | (touch & ~gold)
        alive = alive & ~(touch & gold)
        move_timer = torch.where(moving, s[MOVE_SPEED], s[MOVE_TIMER])

        # 5. both timers count down (the `- 1`s written into the new state below); 6. difficulty ramp
        spawn_speed, move_speed = s[SPAWN_SPEED], s[MOVE_SPEED]
        ramp_timer, ramp_index = s[RAMP_TIMER], s[RAMP_INDEX]
        if self.ramping:
            active = (spawn_speed > 1) | (move_speed > 1)
            ramp = active & (ramp_timer < 0)
            ramp_timer = torch.where(ramp, RAMP_INTERVAL, ramp_timer - (active & (ramp_timer >= 0)).int())
            move_speed = move_speed - (ramp & (move_speed > 1) & (ramp_index % 2 == 1)).int()
            spawn_speed = spawn_speed - (ramp & (spawn_speed > 1)).int()
            ramp_index = ramp_index + ramp.int()

        out = torch.stack([px, py, spawn_speed, spawn_timer - 1, move_speed, move_timer - 1, ramp_timer, ramp_index])
        keep = alive.int()
        out = torch.cat([out, keep, x * keep, right.int() * keep, gold.int() * keep])
        return out, got.sum(0).float(), hit.any(0)

    def observe(self, s):
        # built from [N, 10, 10] planes stacked once (no zero-filled frame written into)
        rows, cols = self._t(s.device)[1:]
        n = s.shape[1]
        player = (s[PLAYER_Y].view(n, 1, 1) == rows) & (s[PLAYER_X].view(n, 1, 1) == cols)
        edge = torch.zeros(1, n, dtype=torch.int32, device=s.device)  # grid rows 0 and 9 hold no object

        def grid_rows(first):  # the slot rows from ``first`` as one value per grid row, [N, 10, 1]
            return torch.cat([edge, s[first:first + SLOTS], edge]).T[..., None]

        alive, x, gold = grid_rows(ALIVE) == 1, grid_rows(OBJ_X), grid_rows(GOLD) == 1
        behind = x + 1 - 2 * grid_rows(RIGHT)
        at = alive & (x == cols)
        return torch.stack([player, at & ~gold, alive & (behind == cols), at & gold], 1)

    def difficulty(self, s):
        return s[RAMP_INDEX].clone()
