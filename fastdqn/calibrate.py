"""Where the threaded numba step starts to beat the serial one, measured on this machine.

Waking numba's thread pool costs microseconds; below some batch size the serial kernel wins. That
size differs between CPUs (and thread counts), so it is measured, once per (CPU model, numba
thread count, kernel version), and cached in ``$XDG_CACHE_HOME/fastdqn/parallel_min_envs.json``
(``~/.cache`` by default). Measuring takes about a second. ``FASTDQN_PARALLEL_MIN_ENVS=<int>`` skips the
measurement and sets the switch; an unwritable cache only means measuring again next process.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import numpy as np

KERNEL_VERSION = 2  # bump when the step kernels change enough to move the switch
SIZES = (256, 512, 1024, 2048, 4096, 8192, 16384)
NEVER = 1 << 62  # "always serial": the threaded kernel never won
ENV_VAR = "FASTDQN_PARALLEL_MIN_ENVS"

_memo: dict[str, int] = {}


@contextlib.contextmanager
def torch_threads_kept(threaded: bool = True):
    """Around a threaded numba kernel: numba's OpenMP layer sets the process's OpenMP thread count,
    which torch's intra-op pool shares (a trainer that runs torch on one thread found it on two
    after an evaluation), so put torch's count back afterwards."""
    if not threaded:
        yield
        return
    import torch

    n = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "fastdqn" / "parallel_min_envs.json"


def parallel_min_envs() -> int:
    """Smallest batch from which :class:`fastdqn.CartPole`'s numba backend uses the threaded kernels."""
    override = os.environ.get(ENV_VAR)
    if override is not None:
        try:
            return int(override)
        except ValueError:
            raise ValueError(f"{ENV_VAR} must be an integer, got {override!r}") from None
    import numba

    from fastdqn.profile import cpu_model

    # Measured at one thread too: there the threaded kernels ran 1.5x faster than their serial
    # twins on big batches (Zen 5; same vector code in both, cause not pinned down).
    threads = numba.get_num_threads()
    key = f"{cpu_model()} | numba threads {threads} | kernel v{KERNEL_VERSION}"
    if key in _memo:
        return _memo[key]
    path = cache_path()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if not isinstance(cached, dict):
        cached = {}
    if isinstance(cached.get(key), dict) and isinstance(cached[key].get("parallel_min_envs"), int):
        _memo[key] = cached[key]["parallel_min_envs"]
        return _memo[key]
    timings = measure()
    _memo[key] = switch_point(timings)
    cached[key] = {"parallel_min_envs": _memo[key], "seconds_per_step": timings}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cached, indent=1))
        tmp.replace(path)
    except OSError:
        pass
    return _memo[key]


def switch_point(timings: dict, margin: float = 0.9) -> int:
    """The smallest measured N from which the threaded kernel took at most ``margin`` times the
    serial kernel's time at N and at every larger N (:data:`NEVER` if it never did).
    ``timings``: ``{str(N): {"serial": s, "parallel": s}}``."""
    best = NEVER
    for n in sorted((int(k) for k in timings), reverse=True):
        t = timings[str(n)]
        if t["parallel"] > margin * t["serial"]:
            break
        best = n
    return best


def measure(sizes=SIZES, block_s: float = 0.004, repeats: int = 5) -> dict:
    """Seconds per step of the serial and the threaded step kernel at each size (best of
    ``repeats`` blocks of about ``block_s``), on float32 envs with random actions."""
    from fastdqn.cartpole import CartPole, _numba_outputs
    from fastdqn.kernels import cartpole_numba as k

    out = {}
    for n in sizes:
        env = CartPole(n, backend="numba", seed=0)
        outputs = _numba_outputs(n, "float32")[0]
        actions = np.random.default_rng(0).integers(0, 2, n)
        state, elapsed, max_steps, keys, round_, c = env.collect_kernel()[1]
        args = (state, actions, elapsed, max_steps, keys, n, round_, c, *outputs)
        out[str(n)] = {name: _seconds_per_call(kernel, args, block_s, repeats)
                       for name, kernel in (("serial", k.step_serial), ("parallel", k.step))}
    return out


def _seconds_per_call(kernel, args, block_s: float, repeats: int) -> float:
    kernel(*args)
    t0 = time.perf_counter()
    kernel(*args)
    calls = max(1, int(block_s / max(time.perf_counter() - t0, 1e-7)))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            kernel(*args)
        best = min(best, (time.perf_counter() - t0) / calls)
    return best
