"""Acrobot-v1 and MountainCar-v0 as pure batched dynamics for :class:`fastdqn.vector.VectorEnv`.

Written from the envs' documented rules (Sutton & Barto's acrobot, "book" dynamics, integrated by
classic RK4 over one 0.2 s step; Moore's mountain car) with Gymnasium's constants, reset ranges
and arithmetic order, so that float64 states follow Gymnasium's to the last bit where the math
library agrees (the numba kernels call libm, as NumPy does; torch's vectorised CPU sin/cos may
differ from libm in the last place: tests/test_classic.py measures both). A dynamics object
holds no state: its functions take and return the state's components (``[N]`` tensors each).
"""

from __future__ import annotations

import math

import torch

from fastdqn.envs import NATIVE


class Acrobot:
    """Two links, the joint between them driven by a torque of -1, 0 or +1; the episode ends when
    the free end rises a link's length above the pivot (``-cos(t1) - cos(t2 + t1) > 1``).

    State ``[theta1, theta2, dtheta1, dtheta2]`` (Gymnasium's ``.state``); observation
    ``[cos t1, sin t1, cos t2, sin t2, dtheta1, dtheta2]``; reward -1 per step, 0 on the step
    that reaches the goal. Reset: all four uniform in [-0.1, 0.1), rounded to float32 (Gymnasium
    draws them as float32)."""

    spec = NATIVE["Acrobot-v1"]
    state_dim = 4
    n_uniforms = 4
    kernels = "classic_numba"
    prefix = "acrobot"

    DT = 0.2
    MAX_VEL_1 = 4 * math.pi
    MAX_VEL_2 = 9 * math.pi
    # link masses 1, lengths 1, centres of mass 0.5, moments of inertia 1, g 9.8, folded the way
    # Gymnasium's left-to-right products fold them (each fold exact or done in the same order)
    G = 9.8
    C_PHI1 = (1.0 * 0.5 + 1.0 * 1.0) * 9.8  # (m1 lc1 + m2 l1) g
    C_PHI2 = 1.0 * 0.5 * 9.8  # m2 lc2 g

    def reset_state(self, u, dtype):
        return [(-0.1 + 0.2 * v).float().to(dtype) for v in u]

    @classmethod
    def _dsdt(cls, theta1, theta2, dtheta1, dtheta2, a):
        sin2 = torch.sin(theta2)
        cos2 = torch.cos(theta2)
        d1 = 0.25 + 1.0 * (1.25 + 1.0 * cos2) + 1.0 + 1.0  # m1 lc1^2 + m2 (l1^2 + lc2^2 + 2 l1 lc2 cos) + I1 + I2
        d2 = 1.0 * (0.25 + 0.5 * cos2) + 1.0  # m2 (lc2^2 + l1 lc2 cos) + I2
        phi2 = cls.C_PHI2 * torch.cos(theta1 + theta2 - math.pi / 2.0)
        phi1 = (-0.5 * (dtheta2 * dtheta2) * sin2 - dtheta2 * dtheta1 * sin2
                + cls.C_PHI1 * torch.cos(theta1 - math.pi / 2) + phi2)
        ddtheta2 = (a + d2 / d1 * phi1 - 0.5 * (dtheta1 * dtheta1) * sin2 - phi2) / (1.0 * 0.25 + 1.0 - d2 * d2 / d1)
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return dtheta1, dtheta2, ddtheta1, ddtheta2

    @staticmethod
    def _wrap(x):
        """Into [-pi, pi] by whole turns, as Gymnasium's loop does (up to three turns each way:
        one step moves an angle by less than one turn)."""
        two_pi = math.pi - -math.pi
        for _ in range(3):
            x = torch.where(x > math.pi, x - two_pi, x)
        for _ in range(3):
            x = torch.where(x < -math.pi, x + two_pi, x)
        return x

    def step(self, s, action):
        a = (action.to(s[0].dtype) - 1.0)  # torque -1, 0, +1
        dt, dt2 = self.DT, self.DT / 2.0
        k1 = self._dsdt(*s, a)
        k2 = self._dsdt(*(y + dt2 * k for y, k in zip(s, k1)), a)
        k3 = self._dsdt(*(y + dt2 * k for y, k in zip(s, k2)), a)
        k4 = self._dsdt(*(y + dt * k for y, k in zip(s, k3)), a)
        ns = [y + dt / 6.0 * (p + 2 * q + 2 * r + w) for y, p, q, r, w in zip(s, k1, k2, k3, k4)]
        t1, t2 = self._wrap(ns[0]), self._wrap(ns[1])
        d1 = ns[2].clamp(-self.MAX_VEL_1, self.MAX_VEL_1)
        d2 = ns[3].clamp(-self.MAX_VEL_2, self.MAX_VEL_2)
        terminated = -torch.cos(t1) - torch.cos(t2 + t1) > 1.0
        reward = torch.where(terminated, 0.0, -1.0).to(torch.float32)
        return [t1, t2, d1, d2], reward, terminated

    def observe(self, s):
        t1, t2, d1, d2 = s
        return torch.stack([torch.cos(t1), torch.sin(t1), torch.cos(t2), torch.sin(t2), d1, d2], dim=-1)

    def constants(self, dtype):
        import numpy as np

        f = np.dtype(dtype).type
        return tuple(f(v) for v in (self.DT, self.MAX_VEL_1, self.MAX_VEL_2, self.C_PHI1, self.C_PHI2))


class MountainCar:
    """A car in a valley, pushed left (0), not at all (1) or right (2), that must reach the hilltop
    at x >= 0.5. State and observation ``[position, velocity]``; reward -1 per step. Reset:
    position uniform in [-0.6, -0.4), velocity 0."""

    spec = NATIVE["MountainCar-v0"]
    state_dim = 2
    n_uniforms = 1
    kernels = "classic_numba"
    prefix = "mountaincar"

    MIN_POSITION, MAX_POSITION, MAX_SPEED, GOAL_POSITION = -1.2, 0.6, 0.07, 0.5
    FORCE, GRAVITY = 0.001, 0.0025

    def reset_state(self, u, dtype):
        position = -0.6 + (-0.4 - -0.6) * u[0]
        return [position.to(dtype), torch.zeros_like(position, dtype=dtype)]

    def step(self, s, action):
        position, velocity = s
        velocity = velocity + ((action - 1).to(position.dtype) * self.FORCE + torch.cos(3 * position) * -self.GRAVITY)
        velocity = velocity.clamp(-self.MAX_SPEED, self.MAX_SPEED)
        position = (position + velocity).clamp(self.MIN_POSITION, self.MAX_POSITION)
        velocity = torch.where((position == self.MIN_POSITION) & (velocity < 0), 0.0, velocity)
        terminated = (position >= self.GOAL_POSITION) & (velocity >= 0.0)
        reward = torch.full_like(position, -1.0, dtype=torch.float32)
        return [position, velocity], reward, terminated

    def observe(self, s):
        return torch.stack(s, dim=-1)

    def constants(self, dtype):
        import numpy as np

        f = np.dtype(dtype).type
        return tuple(f(v) for v in (self.MIN_POSITION, self.MAX_POSITION, self.MAX_SPEED, self.GOAL_POSITION,
                                    self.FORCE, self.GRAVITY))
