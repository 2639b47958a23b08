"""MinAtar Breakout, batched.

Rules: a paddle on the bottom row moves one cell left or right; a ball moves one cell diagonally
per step; three rows of bricks (rows 1-3). The ball bounces off the side walls and the ceiling.
Hitting a brick removes it, scores 1 and sends the ball back vertically (the ball stays on its
row); a ball that enters a brick cell in the step right after a strike passes into it without
striking again. When the ball reaches the bottom row it bounces straight back if it came down
over the paddle, bounces off the paddle's corner (both directions reversed) if it lands on the
paddle, and ends the episode otherwise; reaching the bottom row with no bricks left restores all
three rows. An episode starts with the ball at row 3 in the left column moving down-right or in the
right column moving down-left (one uniform: below 1/2 the left start), the paddle in column 4.
"""

from __future__ import annotations

import torch

from fastdqn.minatar import at, cells

# state rows
BALL_X, BALL_Y, BALL_DIR, PADDLE, LAST_X, LAST_Y, STRIKE, BRICKS = range(8)
# ball directions 0..3: up-left, up-right, down-right, down-left
DX = (-1, 1, 1, -1)
DY = (-1, -1, 1, 1)
FLIP_X = (1, 0, 3, 2)  # off a side wall
FLIP_Y = (3, 2, 1, 0)  # off the ceiling, a brick or straight back off the paddle
FLIP_XY = (2, 3, 0, 1)  # off the paddle's corner


class Breakout:
    name = "breakout"
    channels = ("paddle", "ball", "trail", "brick")
    minimal_actions = (0, 1, 3)  # n, l, r
    state_dim = BRICKS + 100
    n_uniforms = 1
    step_uniforms = 0

    def __init__(self, difficulty_ramping: bool = True):
        self._tables = {}  # Breakout has no difficulty ramp

    def _t(self, device):
        if device not in self._tables:
            self._tables[device] = [torch.tensor(t, dtype=torch.int32, device=device)
                                    for t in (DX, DY, FLIP_X, FLIP_Y, FLIP_XY)]
        return self._tables[device]

    def reset_state(self, u, dtype):
        right = u[0] >= 0.5
        n, dev = right.shape[0], right.device
        s = torch.zeros(self.state_dim, n, dtype=torch.int32, device=dev)
        s[BALL_X] = torch.where(right, 9, 0)
        s[BALL_Y] = 3
        s[BALL_DIR] = torch.where(right, 3, 2)
        s[PADDLE] = 4
        s[LAST_X], s[LAST_Y] = s[BALL_X], s[BALL_Y]
        cells(s, BRICKS)[1:4] = 1
        return s

    def step(self, s, a, u):
        dx, dy, flip_x, flip_y, flip_xy = self._t(s.device)
        x, y, d, paddle = s[BALL_X], s[BALL_Y], s[BALL_DIR].long(), s[PADDLE]
        paddle = torch.where(a == 1, (paddle - 1).clamp(min=0), torch.where(a == 3, (paddle + 1).clamp(max=9), paddle))
        nx, ny = x + dx[d], y + dy[d]
        wall = (nx < 0) | (nx > 9)
        nx = nx.clamp(0, 9)
        d = torch.where(wall, flip_x[d], d.int()).long()
        ceiling = ny < 0
        ny = ny.clamp(min=0)
        entered = (ny * 10 + nx).long()  # the cell the ball moves into
        brick_here = s[BRICKS:BRICKS + 100].gather(0, entered[None])[0] == 1
        hit_brick = ~ceiling & brick_here
        strike = s[STRIKE] == 1
        scores = hit_brick & ~strike
        bottom = ~ceiling & ~brick_here & (ny == 9)
        straight = bottom & (x == paddle)
        corner = bottom & ~straight & (nx == paddle)
        terminal = bottom & ~straight & ~corner
        d = torch.where(ceiling | scores | straight, flip_y[d], torch.where(corner, flip_xy[d], d.int())).long()
        ny = torch.where(scores | straight | corner, y, ny)

        cleared = s[BRICKS:BRICKS + 100].sum(0) == 0
        out = s.clone()
        grid = out[BRICKS:BRICKS + 100]
        grid.scatter_(0, entered[None], torch.where(scores, 0, grid.gather(0, entered[None])[0])[None])
        refill = bottom & cleared
        cells(out, BRICKS)[1:4] |= refill.int()
        out[BALL_X], out[BALL_Y], out[BALL_DIR], out[PADDLE] = nx, ny, d.int(), paddle
        out[LAST_X], out[LAST_Y] = x, y
        out[STRIKE] = hit_brick.int()
        return out, scores.float(), terminal

    def observe(self, s):
        return torch.stack([at(torch.full_like(s[PADDLE], 9), s[PADDLE]), at(s[BALL_Y], s[BALL_X]),
                            at(s[LAST_Y], s[LAST_X]), cells(s, BRICKS).permute(2, 0, 1) == 1], dim=1)

    def difficulty(self, s):
        return torch.zeros(s.shape[1], dtype=torch.int32, device=s.device)
