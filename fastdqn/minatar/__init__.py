"""MinAtar (Young & Tian 2019) games as batched torch dynamics for :class:`fastdqn.vector.VectorEnv`.

Each game is written from its rules (the MinAtar paper and the games' documented behaviour), for
``N`` envs at once: the state is an int32 tensor ``[S, N]`` (one column per env, rows named by
the game), a step takes the actions and the uniforms it needs, and every random event of a step
is decided by those uniforms, so the step is a pure function. The reference package
(``minatar``, GPL-3.0) is used only by the tests, as an oracle.

:class:`MinAtarDynamics` wraps a game with what every MinAtar env shares: the action set (``-v0``:
all six actions ``n l u r d f``; ``-v1``: the game's minimal set), sticky actions (with
probability ``sticky_action_prob`` the previous action is repeated; the previous action survives
episode ends, as in the reference) and observations ``[N, C, 10, 10]`` bool, channels in the
reference's order.

A game provides: ``name``, ``channels``, ``minimal_actions`` (indices into ``n l u r d f``),
``state_dim``, ``n_uniforms`` (uniforms per reset), ``step_uniforms`` (per step, besides the
sticky-action draw), ``reset_state(u, dtype) -> [S, N]``, ``step(s, a, u) -> (s, reward,
terminal)`` with ``a`` in the full six-action set, ``observe(s) -> [N, C, 10, 10]`` bool and
``difficulty(s) -> [N]`` (the ramp index; zeros for games that do not ramp).
"""

from __future__ import annotations

import torch

ACTIONS = ("n", "l", "u", "r", "d", "f")  # the full action set, in the reference's order
# games (by ``name``) with CPU kernels in fastdqn.kernels.minatar_numba
NUMBA_GAMES = ("breakout", "asterix", "freeway", "space_invaders", "seaquest")


def cells(s: torch.Tensor, first: int) -> torch.Tensor:
    """The 100 rows from ``first`` as a ``[10, 10, N]`` grid view (row y, column x)."""
    return s[first:first + 100].view(10, 10, -1)


def at(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A ``[N, 10, 10]`` bool plane with cell ``(y[i], x[i])`` set for each env ``i``."""
    grid = torch.arange(10, device=y.device)
    return (grid[None, :, None] == y[:, None, None]) & (grid[None, None, :] == x[:, None, None])


def one_hot_frame(n: int, channels: int, device) -> torch.Tensor:
    return torch.zeros(n, channels, 10, 10, dtype=torch.bool, device=device)


class MinAtarDynamics:
    """A MinAtar game plus the action set and sticky actions (see the module docstring).

    State row 0 is the previous action (full-set index; 0 at creation, kept across resets), the
    game's rows follow. Step uniform 0 decides stickiness, the rest go to the game. Games named in
    :data:`NUMBA_GAMES` also run on ``backend="numba"`` (``fastdqn/kernels/minatar_numba.py``: the
    same rules per env, equal step for step; ``constants()`` is what those kernels take)."""

    packed = True
    state_dtype = torch.int32
    obs_dtype = torch.bool
    kernels = None
    kept_on_reset = 1
    obs_env_major = True  # numba kernels write frames [N, C, 10, 10] (not component rows)

    def __init__(self, game, minimal: bool, sticky_action_prob: float = 0.1):
        if not 0.0 <= float(sticky_action_prob) <= 1.0:
            raise ValueError(f"sticky_action_prob must be in [0, 1], got {sticky_action_prob!r}")
        self.game, self.minimal, self.sticky_action_prob = game, minimal, float(sticky_action_prob)
        self.actions = tuple(game.minimal_actions) if minimal else tuple(range(len(ACTIONS)))
        self.state_dim = 1 + game.state_dim
        self.n_uniforms = game.n_uniforms
        self.step_uniforms = 1 + game.step_uniforms
        self._map = None
        if game.name in NUMBA_GAMES:
            self.kernels, self.prefix = "minatar_numba", game.name

    def constants(self, dtype=None):
        """What the numba kernels take: (sticky-action probability, action map, ramping)."""
        import numpy as np

        return (np.float64(self.sticky_action_prob), np.array(self.actions, dtype=np.int64),
                bool(getattr(self.game, "ramping", False)))

    def _action_map(self, device) -> torch.Tensor:
        if self._map is None or self._map.device != device:
            self._map = torch.tensor(self.actions, dtype=torch.int32, device=device)
        return self._map

    def reset_state(self, u, dtype):
        s = self.game.reset_state(u, dtype)
        return torch.cat([torch.zeros_like(s[:1]), s])

    def step(self, s, action, u):
        a = self._action_map(s.device)[action]
        a = torch.where(u[0] < self.sticky_action_prob, s[0], a)
        game, reward, terminal = self.game.step(s[1:], a, u[1:])
        return torch.cat([a[None].to(s.dtype), game]), reward, terminal

    def observe(self, s):
        return self.game.observe(s[1:])

    def difficulty(self, s):
        return self.game.difficulty(s[1:])
