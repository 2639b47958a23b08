"""The slow path of the env protocol: any Gymnasium id with a Box observation and Discrete actions.

:class:`GymnasiumVectorEnv` steps ``num_envs`` Gymnasium envs through ``gymnasium.make_vec``
(the ``sync`` vectorisation, same-step autoreset) and gives the same batched API as the native
envs: torch tensors on the training device, ``StepResult(obs, reward, terminated, truncated,
final_obs)``, seed groups. Every step crosses to numpy on the host and back, so it runs at the
Gymnasium env's own speed; a native env runs orders of magnitude faster.
"""

from __future__ import annotations

import numpy as np
import torch

from fastdqn.kernels import rng
from fastdqn.vector import StepResult, copy_into


class GymnasiumVectorEnv:
    """``num_envs`` copies of the Gymnasium env of ``spec`` (an :class:`~fastdqn.envs.EnvSpec`
    with ``native=False``). ``seed``: an int, None, or one per equal group of envs; sub-env ``i``
    of group ``g`` is reset first with a seed derived from ``(seed_g, i)``, then continues its own
    Gymnasium RNG through its autoresets.

    Gymnasium envs cannot be snapshotted in general, so ``state_dict`` records only the seeds: an
    env restored from it (a resumed run) starts fresh episodes (``last_reset_obs``).
    :meth:`take_groups` keeps the sub-env objects themselves, so a population that sheds agents
    keeps the others' episodes going.
    """

    backend = "gymnasium"

    def __init__(self, spec, num_envs: int, device="cpu", seed=None, max_episode_steps: int | None = None,
                 _envs=None):
        import gymnasium as gym
        from gymnasium.vector import AutoresetMode

        self.spec = spec
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        self.num_envs, self.device = num_envs, torch.device(device)
        self.max_episode_steps = max_episode_steps or spec.max_episode_steps
        self.n_actions = spec.n_actions
        self.dtype = torch.float32
        seeds = list(seed) if isinstance(seed, (list, tuple)) else [seed]
        if num_envs % len(seeds):
            raise ValueError(f"num_envs ({num_envs}) must be a multiple of the number of seeds ({len(seeds)})")
        self.groups, self.group_size = len(seeds), num_envs // len(seeds)
        self.seeds = seeds
        if _envs is None:
            fns = [lambda: gym.make(spec.gym_id, max_episode_steps=self.max_episode_steps)] * num_envs
        else:
            fns = [lambda e=e: e for e in _envs]
        self.venv = gym.vector.SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
        self.last_reset_obs = None  # the observations of the last reset (what load_state_dict starts from)
        if _envs is None:
            self.reset()

    def _sub_seeds(self) -> list[int | None]:
        out = []
        for s in self.seeds:
            key = rng.seed_key(s)
            out += [None if s is None else rng.splitmix64((key + i) & rng.MASK64) >> 33 for i in range(self.group_size)]
        return out

    def _tensor(self, x) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float32)).to(self.device)

    def reset(self, seed=None) -> torch.Tensor:
        if seed is not None:
            self.seeds = list(seed) if isinstance(seed, (list, tuple)) else [seed] * self.groups
        obs, _ = self.venv.reset(seed=self._sub_seeds())
        self.last_reset_obs = self._tensor(obs)
        return self.last_reset_obs

    def step(self, actions: torch.Tensor, check: bool = True, out: StepResult | None = None) -> StepResult:
        a = actions.detach().cpu().numpy().astype(np.int64)
        if check and (a.shape != (self.num_envs,) or (a < 0).any() or (a >= self.n_actions).any()):
            raise ValueError(f"actions must be {self.num_envs} integers in [0, {self.n_actions - 1}]")
        obs, reward, terminated, truncated, info = self.venv.step(a)
        final = obs
        if "_final_obs" in info and info["_final_obs"].any():
            final = np.array(obs, dtype=np.float32, copy=True)
            for i in np.flatnonzero(info["_final_obs"]):
                final[i] = info["final_obs"][i]
        res = StepResult(self._tensor(obs), torch.as_tensor(np.asarray(reward, dtype=np.float32)).to(self.device),
                         torch.as_tensor(terminated).to(self.device), torch.as_tensor(truncated).to(self.device),
                         self._tensor(final))
        return copy_into(out, res)

    def state_dict(self) -> dict:
        return {"seeds": list(self.seeds)}

    def load_state_dict(self, d: dict) -> None:
        self.reset(seed=list(d["seeds"]))

    def take_groups(self, groups: list[int]) -> GymnasiumVectorEnv:
        """A new env of the seed groups ``groups`` (in that order) that keeps their sub-envs, each
        exactly where it is."""
        n = self.group_size
        envs = [self.venv.envs[g * n + i] for g in groups for i in range(n)]
        new = GymnasiumVectorEnv(self.spec, len(envs), self.device, [self.seeds[g] for g in groups],
                                 self.max_episode_steps, _envs=envs)
        return new

    def close(self) -> None:
        self.venv.close()

    def __repr__(self) -> str:
        return f"GymnasiumVectorEnv({self.spec.id!r}, num_envs={self.num_envs}, device={str(self.device)!r})"
