"""Batched CartPole: Gymnasium's physics on torch tensors (any device) or a numba kernel (CPU).

The physics is a pure function, :func:`physics`, of ``(state, action)``; the :class:`CartPole`
object only owns buffers, the episode-step counters and the RNG counter. Autoreset is same-step:
``step`` returns the reset observation in ``obs`` for envs that finished and their true last
observation in ``final_obs``, so no transition is lost.

Memory layout: state and observations are exposed as ``[N, 4]`` tensors, stored
struct-of-arrays (a ``[4, N]`` buffer seen through ``.T``), so each component streams
contiguously; ``obs.is_contiguous()`` is therefore False. Call ``.contiguous()`` if you need
row-major memory.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from fastdqn.kernels import rng

BACKENDS = ("torch", "numba")
DTYPES = {"float32": torch.float32, "float64": torch.float64}

# Gymnasium's CartPoleEnv constants (computed the way it computes them, in float64).
GRAVITY = 9.8
MASSCART = 1.0
MASSPOLE = 0.1
TOTAL_MASS = MASSPOLE + MASSCART
LENGTH = 0.5  # half the pole's length
POLEMASS_LENGTH = MASSPOLE * LENGTH
FORCE_MAG = 10.0
TAU = 0.02
THETA_THRESHOLD = 12 * 2 * math.pi / 360
X_THRESHOLD = 2.4
RESET_LOW, RESET_HIGH = -0.05, 0.05


class StepResult(NamedTuple):
    """What :meth:`CartPole.step` returns (all tensors on the env's device)."""

    obs: torch.Tensor  # [N, 4] next observation; the reset observation where the episode ended
    reward: torch.Tensor  # [N] float32, 1.0 every step (the terminating step included)
    terminated: torch.Tensor  # [N] bool: pole fell or cart left the track
    truncated: torch.Tensor  # [N] bool: episode reached max_episode_steps
    final_obs: torch.Tensor  # [N, 4] true observation after the step, before any reset


def physics(state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One Euler step of CartPole: ``(state [..., 4], action [...]) -> (next_state, terminated)``.

    Same expressions, in the same order, as Gymnasium's ``CartPoleEnv.step``; arithmetic runs in
    ``state.dtype``. ``action`` 0 pushes left, anything else pushes right. ``next_state`` has the
    shape of ``state`` and struct-of-arrays memory.
    """
    x, x_dot, theta, theta_dot = state.unbind(-1)
    force = torch.where(action != 0, FORCE_MAG, -FORCE_MAG).to(state.dtype)
    costheta = torch.cos(theta)
    sintheta = torch.sin(theta)
    temp = (force + POLEMASS_LENGTH * (theta_dot * theta_dot) * sintheta) / TOTAL_MASS
    thetaacc = (GRAVITY * sintheta - costheta * temp) / (
        LENGTH * (4.0 / 3.0 - MASSPOLE * (costheta * costheta) / TOTAL_MASS)
    )
    xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS
    x = x + TAU * x_dot
    x_dot = x_dot + TAU * xacc
    theta = theta + TAU * theta_dot
    theta_dot = theta_dot + TAU * thetaacc
    terminated = (x < -X_THRESHOLD) | (x > X_THRESHOLD) | (theta < -THETA_THRESHOLD) | (theta > THETA_THRESHOLD)
    return torch.stack((x, x_dot, theta, theta_dot)).movedim(0, -1), terminated


def _as_signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


_GOLDEN = _as_signed(rng.GOLDEN)
_MIX1 = _as_signed(rng.MIX1)
_MIX2 = _as_signed(rng.MIX2)


def _lsr(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 holding uint64 bits (torch's >> is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _mix64(z: torch.Tensor) -> torch.Tensor:
    z = (z ^ _lsr(z, 30)) * _MIX1
    z = (z ^ _lsr(z, 27)) * _MIX2
    return z ^ _lsr(z, 31)


def reset_draw(key: torch.Tensor, round_: torch.Tensor, env_index: torch.Tensor, num_envs: int,
               dtype: torch.dtype) -> torch.Tensor:
    """Reset states ``[len(env_index), 4]`` of the envs ``env_index`` (of ``num_envs``) for draw
    ``round_``: the counter-based stream of :mod:`fastdqn.kernels.rng` (identical to the numba
    kernel's), uniform in [-0.05, 0.05). ``key`` (0-d, or one key per entry of ``env_index``) and
    ``round_`` (0-d or ``[1]``) are int64 tensors holding uint64 bits.
    """
    k = (round_ * num_envs + env_index) * 2
    rows = []
    for j in (1, 2):
        h = _mix64(key + (k + j) * _GOLDEN)
        rows += [_lsr(h, 32), h & 0xFFFFFFFF]
    u = torch.stack(rows).to(torch.float64) * rng.INV_2_32
    return (RESET_LOW + (RESET_HIGH - RESET_LOW) * u).to(dtype).T


def torch_step(state, elapsed, actions, max_episode_steps: int, key, round_, env_index, sparse_resets: bool,
               group_size: int | None = None):
    """Pure step with same-step autoreset: returns ``(StepResult, new_elapsed)``.

    ``key`` is one RNG key per env (or a 0-d key for all), ``env_index`` each env's index within
    its group of ``group_size`` envs (default: one group of all envs); see :class:`CartPole`.
    ``sparse_resets`` draws reset states only for the envs that finished (a data-dependent index:
    free on a CPU, a host sync on a GPU); otherwise every env gets a draw and ``where`` selects
    (sync-free, and fused away under ``torch.compile``). Both give identical values.
    """
    final_obs, terminated = physics(state, actions)
    elapsed = elapsed + 1
    truncated = elapsed >= max_episode_steps
    done = terminated | truncated
    n = done.shape[0]
    g = n if group_size is None else group_size
    if sparse_resets:
        idx = done.nonzero().squeeze(1)
        obs = final_obs.clone()
        k = key[idx] if key.ndim else key
        obs[idx] = reset_draw(k, round_, env_index[idx], g, state.dtype)
    else:
        obs = torch.where(done[:, None], reset_draw(key, round_, env_index, g, state.dtype), final_obs)
    reward = torch.ones(n, dtype=torch.float32, device=done.device)
    return StepResult(obs, reward, terminated, truncated, final_obs), elapsed.masked_fill(done, 0)


def _parse_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    if dtype in DTYPES.values():
        return dtype
    raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


def _parse_device(device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from None
    if dev.type == "cuda" and torch.cuda.is_available() and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())  # tensors report cuda:N, never bare cuda
    return dev


def _check_available(dev: torch.device) -> None:
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(dev)!r} was requested but torch sees no CUDA GPU; use device='cpu'")


def _check_positive_int(name: str, value, limit: int = 2**31 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise ValueError(f"{name} must be an integer in [1, {limit}], got {value!r}")
    return value


class CartPole:
    """``num_envs`` CartPoles stepped as one batch.

    Args:
        num_envs: number of envs (>= 1).
        backend: ``"torch"`` (any device) or ``"numba"`` (CPU only; a fused parallel kernel
            that works on the tensors' memory in place, no copies).
        device: torch device for all tensors.
        dtype: ``torch.float32`` (default) or ``torch.float64`` (Gymnasium integrates in
            float64); strings ``"float32"``/``"float64"`` work too.
        max_episode_steps: truncation horizon (500 for CartPole-v1, 200 for v0).
        seed: key of the reset RNG. Runs with the same seed produce the same states on every
            backend, device and thread count. ``None`` draws a fresh key. A list of G seeds
            splits the envs into G equal groups (``num_envs`` must be a multiple of G): env
            ``i`` of group ``g`` resets exactly as env ``i`` of ``CartPole(num_envs // G,
            seed=seeds[g])`` does (a population of agents, each with its own envs).
        compile: torch backend only: run the step through ``torch.compile`` (one fused
            kernel; worth it for large N, costs seconds of compile on first use).

    Actions are validated for shape, dtype and device on every call. Their values (must be
    0 or 1) are validated whenever the actions live on the CPU; on a GPU that would need a host
    sync, so there any nonzero value means "push right".

    The draw counter is a device tensor advanced in place, so a step is a pure tensor program
    (no Python number changes per step): it can run under ``torch.compile(fullgraph=True)``.
    """

    OBS_DIM = 4
    N_ACTIONS = 2

    def __init__(
        self,
        num_envs: int,
        backend: str = "torch",
        device="cpu",
        dtype=torch.float32,
        max_episode_steps: int = 500,
        seed: int | list[int] | None = None,
        compile: bool = False,
    ):
        self.num_envs = _check_positive_int("num_envs", num_envs)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.backend = backend
        self.device = _parse_device(device)
        if backend == "numba" and self.device.type != "cpu":
            raise ValueError(f"the numba backend runs on the CPU only, got device {str(self.device)!r}; use backend='torch'")
        _check_available(self.device)
        if compile and backend != "torch":
            raise ValueError("compile=True applies to backend='torch' only")
        self.dtype = _parse_dtype(dtype)
        self.max_episode_steps = _check_positive_int("max_episode_steps", max_episode_steps)
        self.groups = len(seed) if isinstance(seed, (list, tuple)) else 1
        if self.groups < 1 or self.num_envs % self.groups:
            raise ValueError(f"num_envs ({self.num_envs}) must be a multiple of the number of seeds ({self.groups})")
        self.group_size = self.num_envs // self.groups
        n, dev = self.num_envs, self.device
        self._state = torch.zeros(4, n, dtype=self.dtype, device=dev)  # struct-of-arrays
        self._elapsed = torch.zeros(n, dtype=torch.int32, device=dev)
        self._keys: list[int] | None = None  # one RNG key (uint64) per group, set by reset()
        self._keys_t = torch.zeros(self.groups, dtype=torch.int64, device=dev)  # the same, as uint64 bits
        self._round = torch.zeros(1, dtype=torch.int64, device=dev)  # draw counter, advanced in place
        if backend == "numba":
            from fastdqn.kernels import cartpole_numba

            self._kernels = cartpole_numba
            parallel = n >= cartpole_numba.PARALLEL_MIN_ENVS
            self._numba_step = cartpole_numba.step if parallel else cartpole_numba.step_serial
            self._consts = cartpole_numba.physics_constants(self._state.numpy().dtype)
            self._round_np = self._round.numpy()
        else:
            self._env_index = torch.arange(n, device=dev) % self.group_size  # index within the group
            self._env_keys = torch.zeros(n, dtype=torch.int64, device=dev)  # each env's group key
            self._step_fn = torch.compile(torch_step, dynamic=False) if compile else torch_step
            # Eager on a CPU: draw resets only for finished envs (see torch_step).
            self._sparse_resets = self.device.type == "cpu" and not compile
        self.reset(seed=seed)

    # -- state ---------------------------------------------------------------------------
    @property
    def state(self) -> torch.Tensor:
        """Current states ``[N, 4]`` (a writable view: writing into it moves the envs)."""
        return self._state.T

    @state.setter
    def state(self, value) -> None:
        value = torch.as_tensor(value)
        if tuple(value.shape) != (self.num_envs, 4):
            raise ValueError(f"state must have shape ({self.num_envs}, 4), got {tuple(value.shape)}")
        self._state.copy_(value.T)

    @property
    def elapsed_steps(self) -> torch.Tensor:
        """Steps taken in each env's current episode ``[N]`` (int32, writable view)."""
        return self._elapsed

    @property
    def _key(self) -> int:
        """The RNG key of the first group (of the only group for a single seed)."""
        return self._keys[0]

    def state_dict(self) -> dict:
        """Everything needed to continue exactly where the envs are (states, step counters, RNG)."""
        return {"state": self._state.clone(), "elapsed": self._elapsed.clone(), "keys": list(self._keys),
                "round": self._round.clone()}

    def group_state_dict(self, groups: list[int]) -> dict:
        """The :meth:`state_dict` of a ``CartPole(len(groups) * group_size, seed=...)`` holding only
        the seed groups ``groups`` (in that order), each exactly where it is."""
        idx = torch.tensor(groups, dtype=torch.long, device=self.device)
        g, n = self.groups, self.group_size
        return {"state": self._state.view(4, g, n)[:, idx].reshape(4, -1),
                "elapsed": self._elapsed.view(g, n)[idx].reshape(-1), "keys": [self._keys[i] for i in groups],
                "round": self._round.clone()}

    def load_state_dict(self, d: dict) -> None:
        if tuple(d["state"].shape) != tuple(self._state.shape) or len(d["keys"]) != self.groups:
            raise ValueError(f"env state has shape {tuple(d['state'].shape)} with {len(d['keys'])} seed groups, "
                             f"expected {tuple(self._state.shape)} with {self.groups}")
        self._state.copy_(d["state"])
        self._elapsed.copy_(d["elapsed"])
        self._set_keys([int(k) for k in d["keys"]])
        self._round.copy_(d["round"])

    def _set_keys(self, keys: list[int]) -> None:
        self._keys = keys
        self._keys_t.copy_(torch.tensor([_as_signed(k) for k in keys], dtype=torch.int64))
        if self.backend == "torch":
            self._env_keys.copy_(self._keys_t.repeat_interleave(self.group_size))

    # -- API -------------------------------------------------------------------------------
    def reset(self, seed: int | list[int] | None = None) -> torch.Tensor:
        """Reset every env; returns ``obs [N, 4]``. A seed (or one seed per group) re-keys the
        RNG (None keeps the current stream going)."""
        if seed is not None or self._keys is None:
            seeds = list(seed) if isinstance(seed, (list, tuple)) else [seed] * self.groups
            if len(seeds) != self.groups:
                raise ValueError(f"expected {self.groups} seeds (one per group), got {len(seeds)}")
            for s in seeds:
                if s is not None and (isinstance(s, bool) or not isinstance(s, int) or s < 0):
                    raise ValueError(f"seed must be a non-negative integer or None, got {s!r}")
            self._set_keys([rng.seed_key(s) for s in seeds])
            self._round.zero_()
        if self.backend == "numba":
            self._kernels.reset(self._state.numpy(), self._elapsed.numpy(), self._keys_t.numpy().view(np.uint64),
                                self.group_size, np.uint64(self._round_np[0]))
            self._round_np[0] += 1
        else:
            self._state.copy_(self.draw_resets().T)
            self._elapsed.zero_()
        return self._state.clone().T

    def draw_resets(self) -> torch.Tensor:
        """Reset states ``[N, 4]`` of the next draw round for every env (torch backend); advances
        the draw counter. ``reset`` uses it, and so does the Gymnasium adapter's next-step
        autoreset."""
        if self.backend != "torch":
            raise ValueError("draw_resets is available on the torch backend only")
        draws = reset_draw(self._env_keys, self._round, self._env_index, self.group_size, self.dtype)
        self._round.add_(1)
        return draws

    def numba_buffers(self) -> tuple:
        """The numba backend's buffers as numpy views, for kernels that fuse the step with other
        work (the trainer's collect kernel): ``state [4, N], elapsed [N], max_episode_steps,
        group keys [G] (uint64), draw counter [1], physics constants``."""
        if self.backend != "numba":
            raise ValueError("numba_buffers is available on the numba backend only")
        return (self._state.numpy(), self._elapsed.numpy(), self.max_episode_steps,
                self._keys_t.numpy().view(np.uint64), self._round_np, self._consts)

    def step(self, actions: torch.Tensor, check: bool = True) -> StepResult:
        """Apply ``actions [N]`` (integer or bool, 0 = left, 1 = right) to every env.

        ``check=False`` skips the validation of ``actions`` (for callers whose actions are valid
        by construction, such as the trainer: the value check reads the tensor on the host)."""
        if check:
            actions = self._check_actions(actions)
        if self.backend == "numba":
            return self._step_numba(actions)
        sparse = self._sparse_resets and not torch.compiler.is_compiling()  # nonzero() would break a graph
        result, elapsed = self._step_fn(self.state, self._elapsed, actions, self.max_episode_steps, self._env_keys,
                                        self._round, self._env_index, sparse, self.group_size)
        self._round.add_(1)
        self._state.copy_(result.obs.T)
        self._elapsed.copy_(elapsed)
        return result

    def _step_numba(self, actions: torch.Tensor) -> StepResult:
        n, dev = self.num_envs, self.device
        obs = torch.empty(4, n, dtype=self.dtype, device=dev)
        final_obs = torch.empty(4, n, dtype=self.dtype, device=dev)
        reward = torch.empty(n, dtype=torch.float32, device=dev)
        terminated = torch.empty(n, dtype=torch.bool, device=dev)
        truncated = torch.empty(n, dtype=torch.bool, device=dev)
        self._numba_step(
            self._state.numpy(),
            actions.numpy(),
            self._elapsed.numpy(),
            self.max_episode_steps,
            self._keys_t.numpy().view(np.uint64),
            self.group_size,
            np.uint64(self._round_np[0]),
            self._consts,
            obs.numpy(),
            final_obs.numpy(),
            reward.numpy(),
            terminated.numpy(),
            truncated.numpy(),
        )
        self._round_np[0] += 1
        return StepResult(obs.T, reward, terminated, truncated, final_obs.T)

    def _check_actions(self, actions) -> torch.Tensor:
        if not isinstance(actions, torch.Tensor):
            raise TypeError(f"actions must be a torch.Tensor of shape ({self.num_envs},), got {type(actions).__name__}")
        if tuple(actions.shape) != (self.num_envs,):
            raise ValueError(f"actions must have shape ({self.num_envs},), got {tuple(actions.shape)}")
        if actions.dtype.is_floating_point or actions.dtype.is_complex:
            raise ValueError(f"actions must be an integer or bool tensor, got {actions.dtype}")
        if actions.device != self.device:
            raise ValueError(f"actions are on {actions.device} but the envs are on {self.device}")
        if actions.device.type == "cpu" and actions.dtype != torch.bool:
            if self.backend == "numba":
                bad = self._kernels.count_invalid_actions(actions.numpy())
            else:
                bad = int(((actions != 0) & (actions != 1)).sum())
            if bad:
                found = actions[(actions != 0) & (actions != 1)][0].item()
                raise ValueError(f"actions must be 0 or 1, got {found} ({bad} invalid of {self.num_envs})")
        return actions

    def __repr__(self) -> str:
        return (
            f"CartPole(num_envs={self.num_envs}, backend={self.backend!r}, device={str(self.device)!r}, "
            f"dtype={self.dtype}, max_episode_steps={self.max_episode_steps})"
        )
