"""Shared fixtures: random CartPole states and Gymnasium's own CartPole as the reference.

Every reference value in these tests comes from Gymnasium's code (``CartPoleEnv`` stepped one
env at a time, or ``CartPoleVectorEnv``), from a hand computation, or from the pure-Python RNG
reference -- never from fastdqn itself.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from gymnasium.envs.classic_control.cartpole import CartPoleEnv, CartPoleVectorEnv

# The numba backend switches to its threaded kernels at a batch size it measures per machine;
# tests pin the switch so that the sizes they pick exercise each kernel on every machine.
os.environ.setdefault("FASTDQN_PARALLEL_MIN_ENVS", "4096")

X_THRESHOLD = 2.4
THETA_THRESHOLD = 12 * 2 * math.pi / 360  # 0.20943951023931953, as Gymnasium computes it
RESET_BOUND = 0.05

N_RANDOM = 100_000
N_NEAR = 10_000  # per threshold (x and theta), half on each side


def make_states(seed: int = 0) -> np.ndarray:
    """[N_RANDOM + 2 * N_NEAR, 4] float64 states.

    The first block spans x, x_dot in [-3, 3], theta in [-0.3, 0.3], theta_dot in [-3.5, 3.5]
    (inside and beyond the termination region). The second block puts x within 1e-3 of +-2.4
    with velocities that move it up to 2e-3 per step (so the step crosses the threshold or
    not), the third does the same for theta around +-12 degrees.
    """
    rng = np.random.default_rng(seed)
    lo = np.array([-3.0, -3.0, -0.3, -3.5])
    wide = rng.uniform(lo, -lo, size=(N_RANDOM, 4))

    near_x = rng.uniform(-0.05, 0.05, size=(N_NEAR, 4))
    sign = rng.choice([-1.0, 1.0], size=N_NEAR)
    near_x[:, 0] = sign * X_THRESHOLD + rng.uniform(-1e-3, 1e-3, N_NEAR)
    near_x[:, 1] = rng.uniform(-0.1, 0.1, N_NEAR)  # tau * x_dot in [-2e-3, 2e-3]

    near_t = rng.uniform(-0.05, 0.05, size=(N_NEAR, 4))
    sign = rng.choice([-1.0, 1.0], size=N_NEAR)
    near_t[:, 2] = sign * THETA_THRESHOLD + rng.uniform(-1e-3, 1e-3, N_NEAR)
    near_t[:, 3] = rng.uniform(-0.1, 0.1, N_NEAR)
    return np.concatenate([wide, near_x, near_t])


@pytest.fixture(scope="session")
def states() -> np.ndarray:
    return make_states(0)


@pytest.fixture(scope="session")
def actions(states) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 2, size=len(states), dtype=np.int64)


def gym_vector_step(states: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One step of Gymnasium's ``CartPoleVectorEnv`` from float64 ``states [N, 4]``.

    Returns the float64 post-step states ``[N, 4]`` and the terminated flags ``[N]``.
    """
    n = len(states)
    venv = CartPoleVectorEnv(num_envs=n)
    venv.reset(seed=0)
    venv.state = np.ascontiguousarray(np.asarray(states, dtype=np.float64).T)
    venv.prev_done[:] = False
    _, reward, terminated, truncated, _ = venv.step(np.asarray(actions, dtype=np.int64))
    assert np.all(reward == 1.0) and not truncated.any()
    return venv.state.T.copy(), terminated.copy()


def gym_single_step(states: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step Gymnasium's single ``CartPoleEnv`` once from each state (a Python loop).

    Returns float64 post-step states ``[N, 4]``, terminated ``[N]`` and rewards ``[N]``.
    """
    env = CartPoleEnv()
    env.reset(seed=0)
    out = np.empty((len(states), 4))
    term = np.empty(len(states), dtype=bool)
    rew = np.empty(len(states))
    for i, (s, a) in enumerate(zip(states, actions, strict=True)):
        env.reset()  # clears steps_beyond_terminated so a terminating step pays reward 1
        env.state = np.array(s, dtype=np.float64)
        _, rew[i], term[i], truncated, _ = env.step(int(a))
        assert not truncated
        out[i] = env.state
    return out, term, rew


@pytest.fixture(scope="session")
def gym_reference():
    """Callable ``(states_f64, actions) -> (next_states_f64, terminated)`` via CartPoleVectorEnv."""
    return gym_vector_step


@pytest.fixture(scope="session")
def gym_single_reference():
    """Callable ``(states_f64, actions) -> (next_states_f64, terminated, reward)`` via CartPoleEnv."""
    return gym_single_step


def near_threshold(next_states: np.ndarray, x_tol: float, theta_tol: float) -> np.ndarray:
    """Rows whose post-step |x| or |theta| lies within rounding distance of a threshold."""
    return (np.abs(np.abs(next_states[:, 0]) - X_THRESHOLD) <= x_tol) | (
        np.abs(np.abs(next_states[:, 2]) - THETA_THRESHOLD) <= theta_tol
    )


@pytest.fixture(scope="session")
def near_threshold_mask():
    return near_threshold


def balancing_actions(state: np.ndarray) -> np.ndarray:
    """A linear state-feedback controller that keeps CartPole up for 500+ steps from any reset
    state (push right when the pole leans or falls right, with small cart-centering gains)."""
    s = np.asarray(state, dtype=np.float64)
    return ((s @ np.array([0.1, 0.3, 1.0, 0.3])) > 0).astype(np.int64)


@pytest.fixture(scope="session")
def balance_policy():
    return balancing_actions

