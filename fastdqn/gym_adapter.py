"""Gymnasium vector-env adapter: ``gymnasium.make_vec("fastdqn/CartPole-v1", num_envs=N)``.

Behaves like Gymnasium's own ``CartPoleVectorEnv``: numpy in and out, float32 observations,
next-step autoreset (an env that ended returns its final observation now; on the following
step it ignores its action, returns the reset observation with reward 0 and both flags False),
the same spaces, and the same physics values for the same states and actions. The physics runs
in float64 like Gymnasium's; observations are rounded to float32 on the way out.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from fastdqn.cartpole import THETA_THRESHOLD, X_THRESHOLD, CartPole, physics

ENV_IDS = {"fastdqn/CartPole-v1": (500, 475.0), "fastdqn/CartPole-v0": (200, 195.0)}


def register_envs() -> None:
    for env_id, (max_steps, threshold) in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                vector_entry_point="fastdqn.gym_adapter:CartPoleVectorEnv",
                max_episode_steps=max_steps,
                reward_threshold=threshold,
            )


class CartPoleVectorEnv(VectorEnv):
    """N CartPoles behind Gymnasium's ``VectorEnv`` API (next-step autoreset)."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, max_episode_steps: int = 500, render_mode: str | None = None):
        if render_mode is not None:
            raise ValueError(f"render_mode must be None for fastdqn's CartPole vector env, got {render_mode!r}")
        # The batched env owns the buffers and the RNG; this adapter drives the physics itself
        # because next-step autoreset steps an env that ended and resets it one call later.
        self._env = CartPole(num_envs, backend="torch", dtype=torch.float64, max_episode_steps=max_episode_steps)
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.render_mode = None
        high = np.array([X_THRESHOLD * 2, np.inf, THETA_THRESHOLD * 2, np.inf], dtype=np.float32)
        self.single_observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.single_action_space = spaces.Discrete(2)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._prev_done = torch.zeros(num_envs, dtype=torch.bool)

    @property
    def state(self) -> np.ndarray:
        """Current states ``[N, 4]`` float64 (a writable numpy view)."""
        return self._env.state.numpy()

    @state.setter
    def state(self, value) -> None:
        self._env.state = torch.as_tensor(np.asarray(value, dtype=np.float64))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options:
            raise ValueError(f"reset options are not supported, got {sorted(options)}")
        self._prev_done.zero_()
        obs = self._env.reset(seed=seed)
        return obs.numpy().astype(np.float32), {}

    def step(self, actions):
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape ({self.num_envs},), got {actions.shape}")
        if not np.issubdtype(actions.dtype, np.integer) and actions.dtype != np.bool_:
            raise ValueError(f"actions must be integers in {{0, 1}}, got dtype {actions.dtype}")
        bad = (actions != 0) & (actions != 1)
        if bad.any():
            raise ValueError(f"actions must be 0 or 1, got {actions[bad][0]} ({int(bad.sum())} invalid)")
        env = self._env
        next_state, terminated = physics(env.state, torch.from_numpy(actions))
        elapsed = env.elapsed_steps + 1
        truncated = elapsed >= self.max_episode_steps
        # Envs that ended on the previous call restart now, ignoring this call's action.
        prev = self._prev_done
        env.state = torch.where(prev[:, None], env.draw_resets(), next_state)
        env.elapsed_steps.copy_(elapsed.masked_fill(prev, 0))
        terminated = terminated & ~prev
        truncated = truncated & ~prev
        reward = (~prev).to(torch.float32)
        self._prev_done = terminated | truncated
        obs = env.state.numpy().astype(np.float32)
        return obs, reward.numpy(), terminated.numpy(), truncated.numpy(), {}

    def __repr__(self) -> str:
        return f"fastdqn.CartPoleVectorEnv(num_envs={self.num_envs}, max_episode_steps={self.max_episode_steps})"
