"""One generic batched vector env over any pure dynamics: every native env (CartPole adds fast paths).

An env author writes only the dynamics (see :mod:`fastdqn.classic`): an object with

* ``spec`` (:class:`~fastdqn.envs.EnvSpec`), ``state_dim`` S and ``n_uniforms`` U;
* ``reset_state(u, dtype)``: U float64 uniforms in [0, 1) (``[N]`` tensors) -> S state components;
* ``step(s, action)``: S components and int64 actions -> (S next components, reward float32, terminated bool);
* ``observe(s)``: S components -> observations ``[N, *obs_shape]``;
* optionally ``kernels`` (a module of :mod:`fastdqn.kernels` with numba kernels named
  ``<prefix>_step`` and ``<prefix>_rollout``) and ``constants(dtype)``.

:class:`VectorEnv` does the rest once for every env: seed groups, same-step autoreset with
``final_obs``, truncation, ``state_dict`` and ``group_state_dict``, ``step(out=)``,
``rollout(T)``, and on CUDA the rollout captured as a CUDA graph. Random outcomes (reset draws,
drawn rollout actions) come from the counter-based stream of :mod:`fastdqn.kernels.rng`, so the
numba and torch backends agree and tests can put the envs in any state.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

import numpy as np
import torch

from fastdqn.calibrate import torch_threads_kept
from fastdqn.kernels import rng

DTYPES = {"float32": torch.float32, "float64": torch.float64}
_NP = {torch.float32: np.float32, torch.float64: np.float64, torch.int32: np.int32}


class StepResult(NamedTuple):
    """What ``step`` returns (all tensors on the env's device)."""

    obs: torch.Tensor  # [N, *obs_shape] next observation; the reset observation where the episode ended
    reward: torch.Tensor  # [N] float32
    terminated: torch.Tensor  # [N] bool: the episode ended in a terminal state
    truncated: torch.Tensor  # [N] bool: episode reached max_episode_steps
    final_obs: torch.Tensor  # [N, *obs_shape] true observation after the step, before any reset


class RolloutResult(NamedTuple):
    """What ``rollout`` returns."""

    reward: torch.Tensor  # [N] float32: the rewards each env collected, summed over the rollout
    episodes: torch.Tensor  # [N] int64: episodes each env ended (terminated or truncated)


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


def capture_rollout(env, steps: int, given, key: torch.Tensor) -> RolloutResult:
    """``env._rollout_loop`` captured once per (steps, actions kind) as a CUDA graph and replayed:
    one launch for the whole rollout instead of several per step. The warm-up run that capturing
    needs (it also compiles) is undone, so the envs end where the loop would leave them. Works for
    any env with ``_rollout_loop``, ``_state``, ``_elapsed``, ``_round`` and a ``_graphs`` dict."""
    slot = (steps, None if given is None else given.dtype)
    if slot not in env._graphs:
        if len(env._graphs) >= 4:
            env._graphs.clear()
        static_key = key.clone()
        static_actions = None if given is None else given.clone()
        buffers = (env._state, env._elapsed, env._round)
        saved = [b.clone() for b in buffers]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            env._rollout_loop(steps, static_actions, static_key)
        torch.cuda.current_stream().wait_stream(side)
        for buf, value in zip(buffers, saved, strict=True):
            buf.copy_(value)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = env._rollout_loop(steps, static_actions, static_key)
        env._graphs[slot] = (graph, static_key, static_actions, outputs)
    graph, static_key, static_actions, (reward, episodes) = env._graphs[slot]
    static_key.copy_(key)
    if given is not None:
        static_actions.copy_(given)
    graph.replay()
    return RolloutResult(reward.clone(), episodes.clone())


def copy_into(out: StepResult | None, result: StepResult) -> StepResult:
    """``result`` itself, or (``out`` given) copied into the caller's tensors and ``out`` returned:
    no allocation is saved, but the output addresses stay fixed (what a CUDA graph needs)."""
    if out is None:
        return result
    for dst, src in zip(out, result, strict=True):
        dst.copy_(src)
    return out


def _split(dyn, state):
    """What ``dyn``'s functions take: the state ``[S, N]`` itself (``dyn.packed``) or its rows."""
    return state if getattr(dyn, "packed", False) else list(state.unbind(0))


def _join(dyn, comps) -> torch.Tensor:
    return comps if getattr(dyn, "packed", False) else torch.stack(comps)


def draw_uniforms(dyn, key, round_, env_index, group_size: int) -> tuple[list, list]:
    """One round's uniforms of every env: ``(reset draws [dyn.n_uniforms], step draws
    [dyn.step_uniforms])``, float64 ``[N]`` tensors (see :func:`fastdqn.kernels.rng.reset_uniforms`)."""
    n_reset, n_step = dyn.n_uniforms, getattr(dyn, "step_uniforms", 0)
    u = rng.reset_uniforms(key, round_, env_index, group_size, n_reset + n_step)
    return u[:n_reset], u[n_reset:]


def advance(dyn, state, elapsed, actions, max_episode_steps: int, key, round_, env_index, group_size: int):
    """The state part of :func:`pure_step`, without observing: ``-> (components after the physics,
    reward, terminated, truncated, next state [S, N] after resets, elapsed)``.

    Dynamics with random events (``dyn.step_uniforms > 0``) get that many uniforms per env as a
    third argument of ``step``; the first ``dyn.kept_on_reset`` state rows survive a reset."""
    u_reset, u_step = draw_uniforms(dyn, key, round_, env_index, group_size)
    args = (u_step,) if u_step else ()
    comps, reward, terminated = dyn.step(_split(dyn, state), actions, *args)
    elapsed = elapsed + 1
    truncated = elapsed >= max_episode_steps
    done = terminated | truncated
    after, draws = _join(dyn, comps), _join(dyn, dyn.reset_state(u_reset, state.dtype))
    keep = getattr(dyn, "kept_on_reset", 0)
    if keep:  # ``draws`` is this step's fresh tensor: overwrite its kept rows rather than copy the whole state
        draws[:keep] = after[:keep]
    nxt = torch.where(done, draws, after)
    return comps, reward, terminated, truncated, nxt, elapsed.masked_fill(done, 0)


def pure_step(dyn, state, elapsed, actions, max_episode_steps: int, key, round_, env_index, group_size: int):
    """One step of ``state [S, N]`` with same-step autoreset: ``-> (StepResult, next state, elapsed)``.
    ``key`` holds each env's group key (int64 bits), ``env_index`` each env's index in its group."""
    comps, reward, terminated, truncated, nxt, elapsed = advance(dyn, state, elapsed, actions, max_episode_steps, key,
                                                                 round_, env_index, group_size)
    obs = dyn.observe(_split(dyn, nxt))
    return StepResult(obs, reward, terminated, truncated, dyn.observe(comps)), nxt, elapsed


def rollout_action(key, step, lanes, n_actions: int):
    """The drawn action of each env at rollout step ``step``: ``(high 32 bits of SplitMix64(key +
    (step * N + lane) * GOLDEN) * n_actions) >> 32``, ``lanes`` = env index + 1 (int64 tensors)."""
    h = rng.mix64(key + (step * lanes.shape[-1] + lanes) * rng.GOLDEN_I64)
    return (rng.lsr(h, 32) * n_actions) >> 32


def rollout_actions(num_envs: int, steps: int, key: int, n_actions: int) -> torch.Tensor:
    """The actions ``[steps, num_envs]`` (int64) that :meth:`VectorEnv.rollout` draws with action
    key ``key`` (uint64: :func:`fastdqn.kernels.rng.seed_key` of the rollout's seed)."""
    lanes = torch.arange(num_envs) + 1
    return rollout_action(rng.as_signed(key), torch.arange(steps)[:, None], lanes, n_actions)


class VectorEnv:
    """``num_envs`` copies of ``dynamics`` stepped as one batch (backends ``"torch"``: any device,
    ``compile=True`` for one fused kernel; ``"numba"``: the dynamics' CPU kernels).

    Same API as :class:`fastdqn.CartPole`: ``reset``, ``step(actions, check=True, out=None)``,
    ``new_outputs``, ``rollout``, a writable ``state [N, S]`` (Gymnasium's ``.state`` layout,
    stored struct-of-arrays), ``elapsed_steps``, ``state_dict``/``group_state_dict``/``load_state_dict``.
    ``seed`` as for CartPole: an int, None (fresh), or one seed per equal group of envs.
    """

    def __init__(self, dynamics, num_envs: int, backend: str = "torch", device="cpu", dtype=torch.float32,
                 max_episode_steps: int | None = None, seed=None, compile: bool = False):
        self.dyn, self.spec = dynamics, getattr(self, "spec", dynamics.spec)  # a subclass may set its own spec
        self.num_envs = _check_positive_int("num_envs", num_envs)
        if backend not in ("torch", "numba"):
            raise ValueError(f"backend must be one of torch, numba, got {backend!r}")
        self.backend, self.device = backend, _parse_device(device)
        if backend == "numba" and self.device.type != "cpu":
            raise ValueError(f"the numba backend runs on the CPU only, got device {str(self.device)!r}; use backend='torch'")
        _check_available(self.device)
        if compile and backend != "torch":
            raise ValueError("compile=True applies to backend='torch' only")
        # float dynamics keep state and observations in ``dtype``; dynamics may fix their own (MinAtar: int32 state, bool frames)
        self.dtype = getattr(dynamics, "state_dtype", None) or _parse_dtype(dtype)
        self.obs_dtype = getattr(dynamics, "obs_dtype", None) or self.dtype
        self.max_episode_steps = _check_positive_int(
            "max_episode_steps", self.spec.max_episode_steps if max_episode_steps is None else max_episode_steps)
        self.n_actions = self.spec.n_actions
        self.groups = len(seed) if isinstance(seed, (list, tuple)) else 1
        if self.groups < 1 or self.num_envs % self.groups:
            raise ValueError(f"num_envs ({self.num_envs}) must be a multiple of the number of seeds ({self.groups})")
        self.group_size = self.num_envs // self.groups
        n, dev = self.num_envs, self.device
        self._state, self._elapsed = self._allocate()  # struct-of-arrays [S, N]; [N] int32
        self._keys: list[int] | None = None
        self._keys_t = torch.zeros(self.groups, dtype=torch.int64, device=dev)
        self._env_keys = torch.zeros(n, dtype=torch.int64, device=dev)
        self._env_index = torch.arange(n, device=dev) % self.group_size
        self._round = torch.zeros(1, dtype=torch.int64, device=dev)
        self._graphs: dict = {}
        self._checked_out = None
        self._parallel: bool | None = None  # numba: chosen on the first step or rollout (see parallel)
        step_fn = _bind(pure_step, dynamics)
        self._step_fn = torch.compile(step_fn, dynamic=False) if compile else step_fn
        self._rollout_fn = self._rollout_step
        if compile:
            self._rollout_fn = torch.compile(self._rollout_step, dynamic=False)
        if backend == "numba" and dynamics.kernels is not None:
            mod = importlib.import_module(f"fastdqn.kernels.{dynamics.kernels}")
            self._k_step = getattr(mod, f"{dynamics.prefix}_step")
            self._k_rollout = getattr(mod, f"{dynamics.prefix}_rollout")
            self._consts = dynamics.constants(_NP[self.dtype])
            self._np = (self._state.numpy(), self._elapsed.numpy(), self._keys_t.numpy().view(np.uint64),
                        self._round.numpy().view(np.uint64))
        self.reset(seed=seed)

    def _allocate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The state ``[S, N]`` (struct-of-arrays) and step counters ``[N]`` int32, zeroed."""
        n, dev = self.num_envs, self.device
        return (torch.zeros(self.dyn.state_dim, n, dtype=self.dtype, device=dev),
                torch.zeros(n, dtype=torch.int32, device=dev))

    @property
    def parallel(self) -> bool:
        """Numba backend: whether this batch runs the threaded kernels, i.e. is at least the size
        from which they beat the serial ones on this machine (measured once per machine and thread
        count on first use, on the CartPole step: :mod:`fastdqn.calibrate`). Decided on first use, so an env
        that is never stepped (the trainer's fused kernel steps it instead) measures nothing."""
        if self.backend != "numba":
            return False
        if self._parallel is None:
            from fastdqn import calibrate

            self._parallel = self.num_envs >= 256 and self.num_envs >= calibrate.parallel_min_envs()
        return self._parallel

    # -- state ---------------------------------------------------------------------------
    @property
    def state(self) -> torch.Tensor:
        """Current states ``[N, S]`` (a writable view: writing into it moves the envs)."""
        return self._state.T

    @state.setter
    def state(self, value) -> None:
        value = torch.as_tensor(value)
        if tuple(value.shape) != (self.num_envs, self.dyn.state_dim):
            raise ValueError(f"state must have shape ({self.num_envs}, {self.dyn.state_dim}), got {tuple(value.shape)}")
        self._state.copy_(value.T)

    @property
    def elapsed_steps(self) -> torch.Tensor:
        return self._elapsed

    def state_dict(self) -> dict:
        return {"state": self._state.clone(), "elapsed": self._elapsed.clone(), "keys": list(self._keys),
                "round": self._round.clone()}

    def group_state_dict(self, groups: list[int]) -> dict:
        """The :meth:`state_dict` of an env holding only the seed groups ``groups``, each where it is."""
        idx = torch.tensor(groups, dtype=torch.long, device=self.device)
        g, n, s = self.groups, self.group_size, self.dyn.state_dim
        return {"state": self._state.view(s, g, n)[:, idx].reshape(s, -1),
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
        self._keys_t.copy_(torch.tensor([rng.as_signed(k) for k in keys], dtype=torch.int64))
        self._env_keys.copy_(self._keys_t.repeat_interleave(self.group_size))

    # -- API -------------------------------------------------------------------------------
    def reset(self, seed=None) -> torch.Tensor:
        """Reset every env; returns ``obs [N, *obs_shape]``. A seed (or one per group) re-keys the
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
        u, _ = draw_uniforms(self.dyn, self._env_keys, self._round, self._env_index, self.group_size)
        keep = getattr(self.dyn, "kept_on_reset", 0)
        self._state[keep:].copy_(_join(self.dyn, self.dyn.reset_state(u, self.dtype))[keep:])
        self._elapsed.zero_()
        self._round.add_(1)
        return self.dyn.observe(_split(self.dyn, self._state))

    def collect_kernel(self) -> tuple | None:
        """The trainer's fused collect kernel for this env (numba backend, an env whose kernels
        module lists its step in ``STEP_KERNELS``, vector observations; else None): ``(kernel, env
        buffers)``. The kernel, built by :func:`fastdqn.kernels.collect_numba.kernel` around this
        env's step kernel (threaded if :attr:`parallel`), does the epsilon-greedy act, the step,
        the replay store and the episode bookkeeping in one call; the buffers are this env's
        numpy views and scratch outputs, in the kernel's argument order."""
        kernels = getattr(self.dyn, "kernels", None)
        if self.backend != "numba" or kernels is None or len(self.spec.obs_shape) != 1:
            return None
        steps = getattr(importlib.import_module(f"fastdqn.kernels.{kernels}"), "STEP_KERNELS", {})
        if self.dyn.prefix not in steps:
            return None
        from fastdqn.kernels import collect_numba

        threaded, serial, extra = steps[self.dyn.prefix]
        parallel = self.parallel
        kernel = collect_numba.kernel(f"{self.dyn.prefix}{'' if parallel else '_serial'}",
                                      threaded if parallel else serial, parallel)
        n, d, np_dtype = self.num_envs, self.spec.obs_shape[0], _NP[self.dtype]
        scratch = (np.zeros(n, dtype=np.int64), np.zeros((d, n), dtype=np_dtype), np.zeros((d, n), dtype=np_dtype),
                   np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.bool_), np.zeros(n, dtype=np.bool_))
        state, elapsed, keys, round_ = self._np
        return kernel, (self.n_actions, state, elapsed, keys, round_, self.max_episode_steps, self.group_size,
                        self._consts, extra, *scratch)

    def new_outputs(self) -> StepResult:
        """Output tensors for ``step(actions, out=...)`` (observations ``[N, *obs_shape]`` in the
        env's observation dtype, reward float32, terminated and truncated bool)."""
        n, dev, shape = self.num_envs, self.device, self.spec.obs_shape
        if self.backend == "numba" and not getattr(self.dyn, "obs_env_major", False):
            # the kernels write component rows: [D, N] seen as [N, D]
            obs = torch.empty(*shape[::-1], n, dtype=self.obs_dtype).T
            final_obs = torch.empty(*shape[::-1], n, dtype=self.obs_dtype).T
        else:
            obs = torch.empty(n, *shape, dtype=self.obs_dtype, device=dev)
            final_obs = torch.empty(n, *shape, dtype=self.obs_dtype, device=dev)
        return StepResult(obs, torch.empty(n, device=dev), torch.empty(n, dtype=torch.bool, device=dev),
                          torch.empty(n, dtype=torch.bool, device=dev), final_obs)

    def step(self, actions: torch.Tensor, check: bool = True, out: StepResult | None = None) -> StepResult:
        """Apply ``actions [N]`` (integers in ``[0, n_actions)``); same-step autoreset. ``out``: a
        :class:`StepResult` to write into (see :meth:`new_outputs`). ``check=False`` skips the
        validation of ``actions`` (callers whose actions are valid by construction)."""
        if check:
            actions = self._check_actions(actions)
        if out is not None and out is not self._checked_out:
            self._check_out(out)
            self._checked_out = out
        if self.backend == "numba":
            res = out if out is not None else self.new_outputs()
            obs, final_obs = res.obs, res.final_obs
            if not getattr(self.dyn, "obs_env_major", False):  # frames stay [N, *obs_shape]; vectors go as rows
                obs, final_obs = obs.T, final_obs.T
            with torch_threads_kept(self.parallel):
                self._k_step(*self._np, actions.numpy(), self.max_episode_steps, self.group_size, self._consts,
                             obs.numpy(), final_obs.numpy(), res.reward.numpy(), res.terminated.numpy(),
                             res.truncated.numpy(), self.parallel)
            return res
        result, nxt, elapsed = self._step_fn(self._state, self._elapsed, actions.long(), self.max_episode_steps,
                                             self._env_keys, self._round, self._env_index, self.group_size)
        self._round.add_(1)
        self._state.copy_(nxt)
        self._elapsed.copy_(elapsed)
        return copy_into(out, result)

    def rollout(self, steps: int, actions="random", seed: int | None = None) -> RolloutResult:
        """``steps`` steps of every env in one call, keeping per-env totals (summed rewards,
        episodes ended); the envs end where ``steps`` calls of :meth:`step` leave them.
        ``actions``: ``"random"`` (drawn inside the kernel, keyed by ``seed``; see
        :func:`rollout_actions`) or a ``[steps, N]`` integer tensor."""
        steps, key, given = self._rollout_args(steps, actions, seed)
        n = self.num_envs
        if self.backend == "numba":
            reward = torch.zeros(n, dtype=torch.float32)
            episodes = torch.zeros(n, dtype=torch.int64)
            acts = given.long().numpy() if given is not None else np.empty((steps, 0), dtype=np.int64)
            with torch_threads_kept(self.parallel):
                self._k_rollout(*self._np, self.max_episode_steps, self.group_size, self._consts, acts,
                                np.uint64(key), self.n_actions, reward.numpy(), episodes.numpy(), self.parallel)
            return RolloutResult(reward, episodes)
        key_t = torch.tensor(rng.as_signed(key), dtype=torch.int64, device=self.device)
        if self.device.type == "cuda":
            return capture_rollout(self, steps, given, key_t)
        return RolloutResult(*self._rollout_loop(steps, given, key_t))

    def _rollout_args(self, steps, actions, seed) -> tuple[int, int, torch.Tensor | None]:
        """Checked :meth:`rollout` arguments: ``(steps, action key, given actions or None)``."""
        steps = _check_positive_int("steps", steps)
        n = self.num_envs
        if isinstance(actions, str):
            if actions != "random":
                raise ValueError(f"actions must be 'random' or a tensor of shape ({steps}, {n}), got {actions!r}")
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
                raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
            return steps, rng.seed_key(seed), None
        if not isinstance(actions, torch.Tensor) or tuple(actions.shape) != (steps, n):
            shape = tuple(actions.shape) if isinstance(actions, torch.Tensor) else type(actions).__name__
            raise ValueError(f"actions must be 'random' or a tensor of shape ({steps}, {n}), got {shape}")
        if actions.dtype.is_floating_point or actions.dtype.is_complex or actions.device != self.device:
            raise ValueError(f"actions must be an integer or bool tensor on {self.device}, got {actions.dtype} on "
                             f"{actions.device}")
        return steps, 0, actions

    def _rollout_step(self, state, elapsed, actions, round_, reward_sum, episodes):
        _, reward, terminated, truncated, nxt, elapsed = advance(self.dyn, state, elapsed, actions, self.max_episode_steps,
                                                                 self._env_keys, round_, self._env_index, self.group_size)
        return nxt, elapsed, reward_sum + reward, episodes + (terminated | truncated)  # nothing observed: not kept

    def _rollout_loop(self, steps: int, given, key: torch.Tensor):
        n, dev = self.num_envs, self.device
        reward = torch.zeros(n, dtype=torch.float32, device=dev)
        episodes = torch.zeros(n, dtype=torch.int64, device=dev)
        lanes = torch.arange(n, device=dev) + 1
        state, elapsed = self._state, self._elapsed
        for t in range(steps):
            a = given[t].long() if given is not None else rollout_action(key, t, lanes, self.n_actions)
            state, elapsed, reward, episodes = self._rollout_fn(state, elapsed, a, self._round, reward, episodes)
            self._round.add_(1)
        self._state.copy_(state)
        self._elapsed.copy_(elapsed)
        return reward, episodes

    # -- validation ----------------------------------------------------------------------------
    def _check_actions(self, actions) -> torch.Tensor:
        n, a = self.num_envs, self.n_actions
        if not isinstance(actions, torch.Tensor):
            raise TypeError(f"actions must be a torch.Tensor of shape ({n},), got {type(actions).__name__}")
        if tuple(actions.shape) != (n,):
            raise ValueError(f"actions must have shape ({n},), got {tuple(actions.shape)}")
        if actions.dtype.is_floating_point or actions.dtype.is_complex or actions.dtype == torch.bool:
            raise ValueError(f"actions must be an integer tensor, got {actions.dtype}")
        if actions.device != self.device:
            raise ValueError(f"actions are on {actions.device} but the envs are on {self.device}")
        if actions.device.type == "cpu":
            # in NumPy (one thread): from ~32k elements torch runs these ops on its thread pool, and a
            # pool thread that another process keeps off its core stalls each op (~10 ms at N=65536)
            v = actions.numpy()
            bad = (v < 0) | (v >= a)
            if bad.any():
                raise ValueError(f"actions must be in [0, {a - 1}], got {v[bad][0].item()} ({int(bad.sum())} invalid of {n})")
        return actions.long() if self.backend == "numba" else actions

    def _check_out(self, out) -> None:
        if not isinstance(out, StepResult):
            raise TypeError(f"out must be a StepResult (see {type(self).__name__}.new_outputs), got {type(out).__name__}")
        n, shape = self.num_envs, (self.num_envs, *self.spec.obs_shape)
        want = {"obs": (shape, self.obs_dtype), "reward": ((n,), torch.float32), "terminated": ((n,), torch.bool),
                "truncated": ((n,), torch.bool), "final_obs": (shape, self.obs_dtype)}
        for name, (shp, dtype) in want.items():
            t = getattr(out, name)
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"out.{name} must be a torch.Tensor, got {type(t).__name__}")
            if tuple(t.shape) != shp or t.dtype != dtype or t.device != self.device:
                raise ValueError(f"out.{name} must be a {dtype} tensor of shape {shp} on {self.device}, got "
                                 f"{t.dtype} {tuple(t.shape)} on {t.device}")

    def __repr__(self) -> str:
        return (f"VectorEnv({self.spec.id!r}, num_envs={self.num_envs}, backend={self.backend!r}, "
                f"device={str(self.device)!r}, dtype={self.dtype}, max_episode_steps={self.max_episode_steps})")


def _bind(fn, dyn):
    def bound(*args):
        return fn(dyn, *args)

    return bound
