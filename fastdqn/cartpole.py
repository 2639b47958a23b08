"""Batched CartPole: Gymnasium's physics on torch tensors (any device) or a numba kernel (CPU).

The physics is a pure function, :func:`physics`, of ``(state, action)``; :class:`CartPole` is the
generic :class:`fastdqn.vector.VectorEnv` over it (seed groups, state dicts, resets, validation)
with CartPole's own fast paths (numba kernels, sparse CPU resets, the trainer's fused collect
kernel). Autoreset is same-step:
``step`` returns the reset observation in ``obs`` for envs that finished and their true last
observation in ``final_obs``, so no transition is lost.

Memory layout: state and observations are exposed as ``[N, 4]`` tensors, stored
struct-of-arrays (a ``[4, N]`` buffer seen through ``.T``), so each component streams
contiguously; ``obs.is_contiguous()`` is therefore False. Call ``.contiguous()`` if you need
row-major memory.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from fastdqn.calibrate import torch_threads_kept
from fastdqn.kernels import rng
from fastdqn.vector import (  # noqa: F401 - StepResult and RolloutResult are part of this module's API
    RolloutResult,
    StepResult,
    VectorEnv,
    _check_positive_int,
    capture_rollout,
    copy_into,
)

_NP_DTYPE = {torch.float32: "float32", torch.float64: "float64"}

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


def physics_constants(dtype) -> tuple:
    """The constants the numba kernels take, rounded to the numpy ``dtype`` (the kernels specialise
    on it). Order: gravity, masspole, total_mass, length, polemass_length, force_mag, tau, 4/3,
    theta threshold (radians), x threshold."""
    f = np.dtype(dtype).type
    values = (GRAVITY, MASSPOLE, TOTAL_MASS, LENGTH, POLEMASS_LENGTH, FORCE_MAG, TAU, 4.0 / 3.0, THETA_THRESHOLD,
              X_THRESHOLD)
    return tuple(f(v) for v in values)


def physics(state: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One Euler step of CartPole: ``(state [..., 4], action [...]) -> (next_state, terminated)``.

    Same expressions, in the same order, as Gymnasium's ``CartPoleEnv.step``; arithmetic runs in
    ``state.dtype``. ``action`` 0 pushes left, anything else pushes right. ``next_state`` has the
    shape of ``state`` and struct-of-arrays memory.
    """
    *components, terminated = _euler(*state.unbind(-1), action)
    return torch.stack(components).movedim(0, -1), terminated


def _euler(x, x_dot, theta, theta_dot, action):
    """:func:`physics` on the four state components: ``-> (x, x_dot, theta, theta_dot, terminated)``."""
    force = torch.where(action != 0, FORCE_MAG, -FORCE_MAG).to(x.dtype)
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
    return x, x_dot, theta, theta_dot, terminated


def reset_draw(key: torch.Tensor, round_: torch.Tensor, env_index: torch.Tensor, num_envs: int,
               dtype: torch.dtype) -> torch.Tensor:
    """Reset states ``[len(env_index), 4]`` of the envs ``env_index`` (of ``num_envs``) for draw
    ``round_``: the counter-based stream of :mod:`fastdqn.kernels.rng` (identical to the numba
    kernel's), uniform in [-0.05, 0.05). ``key`` (0-d, or one key per entry of ``env_index``) and
    ``round_`` (0-d or ``[1]``) are int64 tensors holding uint64 bits.
    """
    return torch.stack(_reset_components(key, round_, env_index, num_envs, dtype)).T


def _reset_components(key, round_, env_index, num_envs: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """:func:`reset_draw` as its four state components (x, x_dot, theta, theta_dot)."""
    return CartPoleDynamics.reset_state(rng.reset_uniforms(key, round_, env_index, num_envs, 4), dtype)


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


def torch_rollout_step(state, elapsed, actions, max_episode_steps: int, key, round_, env_index, group_size: int,
                       reward_sum, episodes, shift=None):
    """One step of :meth:`CartPole.rollout` on the torch backend as one pure function of the
    struct-of-arrays ``state [4, N]``: ``-> (state, elapsed, reward_sum, episodes)``. Written per
    state component (no stacked ``[N, 4]`` intermediates), so that under ``torch.compile`` it is
    one kernel that reads and writes only what the rollout keeps; same values as
    :func:`torch_step` with dense resets. With ``shift`` (a 0-d int64 tensor), ``actions`` are
    the drawn 64-bit words and the action is bit ``shift`` of each."""
    if shift is not None:
        actions = (actions >> shift) & 1
    *components, terminated = _euler(*state.unbind(0), actions)
    elapsed = elapsed + 1
    done = terminated | (elapsed >= max_episode_steps)
    draws = _reset_components(key, round_, env_index, group_size, state.dtype)
    state = torch.stack([torch.where(done, d, c) for d, c in zip(draws, components)])
    return state, elapsed.masked_fill(done, 0), reward_sum + 1.0, episodes + done


def keep_freed_memory() -> None:
    """Ask glibc to keep freed large blocks in the heap instead of returning them to the kernel.

    A population's iteration, and a big batch's step, allocate and free megabyte-sized
    temporaries; by default glibc serves each from a fresh mmap and unmaps it on free, so every
    use pays page faults. At K=16 (fast preset, 2-core EPYC) that was ~1.7 ms of system time per
    iteration, more than the matrix products; a numba step of 4096 envs took 3x as long with its
    fresh outputs faulted in (bench/NOTES.md). A no-op off glibc.
    """
    global _heap_kept
    if _heap_kept:
        return
    _heap_kept = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: serve blocks below 1 GiB from the heap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of freed heap
    except (OSError, AttributeError):
        pass


_heap_kept = False


_PAGE = 4096


def _cpu_arrays(n: int, specs: tuple) -> list[np.ndarray]:
    """CPU arrays ``[rows, S]`` (``S >= n``; use ``[:, :n]``) carved from one allocation, for the
    numba kernels. ``specs``: ``(rows, numpy dtype name, phase)`` per array.

    With power-of-two batch sizes, separately allocated rows start at the same offset within a
    4 KiB page, so the kernels' dozen streams compete for the same few cache sets; on the 2-core
    EPYC (Zen 5) that halved the step's speed, depending on where the allocator happened to place
    the outputs (bench/NOTES.md §7). Here each array starts ``phase`` bytes into its own page and each of its rows
    256 bytes further than the one before, so the streams spread over the sets. Batches with
    rows under a page are packed (64-byte aligned) instead.
    """
    total, align, places = _layout(n, specs)
    raw = np.empty(total + align, dtype=np.uint8)
    base = -raw.ctypes.data % align
    return [np.ndarray((rows, nbytes // rows // dtype.itemsize), dtype, buffer=raw, offset=base + at)
            for at, nbytes, rows, dtype in places]


@functools.lru_cache(maxsize=64)
def _layout(n: int, specs: tuple) -> tuple[int, int, tuple]:
    """``(total bytes, alignment, ((byte offset, bytes, rows, dtype), ...))`` of :func:`_cpu_arrays`."""
    small = n * 8 < _PAGE
    places, total = [], 0
    for rows, name, phase in specs:
        dtype = np.dtype(name)
        row = n * dtype.itemsize
        stride = -(-row // 64) * 64 if small else -(-row // _PAGE) * _PAGE + 256
        total = -(-total // 64) * 64 if small else -(-total // _PAGE) * _PAGE + phase
        places.append((total, rows * stride, rows, dtype))
        total += rows * stride
    return total, 64 if small else _PAGE, tuple(places)


def _numba_outputs(n: int, dtype: str) -> tuple[list[np.ndarray], StepResult]:
    """Fresh step outputs for the numba kernel (``dtype``: the state's numpy dtype name): the
    kernel's arrays (obs and final_obs ``[4, S]``, reward, terminated, truncated ``[S]``) and
    the :class:`StepResult` of tensor views of their first ``n`` columns."""
    obs, final_obs, reward, terminated, truncated = _cpu_arrays(
        n, ((4, dtype, 1024), (4, dtype, 2048), (1, "float32", 3072), (1, "bool", 3584), (1, "bool", 3840)))
    kernel = [obs, final_obs, reward[0], terminated[0], truncated[0]]
    # obs and final_obs: [N, 4] views that keep their whole padded rows in their storage (see _rows_for_kernel)
    stride = (1, obs.shape[1])
    return kernel, StepResult(torch.from_numpy(obs).as_strided((n, 4), stride), torch.from_numpy(reward[0, :n]),
                              torch.from_numpy(terminated[0, :n]), torch.from_numpy(truncated[0, :n]),
                              torch.from_numpy(final_obs).as_strided((n, 4), stride))


def _rows_for_kernel(t: torch.Tensor) -> np.ndarray:
    """The numba kernels' ``[4, >= N]`` array over an ``[N, 4]`` output tensor: C-contiguous (the
    layout the kernel vectorises) when the tensor's rows are unit-stride runs that fit in its
    storage (as :meth:`CartPole.new_outputs` makes them), else a strided view (correct, slower)."""
    rows = t.T
    stride = rows.stride(0)
    size = rows.element_size()
    if rows.stride(1) == 1 and stride >= rows.shape[1] and (
            rows.storage_offset() + 4 * stride) * size <= rows.untyped_storage().nbytes():
        return rows.as_strided((4, stride), (stride, 1)).numpy()
    return rows.numpy()


def rollout_actions(num_envs: int, steps: int, key: int) -> torch.Tensor:
    """The actions ``[steps, num_envs]`` (uint8, 0 or 1) of :meth:`CartPole.rollout` with drawn
    actions and action key ``key`` (uint64; :func:`fastdqn.kernels.rng.seed_key` of the seed):
    env i at step t takes bit ``t % 64`` of SplitMix64(``key + ((t // 64) * num_envs + i + 1) *
    GOLDEN``)."""
    words = -(-steps // 64)
    h = _action_words(rng.as_signed(key), torch.arange(words)[:, None], torch.arange(num_envs) + 1)  # [words, N]
    shifts = torch.arange(64, dtype=torch.int64)[None, :, None]
    bits = (h[:, None, :] >> shifts) & 1  # [words, 64, N]; bit s of the uint64 word
    return bits.reshape(words * 64, num_envs)[:steps].to(torch.uint8)


def _action_words(key, word, lanes: torch.Tensor) -> torch.Tensor:
    """The random words of a drawn-action rollout: word ``word`` (an int or int64 tensor; it
    covers steps ``64 * word ...``) of each env, ``lanes`` = env index + 1 ``[N]``."""
    return rng.mix64(key + (word * lanes.shape[-1] + lanes) * rng.GOLDEN_I64)


class CartPoleDynamics:
    """CartPole as dynamics for :class:`fastdqn.vector.VectorEnv` (Gymnasium's Euler step; reset
    uniform in [-0.05, 0.05) per component). :class:`CartPole` adds its fast paths on top."""

    spec = None  # set per horizon by CartPole (CartPole-v1 or -v0)
    state_dim = 4
    n_uniforms = 4
    kernels = None  # CartPole runs its own numba kernels (fastdqn.kernels.cartpole_numba)

    @staticmethod
    def reset_state(u, dtype):
        return [(RESET_LOW + (RESET_HIGH - RESET_LOW) * v).to(dtype) for v in u]

    def step(self, s, action):
        *components, terminated = _euler(*s, action)
        return components, torch.ones_like(terminated, dtype=torch.float32), terminated

    def observe(self, s):
        return torch.stack(s).T  # [N, 4], struct-of-arrays memory


class CartPole(VectorEnv):
    """``num_envs`` CartPoles stepped as one batch: a :class:`~fastdqn.vector.VectorEnv` over
    :class:`CartPoleDynamics` (seed groups, state dicts, resets and validation come from there)
    with CartPole's own fast paths: numba kernels over rows padded apart in memory, sparse resets
    on an eager CPU, a rollout written per state component, and the trainer's fused collect kernel.

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
        from fastdqn.envs import NATIVE

        self.spec = NATIVE["CartPole-v0" if max_episode_steps == 200 else "CartPole-v1"]
        self._out_arrays = (None, None)  # the last out= given to step (checked) and its numba kernel arrays
        super().__init__(CartPoleDynamics(), num_envs, backend, device, dtype, max_episode_steps, seed, compile)
        if backend == "numba":
            from fastdqn.kernels import cartpole_numba

            self._kernels = cartpole_numba
            self._consts = physics_constants(self._state.numpy().dtype)
            self._round_np = self._round.numpy()
            self._elapsed_np = self._elapsed.numpy()
            self._keys_np = self._keys_t.numpy().view(np.uint64)
        else:
            self._step_fn = torch.compile(torch_step, dynamic=False) if compile else torch_step
            self._rollout_fn = torch.compile(torch_rollout_step, dynamic=False) if compile else torch_rollout_step
            # Eager on a CPU: draw resets only for finished envs (see torch_step).
            self._sparse_resets = self.device.type == "cpu" and not compile

    def _allocate(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.backend != "numba":
            return super()._allocate()
        keep_freed_memory()  # each step's fresh outputs come from the heap, not a faulted-in mmap
        n = self.num_envs
        state, elapsed = _cpu_arrays(n, ((4, _NP_DTYPE[self.dtype], 0), (1, "int32", 3328)))  # rows padded apart
        self._state_np = state
        return torch.from_numpy(state)[:, :n].zero_(), torch.from_numpy(elapsed[0, :n]).zero_()

    @property
    def _key(self) -> int:
        """The RNG key of the first group (of the only group for a single seed)."""
        return self._keys[0]

    # -- API -------------------------------------------------------------------------------
    def draw_resets(self) -> torch.Tensor:
        """Reset states ``[N, 4]`` of the next draw round for every env (torch backend); advances
        the draw counter. ``reset`` uses it, and so does the Gymnasium adapter's next-step
        autoreset."""
        if self.backend != "torch":
            raise ValueError("draw_resets is available on the torch backend only")
        draws = reset_draw(self._env_keys, self._round, self._env_index, self.group_size, self.dtype)
        self._round.add_(1)
        return draws

    def collect_kernel(self) -> tuple:
        """The trainer's fused collect kernel for this env, an optional capability of a native env
        (numba backend): ``(kernel, env buffers)``. The kernel,
        :func:`fastdqn.kernels.cartpole_numba.collect` (serial below ``PARALLEL_MIN_ENVS``), does
        the epsilon-greedy act, this env's step (its reward and its two actions), the replay store
        and the episode bookkeeping in one call; the buffers are numpy views: ``state [4, S >= N]``
        (rows padded apart; env i is column i), ``elapsed [N], max_episode_steps, group keys [G]
        (uint64), draw counter [1], physics constants``. The engine steps an env without this
        capability through :meth:`step`."""
        if self.backend != "numba":
            raise ValueError("collect_kernel is available on the numba backend only")
        k = self._kernels
        kernel = k.collect if self.num_envs >= k.PARALLEL_MIN_ENVS else k.collect_serial
        return kernel, (self._state_np, self._elapsed_np, self.max_episode_steps, self._keys_np, self._round_np,
                        self._consts)

    def new_outputs(self) -> StepResult:
        """Output tensors for ``step(actions, out=...)``, laid out the way the numba kernel runs
        fastest (rows padded apart in memory); on the torch backend, plain tensors."""
        if self.backend == "numba":
            return _numba_outputs(self.num_envs, _NP_DTYPE[self.dtype])[1]
        n, dev = self.num_envs, self.device
        return StepResult(torch.empty(n, 4, dtype=self.dtype, device=dev), torch.empty(n, device=dev),
                          torch.empty(n, dtype=torch.bool, device=dev), torch.empty(n, dtype=torch.bool, device=dev),
                          torch.empty(n, 4, dtype=self.dtype, device=dev))

    def step(self, actions: torch.Tensor, check: bool = True, out: StepResult | None = None) -> StepResult:
        """Apply ``actions [N]`` (integer or bool, 0 = left, 1 = right) to every env.

        ``check=False`` skips the validation of ``actions`` (for callers whose actions are valid
        by construction, such as the trainer: the value check reads the tensor on the host).

        ``out``: a :class:`StepResult` of tensors to write the results into (and return) instead
        of allocating new ones each step: obs and final_obs ``[N, 4]`` in the env's dtype,
        reward ``[N]`` float32, terminated and truncated ``[N]`` bool, on the env's device, not
        overlapping each other. :meth:`new_outputs` makes a set in the layout the numba kernel
        runs fastest in; any other strides work too, slower. On the torch backend the results
        are computed as usual and copied in (no allocation saved; the output addresses stay
        fixed, which a CUDA graph needs)."""
        if check:
            actions = self._check_actions(actions)
        if out is not None and out is not self._out_arrays[0]:
            self._check_out(out)
            self._out_arrays = (out, self._kernel_arrays(out) if self.backend == "numba" else None)
        if self.backend == "numba":
            return self._step_numba(actions, out)
        sparse = self._sparse_resets and not torch.compiler.is_compiling()  # nonzero() would break a graph
        result, elapsed = self._step_fn(self.state, self._elapsed, actions, self.max_episode_steps, self._env_keys,
                                        self._round, self._env_index, sparse, self.group_size)
        self._round.add_(1)
        self._state.copy_(result.obs.T)
        self._elapsed.copy_(elapsed)
        return copy_into(out, result)

    def _step_numba(self, actions: torch.Tensor, out: StepResult | None) -> StepResult:
        if out is None:
            arrays, out = _numba_outputs(self.num_envs, _NP_DTYPE[self.dtype])
        else:
            arrays = self._out_arrays[1]  # step() checked this out= and made its arrays
        obs, final_obs, reward, terminated, truncated = arrays
        step = self._kernels.step if self.parallel else self._kernels.step_serial
        with torch_threads_kept(self.parallel):
            step(self._state_np, actions.numpy(), self._elapsed_np, self.max_episode_steps, self._keys_np,
                 self.group_size, self._round_np, self._consts, obs, final_obs, reward, terminated, truncated)
        return out

    @staticmethod
    def _kernel_arrays(out: StepResult) -> list[np.ndarray]:
        """The numba step kernel's output arrays over the tensors of ``out``."""
        return [_rows_for_kernel(out.obs), _rows_for_kernel(out.final_obs), out.reward.numpy(), out.terminated.numpy(),
                out.truncated.numpy()]

    def rollout(self, steps: int, actions="random", seed: int | None = None) -> RolloutResult:
        """Take ``steps`` steps of every env in one call, keeping only per-env totals: the summed
        rewards and the number of episodes ended. The envs end exactly where ``steps`` calls of
        :meth:`step` with the same actions leave them (autoreset included).

        ``actions``: ``"random"`` draws them inside the kernel from a counter-based stream keyed
        by ``seed`` (None: a fresh key); :func:`rollout_actions` gives the same actions as a
        tensor. Or a ``[steps, N]`` integer/bool tensor of actions (0 = left, else right).
        The numba backend runs the whole rollout in one kernel. The torch backend runs one pure
        step function per step (one fused kernel when the env was made with ``compile=True``); on
        CUDA that loop is captured as a CUDA graph on the first call for each ``steps`` and
        actions kind, and replayed after (the first call takes longer)."""
        steps, key, given = self._rollout_args(steps, actions, seed)
        n = self.num_envs
        if self.backend == "numba":
            reward = torch.zeros(n, dtype=torch.float32)
            episodes = torch.zeros(n, dtype=torch.int64)
            acts = given.numpy() if given is not None else np.empty((steps, 0), dtype=np.uint8)
            rollout = self._kernels.rollout if self.parallel else self._kernels.rollout_serial
            with torch_threads_kept(self.parallel):
                rollout(self._state_np, self._elapsed_np, self.max_episode_steps, self._keys_np, self.group_size,
                        self._round_np, self._consts, acts, np.uint64(key), reward.numpy(), episodes.numpy())
            return RolloutResult(reward, episodes)
        key_t = torch.tensor(rng.as_signed(key), dtype=torch.int64, device=self.device)
        if self.device.type == "cuda":
            return capture_rollout(self, steps, given, key_t)
        return RolloutResult(*self._rollout_loop(steps, given, key_t))

    def _rollout_loop(self, steps: int, given, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The torch backend's rollout: ``steps`` calls of the pure step function, then the envs'
        buffers updated in place. ``key``: the action key (0-d int64 tensor holding uint64 bits)."""
        n, dev = self.num_envs, self.device
        reward = torch.zeros(n, dtype=torch.float32, device=dev)
        episodes = torch.zeros(n, dtype=torch.int64, device=dev)
        lanes = torch.arange(n, device=dev) + 1
        shifts = torch.arange(64, device=dev)
        state, elapsed = self._state, self._elapsed
        for t in range(steps):
            if given is not None:
                a, shift = given[t], None
            else:
                if t % 64 == 0:
                    word = _action_words(key, t // 64, lanes)
                a, shift = word, shifts[t % 64]
            state, elapsed, reward, episodes = self._rollout_fn(state, elapsed, a, self.max_episode_steps, self._env_keys,
                                                                self._round, self._env_index, self.group_size, reward,
                                                                episodes, shift)
            self._round.add_(1)
        self._state.copy_(state)
        self._elapsed.copy_(elapsed)
        return reward, episodes

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
