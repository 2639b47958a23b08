"""Evaluation of a policy on Gymnasium's own env (the independent reference env)."""

from __future__ import annotations

import numpy as np


def gymnasium_returns(policy, env_id: str = "CartPole-v1", episodes: int = 100, seed: int = 12345) -> np.ndarray:
    """Greedy returns of ``episodes`` episodes of Gymnasium's own env for ``env_id`` (the spec's
    ``gym_id``), one per sub-env of its vector env (its own vectorised implementation where it has
    one, as CartPole does, else ``sync``), reset with ``seed``. ``policy`` maps float32 obs
    ``[B, *obs_shape]`` to actions ``[B]``."""
    import gymnasium as gym

    from fastdqn.envs import spec

    gym_id = spec(env_id).gym_id
    has_vector = gym.spec(gym_id).vector_entry_point is not None
    env = gym.make_vec(gym_id, num_envs=episodes, vectorization_mode="vector_entry_point" if has_vector else "sync")
    obs, _ = env.reset(seed=seed)
    returns = np.zeros(episodes)
    running = np.ones(episodes, dtype=bool)
    while running.any():
        obs, reward, terminated, truncated, _ = env.step(np.asarray(policy(np.asarray(obs, dtype=np.float32)),
                                                                    dtype=np.int64))
        returns += reward * running
        running &= ~(terminated | truncated)
    env.close()
    return returns
