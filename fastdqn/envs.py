"""The env protocol: :class:`EnvSpec`, the registry of native batched envs, and :func:`make`.

Every layer above the env (engine, replay, networks, evaluation, plots, CLI) reads an
:class:`EnvSpec`, never a class constant. An id resolves one of two ways:

* **native**: ``CartPole-v1``, ``CartPole-v0``, ``Acrobot-v1``, ``MountainCar-v0`` -- batched
  dynamics on torch tensors (any device, compilable) or numba kernels (CPU), equal to Gymnasium's;
* **Gymnasium** (the slow path): any other installed Gymnasium id with a ``Box`` observation and
  ``Discrete`` actions (``LunarLander-v3`` with ``pip install "gymnasium[box2d]"``, or an env
  you register), stepped through ``gymnasium.make_vec`` and copied to the training device.

Both give the same batched API: ``reset() -> obs [N, *obs_shape]``, ``step(actions [N]) ->
StepResult(obs, reward, terminated, truncated, final_obs)`` with same-step autoreset, seed groups
(``seed=[s0, s1, ...]``: one group per agent of a population) and ``state_dict``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


class EnvError(ValueError):
    """An env id that cannot be used (message is one readable line)."""


@dataclass(frozen=True)
class EnvSpec:
    """What every layer above an env needs to know about it."""

    id: str
    obs_shape: tuple[int, ...]  # one observation; a batch is [N, *obs_shape]
    obs_dtype: torch.dtype  # of the observations the trainer stores (float32 for classic control)
    n_actions: int  # Discrete(n_actions): actions are 0 .. n_actions - 1
    max_episode_steps: int  # truncation horizon
    reward_threshold: float | None  # "solved" at this mean return (None: never solved)
    gym_id: str  # the Gymnasium id that evaluates and renders policies trained on it
    return_range: tuple[float, float] | None = None  # the y-range of learning-curve plots (None: from the data)
    native: bool = True  # a native batched env (False: the Gymnasium slow path)
    factory: object = field(default=None, repr=False, compare=False)  # native: (num_envs, **kw) -> env
    native_backends: tuple[str, ...] = ("torch", "numba")  # the backends of a native env

    @property
    def backends(self) -> tuple[str, ...]:
        return self.native_backends if self.native else ("gymnasium",)

    @property
    def obs_size(self) -> int:
        return math.prod(self.obs_shape)


def _cartpole(num_envs, **kw):
    from fastdqn.cartpole import CartPole

    return CartPole(num_envs, **kw)


def _classic(name):
    def make(num_envs, **kw):
        from fastdqn import classic
        from fastdqn.vector import VectorEnv

        return VectorEnv(getattr(classic, name)(), num_envs, **kw)

    return make


NATIVE: dict[str, EnvSpec] = {
    "CartPole-v1": EnvSpec("CartPole-v1", (4,), torch.float32, 2, 500, 475.0, "CartPole-v1", (0.0, 500.0),
                           factory=_cartpole),
    "CartPole-v0": EnvSpec("CartPole-v0", (4,), torch.float32, 2, 200, 195.0, "CartPole-v0", (0.0, 200.0),
                           factory=_cartpole),
    "Acrobot-v1": EnvSpec("Acrobot-v1", (6,), torch.float32, 3, 500, -100.0, "Acrobot-v1", (-500.0, 0.0),
                          factory=_classic("Acrobot")),
    "MountainCar-v0": EnvSpec("MountainCar-v0", (2,), torch.float32, 3, 200, -110.0, "MountainCar-v0", (-200.0, 0.0),
                              factory=_classic("MountainCar")),
}
# MinAtar (Young & Tian 2019): ten-by-ten games observed as one bool channel per object kind.
# -v1 is the game's minimal action set, -v0 all six actions (as the reference package names them).
# The reference has no time limit; fastdqn truncates at MINATAR_HORIZON steps.
MINATAR_GAMES = {  # name -> (module of fastdqn.minatar, class, channels, minimal actions)
    "Breakout": ("breakout", "Breakout", 4, 3),
    "SpaceInvaders": ("space_invaders", "SpaceInvaders", 6, 4),
    "Freeway": ("freeway", "Freeway", 7, 3),
    "Asterix": ("asterix", "Asterix", 4, 5),
    "Seaquest": ("seaquest", "Seaquest", 10, 6),
}
MINATAR_HORIZON = 10_000
# games with numba kernels (fastdqn.minatar.NUMBA_GAMES, by module name)
MINATAR_NUMBA = ("Breakout", "Asterix", "Freeway", "SpaceInvaders", "Seaquest")


def _minatar(module, cls, env_id):
    def make(num_envs, sticky_action_prob: float = 0.1, difficulty_ramping: bool = True, **kw):
        import importlib

        from fastdqn.minatar import MinAtarDynamics
        from fastdqn.vector import VectorEnv

        game = getattr(importlib.import_module(f"fastdqn.minatar.{module}"), cls)(difficulty_ramping)
        dyn = MinAtarDynamics(game, env_id.endswith("-v1"), sticky_action_prob)
        dyn.spec = NATIVE[env_id]
        return VectorEnv(dyn, num_envs, **kw)

    return make


for _name, (_module, _cls, _channels, _minimal) in MINATAR_GAMES.items():
    for _v, _n in (("v0", 6), ("v1", _minimal)):
        _id = f"MinAtar/{_name}-{_v}"
        NATIVE[_id] = EnvSpec(_id, (_channels, 10, 10), torch.bool, _n, MINATAR_HORIZON, None, _id, None,
                              factory=_minatar(_module, _cls, _id),
                              native_backends=("torch", "numba") if _name in MINATAR_NUMBA else ("torch",))
_GYM_CACHE: dict[str, EnvSpec] = {}


def native_ids() -> list[str]:
    return list(NATIVE)


def spec(env_id: str) -> EnvSpec:
    """The :class:`EnvSpec` of a native id, or of an installed Gymnasium id the slow path can take;
    anything else is an :class:`EnvError` saying why in one line."""
    if not isinstance(env_id, str) or not env_id:
        raise EnvError(f"env id must be a non-empty string, got {env_id!r}")
    if env_id in NATIVE:
        return NATIVE[env_id]
    if env_id not in _GYM_CACHE:
        _GYM_CACHE[env_id] = _gymnasium_spec(env_id)
    return _GYM_CACHE[env_id]


def _unknown(env_id: str) -> EnvError:
    return EnvError(f"unknown env id {env_id!r}: native ids are {', '.join(NATIVE)}; any installed Gymnasium id with "
                    "a Box observation and Discrete actions also works (e.g. LunarLander-v3 after "
                    "pip install 'gymnasium[box2d]')")


def _gymnasium_spec(env_id: str) -> EnvSpec:
    import gymnasium as gym

    try:
        gspec = gym.spec(env_id)
    except gym.error.Error:
        raise _unknown(env_id) from None
    try:
        env = gym.make(env_id)
    except gym.error.DependencyNotInstalled as e:
        raise EnvError(f"{env_id} needs a package that is not installed: {str(e).strip().splitlines()[0]}") from None
    except Exception as e:  # noqa: BLE001 - any env constructor error: say it in one line
        raise EnvError(f"cannot make Gymnasium env {env_id}: {type(e).__name__}: {e}") from None
    try:
        obs_space, act_space = env.observation_space, env.action_space
    finally:
        env.close()
    if not isinstance(act_space, gym.spaces.Discrete):
        raise EnvError(f"{env_id} has {type(act_space).__name__} actions ({act_space}); DQN needs Discrete actions")
    if not isinstance(obs_space, gym.spaces.Box):
        raise EnvError(f"{env_id} has a {type(obs_space).__name__} observation space; the Gymnasium path takes Box "
                       "observations only")
    if obs_space.dtype == "uint8" and len(obs_space.shape) >= 2:
        raise EnvError(f"{env_id} observes images {obs_space.shape} uint8; the Gymnasium path feeds observations "
                       "to an MLP and takes vector (Box float) observations only")
    if int(act_space.start) != 0:
        raise EnvError(f"{env_id}'s actions start at {int(act_space.start)}; the trainer needs actions 0 .. n-1")
    steps = gspec.max_episode_steps
    if steps is None:
        raise EnvError(f"{env_id} has no max_episode_steps in its Gymnasium registration; register it with one "
                       "(the trainer's evaluation needs a horizon)")
    return EnvSpec(env_id, tuple(int(d) for d in obs_space.shape), torch.float32, int(act_space.n), int(steps),
                   None if gspec.reward_threshold is None else float(gspec.reward_threshold), env_id, None,
                   native=False)


def default_backend(s: EnvSpec, device) -> str:
    """``auto``: numba on a CPU, torch elsewhere (native envs); the Gymnasium path for the rest."""
    if not s.native:
        return "gymnasium"
    return "numba" if torch.device(device).type == "cpu" and "numba" in s.backends else "torch"


def make(env_id: str, num_envs: int, backend: str = "auto", device="cpu", seed=None, dtype=torch.float32,
         max_episode_steps: int | None = None, compile: bool = False, **options):
    """``num_envs`` copies of ``env_id`` stepped as one batch (see the module docstring).

    ``backend``: ``"numba"`` (CPU kernels), ``"torch"`` (any device), ``"auto"`` (numba on a
    CPU, torch on a GPU) for native ids; Gymnasium ids always take the ``"gymnasium"`` path
    (``"auto"`` or ``"gymnasium"``). ``seed``: an int, None, or one seed per equal group of envs.
    ``dtype``: the state and observation dtype of native envs (float32 or float64; Gymnasium
    integrates in float64; MinAtar games keep int32 states and bool frames whatever ``dtype``).
    ``max_episode_steps``: the truncation horizon (default: the spec's). ``options``: the env's
    own (MinAtar: ``sticky_action_prob=0.1``, ``difficulty_ramping=True``).
    """
    s = spec(env_id)
    if backend == "auto":
        backend = default_backend(s, device)
    if backend not in s.backends:
        raise EnvError(f"backend {backend!r} is not available for {env_id}; it has: auto, {', '.join(s.backends)}")
    steps = s.max_episode_steps if max_episode_steps is None else max_episode_steps
    if not s.native:
        if options:
            raise EnvError(f"{env_id} takes no env options, got {', '.join(options)}")
        from fastdqn.gym_vector import GymnasiumVectorEnv

        return GymnasiumVectorEnv(s, num_envs, device=device, seed=seed, max_episode_steps=steps)
    env = s.factory(num_envs, backend=backend, device=device, dtype=dtype, max_episode_steps=steps, seed=seed,
                    compile=compile, **options)
    env.spec = s
    return env
