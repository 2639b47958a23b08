"""Evaluation of a policy on Gymnasium's own env (the independent reference env): Gymnasium's
classic-control and Box2D envs, or the MinAtar reference package's Gymnasium envs for MinAtar ids
(sticky actions 0.1, as the reference scores; truncated at the spec's horizon)."""

from __future__ import annotations

import numpy as np


def gymnasium_returns(policy, env_id: str = "CartPole-v1", episodes: int = 100, seed: int = 12345) -> np.ndarray:
    """Greedy returns of ``episodes`` episodes of Gymnasium's own env for ``env_id`` (the spec's
    ``gym_id``), one per sub-env of its vector env (its own vectorised implementation where it has
    one, as CartPole does, else ``sync``), reset with ``seed``. ``policy`` maps float32 obs
    ``[B, *obs_shape]`` to actions ``[B]``."""
    import gymnasium as gym

    from fastdqn.envs import spec

    s = spec(env_id)
    gym_id = s.gym_id
    if gym_id.startswith("MinAtar/"):
        _register_minatar()
    has_vector = gym.spec(gym_id).vector_entry_point is not None
    horizon = {} if gym.spec(gym_id).max_episode_steps else {"max_episode_steps": s.max_episode_steps}
    env = gym.make_vec(gym_id, num_envs=episodes, vectorization_mode="vector_entry_point" if has_vector else "sync",
                       **horizon)
    obs, _ = env.reset(seed=seed)
    # channels-last images (the MinAtar reference's [10, 10, C]) are fed channels-first, as fastdqn's envs give them
    channels_last = len(s.obs_shape) == 3 and tuple(obs.shape[1:]) == (*s.obs_shape[1:], s.obs_shape[0])
    returns = np.zeros(episodes)
    running = np.ones(episodes, dtype=bool)
    while running.any():
        x = np.asarray(obs, dtype=np.float32)
        actions = policy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if channels_last else x)
        obs, reward, terminated, truncated, _ = env.step(np.asarray(actions, dtype=np.int64))
        returns += reward * running
        running &= ~(terminated | truncated)
    env.close()
    return returns


def _register_minatar() -> None:
    """Register the MinAtar reference package's Gymnasium ids (its ``register_envs``), or say in
    one line how to install it."""
    import gymnasium as gym

    from fastdqn.envs import EnvError

    if "MinAtar/Breakout-v1" in gym.registry:
        return
    try:
        from minatar.gym import register_envs
    except ImportError:
        raise EnvError("scoring a MinAtar policy on the reference games needs the reference package: "
                       "pip install 'fastdqn[minatar]' (minatar==1.0.15)") from None
    register_envs()
