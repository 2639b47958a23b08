"""Evaluation of a policy on Gymnasium's own CartPole (the independent reference env)."""

from __future__ import annotations

import numpy as np


def gymnasium_returns(policy, env_id: str = "CartPole-v1", episodes: int = 100, seed: int = 12345) -> np.ndarray:
    """Greedy returns of ``episodes`` episodes of Gymnasium's ``env_id``, one per env of its own
    ``CartPoleVectorEnv``, reset with ``seed``. ``policy`` maps float32 obs [B, 4] to actions [B]."""
    import gymnasium as gym

    env = gym.make_vec(env_id, num_envs=episodes, vectorization_mode="vector_entry_point")
    obs, _ = env.reset(seed=seed)
    returns = np.zeros(episodes)
    running = np.ones(episodes, dtype=bool)
    while running.any():
        obs, reward, terminated, truncated, _ = env.step(np.asarray(policy(obs), dtype=np.int64))
        returns += reward * running
        running &= ~(terminated | truncated)
    env.close()
    return returns
