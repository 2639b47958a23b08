"""Preallocated circular replay buffer on the training device."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Batch(NamedTuple):
    obs: torch.Tensor  # [B, obs_dim]
    actions: torch.Tensor  # [B] int64
    rewards: torch.Tensor  # [B] float32
    next_obs: torch.Tensor  # [B, obs_dim]: the true next observation (final_obs at episode ends)
    terminated: torch.Tensor  # [B] bool: no bootstrap
    truncated: torch.Tensor  # [B] bool: bootstrap from next_obs (time limit, not a real end)


class ReplayBuffer:
    """Fixed-capacity ring of transitions, allocated once at full size on ``device``.

    ``add`` writes a batch of N transitions at the write position, wrapping around; the write
    position and fill level are host integers that advance deterministically (no device sync).
    ``sample`` draws uniform indices on the device.
    """

    def __init__(self, capacity: int, obs_dim: int, device="cpu", obs_dtype=torch.float32):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.device = torch.device(device)
        dev = self.device
        self.obs = torch.zeros(capacity, obs_dim, dtype=obs_dtype, device=dev)
        self.next_obs = torch.zeros(capacity, obs_dim, dtype=obs_dtype, device=dev)
        self.actions = torch.zeros(capacity, dtype=torch.int64, device=dev)
        self.rewards = torch.zeros(capacity, dtype=torch.float32, device=dev)
        self.terminated = torch.zeros(capacity, dtype=torch.bool, device=dev)
        self.truncated = torch.zeros(capacity, dtype=torch.bool, device=dev)
        self.pos = 0  # next write index
        self.size = 0  # number of valid rows

    def _fields(self):
        return (self.obs, self.actions, self.rewards, self.next_obs, self.terminated, self.truncated)

    def add(self, obs, actions, rewards, next_obs, terminated, truncated) -> None:
        """Append N transitions (each argument has leading dim N). If N > capacity, only the
        last ``capacity`` are kept."""
        values = (obs, actions, rewards, next_obs, terminated, truncated)
        n = values[0].shape[0]
        if n > self.capacity:
            values = tuple(v[n - self.capacity:] for v in values)
            n = self.capacity
        first = min(n, self.capacity - self.pos)  # rows before the wrap
        for dst, src in zip(self._fields(), values):
            dst[self.pos:self.pos + first] = src[:first]
            if first < n:
                dst[: n - first] = src[first:]
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = torch.randint(0, self.size, (batch_size,), device=self.device, generator=generator)
        return Batch(*(f[idx] for f in self._fields()))

    def state_dict(self) -> dict:
        return {"pos": self.pos, "size": self.size, **{n: f for n, f in zip(Batch._fields, self._fields())}}

    def load_state_dict(self, d: dict) -> None:
        for name, f in zip(Batch._fields, self._fields()):
            if d[name].shape != f.shape:
                raise ValueError(f"replay field {name} has shape {tuple(d[name].shape)}, expected {tuple(f.shape)}")
            f.copy_(d[name])
        self.pos, self.size = int(d["pos"]), int(d["size"])
