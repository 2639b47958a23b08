"""Preallocated circular replay buffer on the training device, one ring per agent."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class Batch(NamedTuple):
    obs: torch.Tensor  # [K, B, *obs_shape], the stored dtype
    actions: torch.Tensor  # [K, B] int64
    rewards: torch.Tensor  # [K, B] float32
    next_obs: torch.Tensor  # [K, B, *obs_shape]: the true next observation (final_obs at episode ends)
    terminated: torch.Tensor  # [K, B] 0/1 float: no bootstrap
    truncated: torch.Tensor  # [K, B] 0/1 float: bootstrap from next_obs (time limit, not a real end)

    def rows(self, start: int, stop: int) -> Batch:
        """Transitions ``start:stop`` of every agent (views)."""
        return Batch(*(t[:, start:stop] for t in self))


class ReplayBuffer:
    """K rings of ``capacity`` transitions, allocated once on ``device``.

    Vector float32 observations (every classic-control env) are stored as one packed float row
    per transition, ``obs | action | reward | next_obs | terminated | truncated``, so ``add`` is
    one ``index_copy_`` and ``sample`` one ``index_select`` whatever the number of fields (the
    fast path; the numba collect kernel writes these rows directly). Any other observation (a
    shape of more than one dimension, or another dtype such as bool or uint8 frames) is stored
    in its own dtype, in ``obs`` and ``next_obs`` tensors ``[K, C, *obs_shape]`` beside a float
    row ``action | reward | terminated | truncated``. ``terminated`` and ``truncated`` are
    stored apart; the learner reads only ``terminated``. The write position and fill level are
    device tensors shared by the agents (they add in lockstep), so both methods are sync-free
    tensor programs.
    """

    def __init__(self, capacity: int, obs_shape, agents: int = 1, device="cpu", obs_dtype=torch.float32):
        if capacity < 1 or agents < 1:
            raise ValueError(f"capacity and agents must be >= 1, got {capacity} and {agents}")
        obs_shape = (obs_shape,) if isinstance(obs_shape, int) else tuple(obs_shape)
        self.capacity, self.obs_shape, self.agents, self.obs_dtype = capacity, obs_shape, agents, obs_dtype
        self.device = torch.device(device)
        self.packed = len(obs_shape) == 1 and obs_dtype == torch.float32
        d = self.obs_dim = math.prod(obs_shape)
        self.width = 2 * d + 4 if self.packed else 4
        self.data = torch.zeros(agents, capacity, self.width, dtype=torch.float32, device=self.device)
        if not self.packed:
            self.obs = torch.zeros(agents, capacity, *obs_shape, dtype=obs_dtype, device=self.device)
            self.next_obs = torch.zeros_like(self.obs)
        self.pos = torch.zeros((), dtype=torch.int64, device=self.device)  # next write index
        self.size = torch.zeros((), dtype=torch.int64, device=self.device)  # valid rows per agent
        self._offsets = torch.arange(agents, device=self.device)[:, None] * capacity
        self._ranges: dict[int, torch.Tensor] = {}

    def add(self, obs, actions, rewards, next_obs, terminated, truncated) -> None:
        """Append N transitions per agent (arguments ``[K, N]`` or ``[K, N, *obs_shape]``). If N >
        capacity, only the last ``capacity`` are kept."""
        f = self.data.dtype
        scalars = [actions[..., None].to(f), rewards[..., None].to(f)]
        flags = [terminated[..., None].to(f), truncated[..., None].to(f)]
        if self.packed:
            row = torch.cat([obs.to(f), *scalars, next_obs.to(f), *flags], dim=-1)
        else:
            row = torch.cat([*scalars, *flags], dim=-1)
        n = row.shape[1]
        keep = slice(n - self.capacity, None) if n > self.capacity else slice(None)
        row, n = row[:, keep], min(n, self.capacity)
        if n not in self._ranges:
            self._ranges[n] = torch.arange(n, device=self.device)
        at = (self.pos + self._ranges[n]).remainder_(self.capacity)
        self.data.index_copy_(1, at, row)
        if not self.packed:
            self.obs.index_copy_(1, at, obs[:, keep].to(self.obs_dtype))
            self.next_obs.index_copy_(1, at, next_obs[:, keep].to(self.obs_dtype))
        self.pos.add_(n).remainder_(self.capacity)
        self.size.add_(n).clamp_(max=self.capacity)

    def sample(self, bits: torch.Tensor) -> Batch:
        """The transitions at uniform indices in ``[0, size)`` drawn from ``bits [K, B]`` (random
        int64 values in ``[0, 2**32)``: index ``= bits * size >> 32``); agent k reads its own ring."""
        return self.gather((bits * self.size) >> 32)

    def gather(self, idx: torch.Tensor) -> Batch:
        """The transitions at ring indices ``idx [K, B]`` (agent k's row ``idx[k, b]`` of its own ring)."""
        flat = (idx + self._offsets).view(-1)
        rows = self.data.view(-1, self.width).index_select(0, flat).view(*idx.shape, self.width)
        if self.packed:
            d = self.obs_dim
            return Batch(rows[..., :d], rows[..., d].long(), rows[..., d + 1], rows[..., d + 2:2 * d + 2],
                         rows[..., 2 * d + 2], rows[..., 2 * d + 3])
        shape = (*idx.shape, *self.obs_shape)
        obs = self.obs.view(-1, *self.obs_shape).index_select(0, flat).view(shape)
        next_obs = self.next_obs.view(-1, *self.obs_shape).index_select(0, flat).view(shape)
        return Batch(obs, rows[..., 0].long(), rows[..., 1], next_obs, rows[..., 2], rows[..., 3])

    def state_dict(self) -> dict:
        """``pos`` and ``size`` (shared) and the per-agent storage tensors (leading dimension K)."""
        d = {"data": self.data, "pos": self.pos, "size": self.size}
        if not self.packed:
            d.update(obs=self.obs, next_obs=self.next_obs)
        return d

    def load_state_dict(self, d: dict) -> None:
        for name, t in self.state_dict().items():
            if tuple(d[name].shape) != tuple(t.shape):
                raise ValueError(f"replay {name} has shape {tuple(d[name].shape)}, expected {tuple(t.shape)}")
            t.copy_(d[name])
