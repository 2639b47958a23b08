"""fastdqn: batched CartPole and a vectorized DQN trainer.

``import fastdqn`` registers ``fastdqn/CartPole-v1`` and ``fastdqn/CartPole-v0`` with Gymnasium.
"""

from fastdqn.cartpole import CartPole, StepResult, physics
from fastdqn.gym_adapter import register_envs

__version__ = "0.1.0"
__all__ = ["CartPole", "StepResult", "physics", "__version__"]

register_envs()
