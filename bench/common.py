"""Shared helpers for the benchmark scripts: machine/version info, timing, JSON output."""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine_info() -> dict:
    import numba
    import numpy
    import torch

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "cpu_family_model": _cpuinfo_field("cpu family") + "/" + _cpuinfo_field("model"),  # 25: Zen 3/4, 26: Zen 5
        "cpu_cache": _cpuinfo_field("cache size"),
        "cpu_simd": _cpu_simd(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["numba_threading_layer"] = _numba_threading_layer()
    except Exception as e:  # noqa: BLE001 - informational only
        info["numba_threading_layer"] = f"unknown ({e})"
    try:
        import gymnasium

        info["gymnasium"] = gymnasium.__version__
    except ImportError:
        pass
    return info


def _cpuinfo_field(name: str) -> str:
    from fastdqn.profile import cpuinfo_field

    return cpuinfo_field(name) or "?"


def _cpu_simd() -> str:
    """The SIMD extensions the CPU reports (of those that change the kernels' code), e.g. "avx2 fma"."""
    have = set(_cpuinfo_field("flags").split())
    return " ".join(f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512vl") if f in have)


def _numba_threading_layer() -> str:
    import numba
    import numpy as np

    @numba.njit(parallel=True)
    def touch(a):
        for i in numba.prange(a.shape[0]):
            a[i] += 1

    touch(np.zeros(2))  # the layer is chosen at the first parallel call
    return numba.threading_layer()


def _cpu_model() -> str:
    from fastdqn.profile import cpu_model

    return cpu_model()


def time_repeats(fn, *, repeats: int = 5, min_time: float = 0.2, sync=lambda: None) -> tuple[list[float], int]:
    """Seconds per call of ``fn`` for each of ``repeats`` timed blocks, after a warm-up.

    The number of calls per block is calibrated so one block takes about ``min_time``.
    """
    fn()
    sync()
    calls, elapsed = 1, 0.0
    while True:
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        elapsed = time.perf_counter() - t
        if elapsed >= min_time / 4 or calls >= 1 << 20:
            break
        calls *= 4
    calls = max(1, int(calls * min_time / max(elapsed, 1e-9)))
    per_call = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        per_call.append((time.perf_counter() - t) / calls)
    return per_call, calls


def train_process(args: list[str], run_dir: Path, limit: float, grace: float | None = None, cwd=None) -> tuple[float, bool]:
    """``fastdqn train ARGS --out RUN_DIR`` (no progress bar, no plot) as a fresh process. Past
    ``limit`` seconds it gets SIGINT, on which the trainer writes its checkpoint and summary, then
    ``grace`` seconds more (None: as long as it takes). Returns ``(process wall s, interrupted)``;
    raises RuntimeError when it fails or leaves no summary."""
    cmd = [sys.executable, "-m", "fastdqn", "train", *args, "--out", str(run_dir), "--progress", "false",
           "--plot", "false"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=cwd)
    try:
        _, err = proc.communicate(timeout=max(limit, 1))
        interrupted = False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        interrupted = True
        _, err = proc.communicate(timeout=grace)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 130) or not (Path(run_dir) / "summary.json").exists():
        raise RuntimeError(f"fastdqn train {' '.join(args)} exited {proc.returncode}: {err.strip()[-2000:]}")
    return wall, interrupted


def median(xs):
    return statistics.median(xs)


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def loglog(ax, xlabel: str, ylabel: str, legend_size: int = 8, xbase: int = 10) -> None:
    """Log-log axes with labels, a light grid and a legend (the benchmarks' common frame)."""
    ax.set_xscale("log", base=xbase)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=legend_size)
