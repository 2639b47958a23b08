"""MinAtar Freeway, batched.

Rules: a chicken in column 4 starts on the bottom row (9) and tries to reach the top row (0);
eight lanes, rows 1 to 8, hold one car each, which starts in column 0. The chicken moves one row
up (``u``) or down (``d``) only when its move cooldown is 0; a move sets the cooldown to 3 and the
cooldown falls by one at the end of every step, so the chicken moves at most once every three
steps (the first episode step's cooldown is 3). Reaching row 0 scores 1, sends the chicken back to
row 9 and draws new speeds and directions for all eight cars (their columns stay). Every car has a
speed 1..5 and a direction (right or left) and a countdown: a car whose countdown is 0 moves one
column in its direction, wrapping around the edges, and its countdown restarts at its speed,
otherwise the countdown falls by one; so a car of speed k moves once every k + 1 steps, and a new
speed also restarts the countdown. A car hits the chicken (sending it back to row 9) if it is in
the chicken's cell in column 4 before its move or moves into it. Order within a step: the chicken's
move, the crossing (score, new cars, back to row 9), the cars' moves and hits, the cooldown. The
episode ends when its 2501st step is done (a 2500-step timer goes below 0); a step of an ended
episode changes nothing, scores 0 and reports the end again. Freeway has no difficulty ramp.
Observation channels: chicken, car, and the trail behind each car (the cell it came from,
wrapping) in the channel of its speed (``speed1`` .. ``speed5``).

Random draws (at reset, and on every step for a possible crossing): per car a speed and a
direction, 16 uniforms in all: ``u[i]`` (car ``i`` in row ``i + 1``) gives speed
``1 + floor(5 * u[i])``; ``u[8 + i]`` gives the direction: right above 1/2, left below. The rule
takes the sign of ``u - 1/2``, so ``u == 1/2`` exactly gives direction 0: speed 0, a car that
moves left every step; its trail has no speed channel of its own and takes that of the nearest car
above it with a nonzero speed (none for the top lane's car), which is what the reference draws.
"""

from __future__ import annotations

import torch

from fastdqn.minatar import one_hot_frame

# state rows: chicken row, move cooldown, time left; per car (8 rows each) column, countdown, signed speed
POS, COOLDOWN, TIME, CAR_X, CAR_TIMER, CAR_SPEED = 0, 1, 2, 3, 11, 19
N_CARS = 8
MOVE_COOLDOWN = 3
TIME_LIMIT = 2500


def _draw_cars(u):
    """Signed speeds ``[8, N]`` from the 16 uniforms (see the module docstring)."""
    speed = 1 + torch.floor(torch.stack(u[:N_CARS]) * 5).to(torch.int32)
    d = torch.stack(u[N_CARS:2 * N_CARS])
    sign = (d > 0.5).to(torch.int32) - (d < 0.5).to(torch.int32)
    return speed * sign


class Freeway:
    name = "freeway"
    channels = ("chicken", "car", "speed1", "speed2", "speed3", "speed4", "speed5")
    minimal_actions = (0, 2, 4)  # n, u, d
    state_dim = CAR_SPEED + N_CARS
    n_uniforms = 2 * N_CARS
    step_uniforms = 2 * N_CARS

    def __init__(self, difficulty_ramping: bool = True):
        self.difficulty_ramping = difficulty_ramping  # accepted for the protocol: Freeway does not ramp
        self._lanes = {}

    def _lane(self, device):
        if device not in self._lanes:
            self._lanes[device] = torch.arange(1, N_CARS + 1, dtype=torch.int32, device=device)[:, None]
        return self._lanes[device]

    def reset_state(self, u, dtype):
        speed = _draw_cars(u)
        n = speed.shape[1]
        s = torch.zeros(self.state_dim, n, dtype=torch.int32, device=speed.device)
        s[POS] = 9
        s[COOLDOWN] = MOVE_COOLDOWN
        s[TIME] = TIME_LIMIT
        s[CAR_TIMER:CAR_TIMER + N_CARS] = speed.abs()
        s[CAR_SPEED:CAR_SPEED + N_CARS] = speed
        return s

    def step(self, s, a, u):
        pos, cooldown, time = s[POS], s[COOLDOWN], s[TIME]
        ended = time < 0
        ready = cooldown == 0
        up, down = ready & (a == 2), ready & (a == 4)
        pos = torch.where(up, (pos - 1).clamp(min=0), torch.where(down, (pos + 1).clamp(max=9), pos))
        cooldown = torch.where(up | down, MOVE_COOLDOWN, cooldown)
        crossed = pos == 0
        pos = torch.where(crossed, 9, pos)

        x, timer, speed = s[CAR_X:CAR_X + N_CARS], s[CAR_TIMER:CAR_TIMER + N_CARS], s[CAR_SPEED:CAR_SPEED + N_CARS]
        fresh = _draw_cars(u)
        speed = torch.where(crossed, fresh, speed)
        timer = torch.where(crossed, fresh.abs(), timer)
        moves = timer == 0
        step_x = (speed > 0).to(torch.int32) * 2 - 1  # +1 right, -1 left (and for speed 0)
        nx = torch.where(moves, torch.remainder(x + step_x, 10), x)
        timer = torch.where(moves, speed.abs(), timer - 1)
        in_lane = self._lane(s.device) == pos
        hit = (in_lane & ((x == 4) | (nx == 4))).any(0)
        pos = torch.where(hit, 9, pos)
        cooldown = cooldown - (cooldown > 0).to(torch.int32)
        time = time - 1

        out = torch.cat([pos[None], cooldown[None], time[None], nx, timer, speed]).to(torch.int32)
        out = torch.where(ended, s, out)
        reward = (crossed & ~ended).to(torch.float32)
        return out, reward, time < 0

    def observe(self, s):
        n = s.shape[1]
        lane = self._lane(s.device)
        x, speed = s[CAR_X:CAR_X + N_CARS], s[CAR_SPEED:CAR_SPEED + N_CARS]
        back = torch.remainder(x - ((speed > 0).to(torch.int32) * 2 - 1), 10)
        # a speed-0 car's trail takes the channel of the nearest car above it with a nonzero speed
        kind, carried = speed.abs(), torch.zeros_like(speed[0])
        trail = []
        for i in range(N_CARS):
            carried = torch.where(kind[i] > 0, kind[i], carried)
            trail.append(carried)
        trail = torch.stack(trail)
        idx = torch.cat([
            (s[POS] * 10 + 4)[None],
            100 + lane * 10 + x,
            (1 + trail) * 100 + lane * 10 + back,
        ]).long()
        # without a channel the trail's index is its cell in the car channel, written False: one cell
        # away from the lane's only car, so no other write lands there
        on = torch.cat([torch.ones_like(idx[:1 + N_CARS], dtype=torch.bool), trail > 0])
        frame = one_hot_frame(n, len(self.channels), s.device)
        frame.view(n, -1).scatter_(1, idx.T, on.T)
        return frame

    def difficulty(self, s):
        return torch.zeros(s.shape[1], dtype=torch.int32, device=s.device)
