"""``fastdqn profile``: where the time of the training iteration goes, phase by phase.

The engine marks its phases (:data:`fastdqn.engine.PHASES`: act, collect -- the fused CPU kernel
for epsilon-greedy, env step, store and bookkeeping --, or env, store and bookkeeping apart on the
tensor path --, sample, update, target) through ``Engine.phase``, a do-nothing context by
default. ``timer`` mode puts a wall clock around each phase (synchronising the GPU on CUDA) and
around each whole iteration, so the table's shares add up to 100 % of the measured iteration with
the remainder named "other"; ``trace`` mode names the same ranges with
``torch.profiler.record_function`` and writes a Chrome/Perfetto ``trace.json``. Evaluation and
the metrics read-back are timed apart (they run between iterations, not in them).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

import torch

from fastdqn.engine import PHASES, Engine, no_phase

PHASE_COLOURS = {"act": (31, 119, 180), "collect": (255, 127, 14), "env": (44, 160, 44), "store": (214, 39, 40),
                 "bookkeeping": (148, 103, 189), "sample": (140, 86, 75), "update": (227, 119, 194),
                 "target": (127, 127, 127), "other": (200, 200, 200)}


class PhaseTimer:
    """``Engine.phase`` replacement that adds each phase's wall time to ``self.current``."""

    def __init__(self, sync):
        self.sync = sync
        self.current: dict[str, float] = {}
        self._ranges = {name: _Range(self, name) for name in PHASES}

    def __call__(self, name: str):
        return self._ranges[name]


class _Range:
    __slots__ = ("timer", "name", "t0")

    def __init__(self, timer: PhaseTimer, name: str):
        self.timer, self.name, self.t0 = timer, name, 0.0

    def __enter__(self):
        self.timer.sync()
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.timer.sync()
        cur = self.timer.current
        cur[self.name] = cur.get(self.name, 0.0) + time.perf_counter() - self.t0


def cpu_model() -> str:
    import platform

    return cpuinfo_field("model name") or platform.processor()


def cpuinfo_field(name: str) -> str:
    """The first value of field ``name`` in /proc/cpuinfo ("" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return ""


def _stats(xs: list[float]) -> dict:
    s = sorted(xs)
    return {"mean_us": statistics.fmean(s) * 1e6, "p50_us": s[len(s) // 2] * 1e6,
            "p95_us": s[min(len(s) - 1, math.ceil(0.95 * len(s)) - 1)] * 1e6}


def _timed_block(engine: Engine, iterations: int, sync) -> float:
    """Mean seconds per iteration of ``iterations`` unmarked iterations."""
    sync()
    t = time.perf_counter()
    for _ in range(iterations):
        engine.step()
    sync()
    return (time.perf_counter() - t) / iterations


def run_profile(configs, device, backend, *, iterations: int = 500, warmup: int = 50, mode: str = "timer",
                out=None, fuse: bool = True) -> dict:
    """Profile the engine for ``configs`` (one per agent): fill the replay until learning starts,
    ``warmup`` iterations, then ``iterations`` measured ones. Returns the report (also written to
    ``out``/profile.json with a PNG and, in trace mode, trace.json)."""
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1; got {iterations!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0; got {warmup!r}")
    if mode not in ("timer", "trace", "both"):
        raise ValueError(f"mode must be timer, trace or both; got {mode!r}")
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    engine = Engine(configs, device=device, backend=backend, fuse=fuse)
    while not engine.learns_next() and engine.host_env_steps < configs[0].learning_starts:
        engine.step()  # fill the replay: the measured iterations learn as they do in training
    for _ in range(warmup):
        engine.step()
    report = {"phases": [], "iteration": None}
    if mode in ("timer", "both"):
        report.update(_timer_report(engine, iterations, sync))
    if mode in ("trace", "both"):
        if out is None:
            raise ValueError("trace mode needs an output directory")
        report["trace"] = _trace(engine, min(iterations, 200), Path(out) / "trace.json", device)
    t = time.perf_counter()
    engine.evaluate()
    sync()
    report["evaluation_ms"] = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    for _ in range(10):
        engine.read_metrics()
    report["metrics_flush_us"] = (time.perf_counter() - t) / 10 * 1e6
    from fastdqn.train import versions

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    report.update(machine={"cpu": cpu_model(), "cuda": gpu}, versions=versions(), agents=engine.agents,
                  num_envs=engine.num_envs, batch_size=configs[0].batch_size,
                  iterations=iterations, warmup=warmup, mode=mode, device=str(device), env_backend=backend,
                  fused_collect=engine._collect_kernel is not None, torch_threads=torch.get_num_threads(),
                  config=configs[0].to_dict())
    return report


def _timer_report(engine: Engine, iterations: int, sync) -> dict:
    plain_before = _timed_block(engine, iterations, sync)
    timer = PhaseTimer(sync)
    engine.phase = timer
    totals, per_phase = [], {}
    try:
        for _ in range(iterations):
            timer.current = {}
            sync()
            t = time.perf_counter()
            engine.step()
            sync()
            totals.append(time.perf_counter() - t)
            for name, v in timer.current.items():
                per_phase.setdefault(name, []).append(v)
    finally:
        engine.phase = no_phase
    plain_after = _timed_block(engine, iterations, sync)
    mean_total = statistics.fmean(totals)
    phases = []
    for name in PHASES:
        if name in per_phase:
            xs = per_phase[name] + [0.0] * (iterations - len(per_phase[name]))  # iterations without it
            phases.append({"phase": name, **_stats(xs), "share": statistics.fmean(xs) / mean_total})
    explained = sum(p["share"] for p in phases)
    other = [t - sum(per_phase[n][i] if i < len(per_phase[n]) else 0.0 for n in per_phase) for i, t in
             enumerate(totals)]
    phases.append({"phase": "other", **_stats(other), "share": 1.0 - explained})
    plain = (plain_before + plain_after) / 2
    return {"phases": phases, "iteration": _stats(totals), "explained_share": explained,
            "unprofiled_iteration_us": plain * 1e6, "overhead": mean_total / plain - 1.0}


def _trace(engine: Engine, iterations: int, path: Path, device: torch.device) -> dict:
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    engine.phase = record_function
    try:
        with profile(activities=activities) as prof:
            for _ in range(iterations):
                with record_function("iteration"):
                    engine.step()
    finally:
        engine.phase = no_phase
    prof.export_chrome_trace(str(path))
    return {"file": path.name, "iterations": iterations}


def format_table(report: dict) -> str:
    it = report["iteration"]
    lines = [f"{report['agents']} agent(s) x {report['num_envs']} envs, batch {report['batch_size']}, "
             f"{report['device']} ({report['env_backend']} env{', fused collect' if report['fused_collect'] else ''}), "
             f"{report['iterations']} iterations",
             f"{'phase':<12} {'mean us':>9} {'p50 us':>9} {'p95 us':>9} {'share':>7}"]
    for p in report["phases"]:
        lines.append(f"{p['phase']:<12} {p['mean_us']:>9.1f} {p['p50_us']:>9.1f} {p['p95_us']:>9.1f} "
                     f"{100 * p['share']:>6.1f}%")
    lines.append(f"{'iteration':<12} {it['mean_us']:>9.1f} {it['p50_us']:>9.1f} {it['p95_us']:>9.1f} {100.0:>6.1f}%")
    lines.append(f"unprofiled iteration {report['unprofiled_iteration_us']:.1f} us (timer overhead "
                 f"{100 * report['overhead']:+.1f} %); evaluation {report['evaluation_ms']:.1f} ms per call; "
                 f"metrics read-back {report['metrics_flush_us']:.1f} us per call")
    return "\n".join(lines)


def compare(a: dict, b: dict) -> str:
    """Two profile reports side by side: per phase and for the iteration, B / A."""
    pa = {p["phase"]: p["mean_us"] for p in a["phases"]}
    pb = {p["phase"]: p["mean_us"] for p in b["phases"]}
    names = [n for n in (*PHASES, "other") if n in pa or n in pb]
    lines = [f"{'phase':<12} {'A us':>9} {'B us':>9} {'B/A':>7}"]

    def row(name, x, y):
        ratio = f"{y / x:>7.2f}" if x and y is not None else f"{'-':>7}"
        fx = f"{x:>9.1f}" if x is not None else f"{'-':>9}"
        fy = f"{y:>9.1f}" if y is not None else f"{'-':>9}"
        return f"{name:<12} {fx} {fy} {ratio}"

    for n in names:
        lines.append(row(n, pa.get(n), pb.get(n)))
    lines.append(row("iteration", a["iteration"]["mean_us"], b["iteration"]["mean_us"]))
    return "\n".join(lines)


def load_report(path) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / "profile.json"
    try:
        report = json.loads(p.read_text())
    except FileNotFoundError:
        raise ValueError(f"no profile report at {p}") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read profile report {p}: {type(e).__name__}") from None
    if not isinstance(report, dict) or not report.get("phases") or not report.get("iteration"):
        raise ValueError(f"{p} is not a fastdqn timer-mode profile report (no phase table)")
    return report


def write_outputs(report: dict, out: Path) -> None:
    from fastdqn.plot import stacked_bar

    (out / "profile.json").write_text(json.dumps(report, indent=2) + "\n")
    if report["phases"]:
        stacked_bar(out / "profile.png", [(p["phase"], p["mean_us"], PHASE_COLOURS[p["phase"]]) for p in report["phases"]],
                    title=f"fastdqn iteration: {report['iteration']['mean_us']:.0f} us ({report['agents']} agent(s), "
                          f"{report['num_envs']} envs, batch {report['batch_size']}, {report['device']})",
                    unit="us")
