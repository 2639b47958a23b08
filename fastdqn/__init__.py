"""fastdqn: batched envs (CartPole, Acrobot, MountainCar, any Gymnasium id) and a vectorized DQN trainer.

``import fastdqn`` registers ``fastdqn/CartPole-v1`` and ``fastdqn/CartPole-v0`` with Gymnasium.
"""

from __future__ import annotations

from fastdqn.cartpole import CartPole, StepResult, physics
from fastdqn.checkpoint import load_policy
from fastdqn.config import DQNConfig, preset
from fastdqn.envs import EnvSpec, make
from fastdqn.gym_adapter import register_envs

__version__ = "0.1.0"
__all__ = ["CartPole", "StepResult", "physics", "DQNConfig", "EnvSpec", "make", "preset", "train", "load_policy",
           "__version__"]


def train(config=None, out=None, resume: bool = False, population: int = 1, net=None):
    """Train one agent or a population with ``config`` (one config or a list, one per agent;
    default: the 'fast' preset); see :func:`fastdqn.train.train`."""
    from fastdqn.train import train as _train

    return _train(config if config is not None else preset("fast"), out=out, resume=resume, population=population,
                  net=net)

register_envs()
