"""Preallocated circular replay buffer on the training device, one ring per agent."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Batch(NamedTuple):
    obs: torch.Tensor  # [K, B, obs_dim]
    actions: torch.Tensor  # [K, B] int64
    rewards: torch.Tensor  # [K, B] float32
    next_obs: torch.Tensor  # [K, B, obs_dim]: the true next observation (final_obs at episode ends)
    terminated: torch.Tensor  # [K, B] 0/1 float: no bootstrap
    truncated: torch.Tensor  # [K, B] 0/1 float: bootstrap from next_obs (time limit, not a real end)


class ReplayBuffer:
    """K rings of ``capacity`` transitions, allocated once on ``device``.

    A transition is one packed float row ``obs | action | reward | next_obs | terminated |
    truncated``, so ``add`` is one ``index_copy_`` and ``sample`` one ``index_select`` whatever
    the number of fields. ``terminated`` and ``truncated`` are stored apart; the learner reads
    only ``terminated`` (``truncated`` rides along in the same row at no extra cost). The write
    position and fill level are device tensors shared by the agents (they add in lockstep), so
    both methods are sync-free tensor programs.
    """

    def __init__(self, capacity: int, obs_dim: int, agents: int = 1, device="cpu"):
        if capacity < 1 or agents < 1:
            raise ValueError(f"capacity and agents must be >= 1, got {capacity} and {agents}")
        self.capacity, self.obs_dim, self.agents = capacity, obs_dim, agents
        self.device = torch.device(device)
        self.width = 2 * obs_dim + 4
        self.data = torch.zeros(agents, capacity, self.width, dtype=torch.float32, device=self.device)
        self.pos = torch.zeros((), dtype=torch.int64, device=self.device)  # next write index
        self.size = torch.zeros((), dtype=torch.int64, device=self.device)  # valid rows per agent
        self._offsets = torch.arange(agents, device=self.device)[:, None] * capacity
        self._ranges: dict[int, torch.Tensor] = {}

    def add(self, obs, actions, rewards, next_obs, terminated, truncated) -> None:
        """Append N transitions per agent (arguments ``[K, N]`` or ``[K, N, obs_dim]``). If N >
        capacity, only the last ``capacity`` are kept."""
        f = self.data.dtype
        row = torch.cat([obs.to(f), actions[..., None].to(f), rewards[..., None].to(f), next_obs.to(f),
                         terminated[..., None].to(f), truncated[..., None].to(f)], dim=-1)
        n = row.shape[1]
        if n > self.capacity:
            row, n = row[:, n - self.capacity:], self.capacity
        if n not in self._ranges:
            self._ranges[n] = torch.arange(n, device=self.device)
        self.data.index_copy_(1, (self.pos + self._ranges[n]).remainder_(self.capacity), row)
        self.pos.add_(n).remainder_(self.capacity)
        self.size.add_(n).clamp_(max=self.capacity)

    def sample(self, bits: torch.Tensor) -> Batch:
        """The transitions at uniform indices in ``[0, size)`` drawn from ``bits [K, B]`` (random
        int64 values in ``[0, 2**32)``: index ``= bits * size >> 32``); agent k reads its own ring."""
        return self.gather((bits * self.size) >> 32)

    def gather(self, idx: torch.Tensor) -> Batch:
        """The transitions at ring indices ``idx [K, B]`` (agent k's row ``idx[k, b]`` of its own ring)."""
        rows = self.data.view(-1, self.width).index_select(0, (idx + self._offsets).view(-1))
        rows = rows.view(*idx.shape, self.width)
        d = self.obs_dim
        return Batch(rows[..., :d], rows[..., d].long(), rows[..., d + 1], rows[..., d + 2:2 * d + 2],
                     rows[..., 2 * d + 2], rows[..., 2 * d + 3])

    def state_dict(self) -> dict:
        return {"data": self.data, "pos": self.pos, "size": self.size}

    def load_state_dict(self, d: dict) -> None:
        if tuple(d["data"].shape) != tuple(self.data.shape):
            raise ValueError(f"replay data has shape {tuple(d['data'].shape)}, expected {tuple(self.data.shape)}")
        self.data.copy_(d["data"])
        self.pos.copy_(d["pos"])
        self.size.copy_(d["size"])
