"""MinAtar SpaceInvaders, batched.

Rules: a cannon on the bottom row (starting in column 5) moves one cell left or right, or fires
when its cool-down is zero. Firing puts a shot in the cannon's cell and sets the cool-down to 5;
the cool-down counts down by one at the end of every step (so a new shot is possible every fifth
step). A step then goes:

1. Player shots move up one row (a shot leaving the top row is gone); alien shots move down one
   row (one leaving the bottom row is gone). An alien shot now in the cannon's cell ends the
   episode, and so does an alien already in the cannon's cell.
2. Every ``move`` steps the aliens move: if the block touches the wall it is heading for (column 0
   going left, column 9 going right), it turns around and moves one row down instead -- the grid
   wraps, so aliens on the bottom row come back on the top row, and a block that moves down while
   an alien is on the bottom row ends the episode; otherwise every alien moves one column. The
   next move comes ``min(aliens, interval)`` steps later (counting the aliens before any are shot
   this step), so the last few aliens speed up. After a move, an alien in the cannon's cell ends
   the episode.
3. Every 10 steps an alien fires: of the columns holding aliens, the one closest to the cannon
   (on a tie, the one to its left) fires from its lowest alien's cell.
4. A player shot in an alien's cell removes both and scores 1.
5. When no alien is left, a new block of 4 rows by 6 columns (rows 0-3, columns 2-7) appears and,
   with difficulty ramping on, ``interval`` drops by one (from 12, down to 6) and the ramp index
   rises by one. The aliens keep their heading, the shots stay.

An episode starts with that block heading left, both alien timers full (moves in 12 steps, the
first alien shot in 10) and no shots. The game is deterministic: it takes no uniforms per step,
and its single reset uniform is not used (it only carries the batch size and device).
"""

from __future__ import annotations

import torch

from fastdqn.minatar import at, cells

# state rows: the cannon's column, the aliens' heading (-1 left, +1 right), steps until the aliens
# move and until they fire, the cannon's cool-down, the ramp index, then three 10 x 10 grids
POS, HEADING, MOVE_TIMER, FIRE_TIMER, COOL_DOWN, RAMP, ALIENS, SHOTS, ALIEN_SHOTS = (0, 1, 2, 3, 4, 5, 6, 106, 206)
COOL = 5  # the cannon's cool-down after a shot
INTERVAL = 12  # steps between alien moves at ramp index 0
MIN_INTERVAL = 6  # the ramp stops here
FIRE_EVERY = 10  # steps between alien shots


class SpaceInvaders:
    name = "space_invaders"
    channels = ("cannon", "alien", "alien_left", "alien_right", "friendly_bullet", "enemy_bullet")
    minimal_actions = (0, 1, 3, 5)  # n, l, r, f
    state_dim = ALIEN_SHOTS + 100
    n_uniforms = 1  # unused: the start is fixed; the uniform tells reset_state N and the device
    step_uniforms = 0

    def __init__(self, difficulty_ramping: bool = True):
        self.ramping = bool(difficulty_ramping)
        self._cols = {}

    def _columns(self, device):
        if device not in self._cols:
            self._cols[device] = torch.arange(10, dtype=torch.int32, device=device)[:, None]
        return self._cols[device]

    def reset_state(self, u, dtype):
        n, dev = u[0].shape[0], u[0].device
        s = torch.zeros(self.state_dim, n, dtype=torch.int32, device=dev)
        s[POS] = 5
        s[HEADING] = -1
        s[MOVE_TIMER] = INTERVAL
        s[FIRE_TIMER] = FIRE_EVERY
        cells(s, ALIENS)[0:4, 2:8] = 1
        return s

    def step(self, s, a, u):
        col = self._columns(s.device)  # [10, 1]
        pos, heading, cool = s[POS], s[HEADING], s[COOL_DOWN]
        aliens, shots, alien_shots = cells(s, ALIENS), cells(s, SHOTS), cells(s, ALIEN_SHOTS)
        zero_row = torch.zeros_like(aliens[:1])

        # the cannon: fire (from its cell, before the shots move) or move
        fire = (a == 5) & (cool == 0)
        fire_at = (col == pos) & fire  # [10, N]: the fired shot's column
        pos = torch.where(a == 1, (pos - 1).clamp(min=0), torch.where(a == 3, (pos + 1).clamp(max=9), pos))
        here = (col == pos).int()  # [10, N]: the cannon's column after moving
        cool = torch.where(fire, COOL, cool)

        # shots move: up for the cannon's (the new one lands on row 8), down for the aliens'
        shots = torch.cat([shots[1:9], (shots[9] | fire_at.int())[None], zero_row])
        alien_shots = torch.cat([zero_row, alien_shots[:9]])
        terminal = ((alien_shots[9] | aliens[9]) * here).sum(0) > 0

        # the aliens move
        moves = s[MOVE_TIMER] == 0
        count = aliens.sum((0, 1))
        interval = INTERVAL - s[RAMP]
        move_timer = torch.where(moves, torch.minimum(count, interval), s[MOVE_TIMER])
        at_wall = torch.where(heading < 0, aliens[:, 0].sum(0), aliens[:, 9].sum(0)) > 0
        turn = moves & at_wall
        terminal |= turn & (aliens[9].sum(0) > 0)
        sideways = torch.where(heading < 0, aliens.roll(-1, 1), aliens.roll(1, 1))
        aliens = torch.where(turn, aliens.roll(1, 0), torch.where(moves, sideways, aliens))
        heading = torch.where(turn, -heading, heading)
        terminal |= (aliens[9] * here).sum(0) > 0

        # an alien fires: from the lowest alien of the occupied column nearest the cannon (left on ties)
        fires = s[FIRE_TIMER] == 0
        fire_timer = torch.where(fires, FIRE_EVERY, s[FIRE_TIMER])
        occupied = aliens.sum(0) > 0  # [10, N]
        key = torch.where(occupied, 2 * (col - pos).abs() + (col > pos).int(), 100)
        shooter = key.argmin(0)  # [N]
        in_col = (col == shooter).int()  # [10, N]
        lowest = (aliens * in_col[None] * (col[:, :, None] + 1)).amax((0, 1)) - 1  # max row with an alien there
        alien_shots = alien_shots | ((col[:, :, None] == lowest) & (in_col[None] == 1) & fires).int()

        # hits
        hit = aliens & shots
        reward = hit.sum((0, 1)).float()
        aliens, shots = aliens & (1 - hit), shots & (1 - hit)

        # timers, and a new wave when the block is gone
        cool = cool - (cool > 0).int()
        move_timer, fire_timer = move_timer - 1, fire_timer - 1
        cleared = aliens.sum((0, 1)) == 0
        ramp = s[RAMP]
        if self.ramping:
            ramp = ramp + (cleared & (interval > MIN_INTERVAL)).int()
        wave = torch.zeros_like(aliens)
        wave[0:4, 2:8] = 1
        aliens = aliens | (wave * cleared.int())

        rows = torch.stack([pos, heading, move_timer, fire_timer, cool, ramp])
        n = s.shape[1]
        out = torch.cat([rows, aliens.reshape(100, n), shots.reshape(100, n), alien_shots.reshape(100, n)])
        return out, reward, terminal

    def observe(self, s):
        aliens = cells(s, ALIENS).permute(2, 0, 1) == 1
        left = (s[HEADING] < 0)[:, None, None]
        return torch.stack([at(torch.full_like(s[POS], 9), s[POS]), aliens, aliens & left, aliens & ~left,
                            cells(s, SHOTS).permute(2, 0, 1) == 1, cells(s, ALIEN_SHOTS).permute(2, 0, 1) == 1], dim=1)

    def difficulty(self, s):
        return s[RAMP].clone()
