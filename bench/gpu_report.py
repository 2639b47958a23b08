"""The GPU report: one run on a CUDA machine writes ``gpu.json`` (and, later, its PNG).

    python bench/gpu_report.py --out DIR [--budget 450]      # on the GPU machine
    python bench/gpu_report.py --plot DIR/gpu.json            # anywhere: gpu.png beside it
    python bench/gpu_report.py --device cpu --quick --out DIR # the same logic on a CPU, in a minute

Sections, in this order; each rewrites ``gpu.json`` when it finishes, and each gets what is left
of ``--budget`` seconds (a section that runs out records an error and the next one starts), so a
slow or broken part costs its own rows only:

* ``startup_s``: median process wall of ``import torch`` + CUDA init (5 fresh processes).
* ``iteration_us``: ``N8_B128``, ``N4096_B4096``, ``N65536_B65536`` (num_envs / batch, the fast
  preset otherwise, one update per vector step): wall per iteration eager, captured
  (``--compile graph``: one replay per iteration) and captured 16 iterations per replay; CUDA
  kernels and GPU busy time per iteration from ``torch.profiler`` (eager: also per phase, as
  ``fastdqn profile`` names them); env steps/s and updates/s.
* ``time_to_solve``: ``fastdqn train --preset fast`` end to end as fresh processes, seeds 0-4
  with ``--compile graph`` and 0-2 eager, each policy then scored on Gymnasium's own CartPole-v1
  (100 episodes, >= 475 to count): ``runs = [{seed, compile, wall_s, train_s, solved, gym_mean}]``.
* ``population``: ``--population 1024`` (captured) end to end: wall and agents solved.
* ``env``: ``bench/env_throughput.py`` rows for the torch backend's captured rollout and gymnax's
  jitted scan on the GPU (when gymnax is installed), N = 4,096 to 16,777,216.
* ``compiled_graph``: ``torch.compile(fullgraph=True)`` of the iteration, then captured, at N8_B128
  (compile time and wall per iteration). Skipped by ``--quick``.
* ``minatar`` (only when named in ``--sections``: up to 5 minutes a game): 16 seeds of a MinAtar
  game (``--minatar-games``, default Breakout) from pixels as one captured population, with the
  paper's DQN return as target: wall and agents that reached it.

On a CPU (``--device cpu``) the captured rows run the same capture logic through the stand-in
recorder (:class:`fastdqn.graphs.AddressCheckRecorder`, which re-runs the iteration), and
``--quick`` shrinks every section; those numbers say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine_info, train_process  # noqa: E402

SECTIONS = ("startup_s", "iteration_us", "time_to_solve", "population", "env", "compiled_graph", "minatar")


class Report:
    """``gpu.json`` written after every section, with the sections' errors kept beside them."""

    def __init__(self, out: Path, budget: float):
        self.path = out / "gpu.json"
        self.deadline = time.perf_counter() + budget
        self.data: dict = {"errors": {}}

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def write(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=1) + "\n")

    def section(self, name: str, fn, *args) -> None:
        if self.left() < 5:
            self.data["errors"][name] = "skipped: out of budget"
        else:
            t = time.perf_counter()
            try:
                self.data[name] = fn(*args)
            except Exception as e:  # noqa: BLE001 - one section's failure must not lose the others
                self.data["errors"][name] = f"{type(e).__name__}: {str(e)[:800]}"
            print(f"[{name}] {time.perf_counter() - t:.1f} s: "
                  f"{'error ' + self.data['errors'][name][:300] if name in self.data['errors'] else 'done'}", flush=True)
        self.write()


def header(device: str) -> dict:
    import numba
    import numpy
    import torch

    cpu = machine_info()["cpu"]
    d = {"device": torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({cpu})",
         "versions": {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                      "numpy": numpy.__version__, "numba": numba.__version__},
         "host": {"cpu": cpu, "cpu_count": os.cpu_count()},
         "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    from importlib.metadata import PackageNotFoundError, version

    for name in ("gymnasium", "jax", "gymnax"):
        try:
            d["versions"][name] = version(name)
        except PackageNotFoundError:
            pass
    return d


def startup(device: str, runs: int) -> dict:
    code = ("import torch\nif torch.cuda.is_available():\n    torch.zeros(1, device='cuda')\n"
            "    torch.cuda.synchronize()\n") if device == "cuda" else "import torch\n"
    walls = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=tempfile.gettempdir())
        walls.append(time.perf_counter() - t)
    return {"median_s": statistics.median(walls), "runs_s": walls, "what": code.strip()}


# -- iteration_us ---------------------------------------------------------------------------------
def _engine(device: str, n: int, batch: int):
    from fastdqn.config import preset
    from fastdqn.engine import Engine

    base = preset("fast")
    cfg = base.replace(num_envs=n, batch_size=batch, buffer_size=max(base.buffer_size, 4 * n, 2 * batch),
                       learning_starts=max(batch, n), train_frequency=1, gradient_steps=1, total_steps=10**12,
                       env_backend="torch", device=device)
    e = Engine([cfg], device=device, backend="torch")
    while not e.learns_next():
        e.step()  # fill the replay: every measured iteration learns
    return e


def _timed(engine, iterations: int, per_call: int, sync) -> float:
    """Microseconds per iteration over ``iterations``, ``per_call`` iterations per advance."""
    engine.advance(per_call)  # a first call of a new shape or graph is not timed
    sync()
    t = time.perf_counter()
    for _ in range(max(1, iterations // per_call)):
        engine.advance(per_call)
    sync()
    return (time.perf_counter() - t) / (max(1, iterations // per_call) * per_call) * 1e6


def _kernels(engine, per_call: int, device: str, calls: int = 5) -> dict:
    """CUDA kernels and GPU busy microseconds per iteration (``torch.profiler``); for an eager
    engine also per phase (the engine's phase ranges, ``fastdqn profile``'s names)."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    from fastdqn.engine import PHASES, no_phase

    if device != "cuda":
        return {}
    captured = hasattr(engine.iteration_fn, "run")
    if not captured:
        engine.phase = record_function
    torch.cuda.synchronize()
    try:
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(calls):
                engine.advance(per_call)
            torch.cuda.synchronize()
    finally:
        engine.phase = no_phase
    events = prof.events()
    its = calls * per_call
    gpu = [e for e in events if e.device_type.name == "CUDA" and e.name not in PHASES]  # not the ranges' GPU marks
    busy = sum(e.time_range.elapsed_us() for e in gpu) / its  # kernels and copies on one stream: no overlap
    out = {"cuda_kernels": len(gpu) / its, "gpu_busy_us": busy}
    if not captured:  # kernels launched under each phase's range, by walking its CPU ops
        def launched(ev):
            return len(ev.kernels) + sum(launched(c) for c in ev.cpu_children)

        def gpu_us(ev):
            return sum(k.duration for k in ev.kernels) + sum(gpu_us(c) for c in ev.cpu_children)

        ranges = [e for e in events if e.name in PHASES and e.device_type.name == "CPU"]
        out["phases"] = {name: {"cuda_kernels": sum(launched(e) for e in ranges if e.name == name) / its,
                                "gpu_us": sum(gpu_us(e) for e in ranges if e.name == name) / its}
                         for name in PHASES if any(e.name == name for e in ranges)}
    return out


def iteration_case(device: str, n: int, batch: int, iterations: int, recorder_factory) -> dict:
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = {}
    e = _engine(device, n, batch)
    for _ in range(10):
        e.step()
    us = _timed(e, iterations, 1, sync)
    rows["eager"] = {"us": us, **_kernels(e, 1, device)}
    e.capture(recorder_factory(e))
    for per_call in (1, 16):
        for _ in range(3):
            e.advance(per_call)  # the warm-up runs and the capture of this pattern
        us = _timed(e, iterations, per_call, sync)
        rows["graph" if per_call == 1 else f"graph_T{per_call}"] = {"us": us, **_kernels(e, per_call, device)}
    for r in rows.values():
        r["env_steps_per_s"] = n / r["us"] * 1e6
        r["updates_per_s"] = 1e6 / r["us"]
        if "gpu_busy_us" in r:
            r["gpu_busy_share"] = r["gpu_busy_us"] / r["us"]
    return rows


def iterations(device: str, cases, iters: int, recorder_factory) -> dict:
    out = {}
    for n, batch in cases:
        out[f"N{n}_B{batch}"] = row = iteration_case(device, n, batch, iters, recorder_factory)
        print(f"  N={n} B={batch}: " + ", ".join(f"{k} {v['us']:.1f} us" + (f" ({v['cuda_kernels']:.0f} kernels, "
              f"GPU busy {100 * v['gpu_busy_share']:.0f} %)" if "cuda_kernels" in v else "")
              for k, v in row.items()), flush=True)
    return out


def compiled_graph(device: str, iters: int, recorder_factory) -> dict:
    """The iteration compiled (fullgraph) and then captured, at 8 envs / batch 128."""
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    e = _engine(device, 8, 128)
    t = time.perf_counter()
    torch._dynamo.reset()  # a fresh compile, whatever this process compiled before
    e.iteration = torch.compile(e.iteration, fullgraph=True, dynamic=False)
    e.step()
    e.step()
    sync()
    compile_s = time.perf_counter() - t
    e.capture(recorder_factory(e))
    for _ in range(3):
        e.step()
    us = _timed(e, iters, 1, sync)
    return {"N8_B128": {"compile_s": compile_s, "us": us, **_kernels(e, 1, device)}}


# -- end-to-end runs ------------------------------------------------------------------------------
def _train(args: list[str], run_dir: Path, timeout: float) -> dict:
    """``fastdqn train ARGS`` as a fresh process (SIGINT past ``timeout`` s, then 30 s to write its
    summary): its process wall and its summary's figures."""
    wall, _ = train_process(args, run_dir, timeout, grace=30, cwd=run_dir.parent)
    s = json.loads((run_dir / "summary.json").read_text())
    return {"wall_s": wall, "train_s": s["wall_time_s"], "solved": s["solved"], "agents_solved": s["agents_solved"],
            "env_steps": s["env_steps"], "env_steps_per_s": s["env_steps_per_s"], "interrupted": s["interrupted"]}


def time_to_solve(device: str, plan, report: Report, work: Path) -> dict:
    import numpy as np

    from fastdqn import load_policy
    from fastdqn.evaluate import gymnasium_returns

    runs = []
    out = {"preset": "fast", "gym_check": "100 episodes of Gymnasium's CartPole-v1, mean >= 475", "runs": runs}
    report.data["time_to_solve"] = out
    for mode, seeds in plan:
        for seed in seeds:
            if report.left() < 30:
                out["stopped"] = "out of budget"
                return out
            d = work / f"solve_{mode}_{seed}"
            try:
                r = _train(["--preset", "fast", "--device", device, "--compile", mode, "--seed", str(seed)], d,
                           report.left() - 10)
                gym = float(np.mean(gymnasium_returns(load_policy(d), "CartPole-v1", 100)))
                r.update(seed=seed, compile=mode, gym_mean=gym, solved=bool(r["solved"] and gym >= 475))
            except Exception as e:  # noqa: BLE001 - the next seed still runs
                r = {"seed": seed, "compile": mode, "error": f"{type(e).__name__}: {str(e)[:400]}"}
            runs.append(r)
            print(f"  {mode} seed {seed}: {r}", flush=True)
            report.write()
    for mode, _ in plan:
        walls = [r["wall_s"] for r in runs if r["compile"] == mode and "wall_s" in r]
        trains = [r["train_s"] for r in runs if r["compile"] == mode and "train_s" in r]
        if walls:
            out[f"median_wall_s_{mode}"] = statistics.median(walls)
            out[f"median_train_s_{mode}"] = statistics.median(trains)
            out[f"solved_{mode}"] = f"{sum(r.get('solved', False) for r in runs if r['compile'] == mode)}/{len(walls)}"
    return out


def population(device: str, k: int, mode: str, report: Report, work: Path, extra: list[str]) -> dict:
    d = work / f"population_{k}"
    r = _train(["--preset", "fast", "--device", device, "--compile", mode, "--population", str(k), "--seed", "0",
                *extra], d, max(report.left() - 10, 10))
    return {"agents": k, "compile": mode, **r, "solved_share": r["agents_solved"] / k}


MINATAR_TARGETS = {"Breakout": 10.0, "SpaceInvaders": 43.0}  # the MinAtar paper's DQN after 5M frames


def minatar(device: str, seeds: int, mode: str, report: Report, work: Path, limit: float, extra: list[str],
            games: list[str]) -> dict:
    """Per game: SEEDS agents as one population from pixels (the game's preset, --target_return the
    paper's DQN), stopped at ``limit`` seconds; the trainer's solved count is its confirmed reach."""
    out = {}
    for game in games:
        target = MINATAR_TARGETS[game]
        if report.left() < 30:
            out[game] = {"error": "skipped: out of budget"}
            continue
        d = work / f"minatar_{game}"
        r = _train(["--env", f"MinAtar/{game}-v1", "--device", device, "--compile", mode, "--population", str(seeds),
                    "--seed", "0", "--target_return", str(target), *extra], d, min(limit, report.left() - 10))
        out[game] = {"agents": seeds, "target_return": target, "compile": mode, **r}
        print(f"  {game}: {out[game]}", flush=True)
        report.data["minatar"] = out
        report.write()
    return out


def env_rows(device: str, report: Report, work: Path, sizes) -> dict:
    """bench/env_throughput.py's captured torch rollout and gymnax's jitted scan on this device."""
    stem = work / "env_report"
    only = ["fastdqn-torch-cuda-rollout", "gymnax-gpu-jit-scan"] if device == "cuda" else ["fastdqn-numba-rollout"]
    cmd = [sys.executable, str(HERE / "env_throughput.py"), "--no-compile", "--repeats", "3", "--min-time", "0.1",
           "--sizes", *map(str, sizes), "--only", *only, "--out", str(stem)]
    if device == "cuda":
        cmd += ["--gymnax-platform", "cuda"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(report.left() - 5, 5), cwd=work)
    path = Path(f"{stem}.json")  # an absolute stem: env_throughput.py writes there, not into bench/results
    if not path.exists():
        raise RuntimeError(f"env_throughput.py wrote nothing (exit {proc.returncode}): {proc.stderr.strip()[-400:]}")
    rows = json.loads(path.read_text())["results"]
    return {"rows": [{k: r[k] for k in ("method", "num_envs", "steps_per_s_median", "steps_per_call")} for r in rows],
            "stdout_tail": proc.stdout[-1500:]}


# -- the PNG --------------------------------------------------------------------------------------
def plot(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(path.read_text())
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    cases = data.get("iteration_us", {})
    modes = sorted({m for row in cases.values() for m in row})
    ax = axes[0]
    width = 0.8 / max(len(modes), 1)
    for j, mode in enumerate(modes):
        xs = [i + j * width for i in range(len(cases))]
        ax.bar(xs, [row.get(mode, {}).get("us", 0.0) for row in cases.values()], width, label=mode)
    ax.set_xticks([i + width * (len(modes) - 1) / 2 for i in range(len(cases))], list(cases))
    ax.set_yscale("log")
    ax.set_ylabel("wall per training iteration (us)")
    ax.set_title("one iteration: act, step, store, sample, update")
    ax.legend(fontsize=8)
    ax = axes[1]
    runs = data.get("time_to_solve", {}).get("runs", [])
    for mode, marker in (("graph", "o"), ("none", "s")):
        pts = [(r["seed"], r["wall_s"]) for r in runs if r.get("compile") == mode and "wall_s" in r]
        if pts:
            ax.plot(*zip(*pts), marker, label=f"compile {mode} (process wall)")
    if "startup_s" in data:
        ax.axhline(data["startup_s"]["median_s"], color="grey", ls="--", label="startup (import torch + CUDA init)")
    ax.set_xlabel("seed")
    ax.set_ylabel("seconds")
    ax.set_title("fastdqn train --preset fast, end to end")
    ax.legend(fontsize=8)
    fig.suptitle(f"{data.get('device', '?')}, torch {data.get('versions', {}).get('torch', '?')}")
    fig.tight_layout()
    png = path.with_suffix(".png")
    fig.savefig(png, dpi=110)
    return png


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, help="folder for gpu.json and the runs' folders")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--budget", type=float, default=450.0, help="seconds for all sections together (default 450)")
    p.add_argument("--quick", action="store_true", help="small sizes, one seed each (a check of the logic)")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, help="which sections (default: all; --quick: all but "
                   "compiled_graph)")
    p.add_argument("--minatar-games", nargs="+", choices=sorted(MINATAR_TARGETS), default=["Breakout"],
                   help="the minatar section's games (default Breakout: 5 minutes a game)")
    p.add_argument("--plot", type=Path, metavar="GPU_JSON", help="only draw gpu.png from an existing gpu.json")
    args = p.parse_args(argv)
    if args.plot:
        print("wrote", plot(args.plot))
        return 0
    if args.out is None:
        p.error("--out is required (or --plot GPU_JSON)")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("torch sees no CUDA GPU; use --device cpu for a check of the logic")
    from fastdqn.graphs import AddressCheckRecorder, CudaRecorder

    recorder = (lambda e: CudaRecorder(e.device)) if args.device == "cuda" else AddressCheckRecorder
    args.out.mkdir(parents=True, exist_ok=True)
    args.out = args.out.resolve()
    work = args.out / "runs"
    work.mkdir(exist_ok=True)
    report = Report(args.out, args.budget)
    report.data.update(header(args.device))
    report.write()
    quick, dev = args.quick, args.device
    cases = [(8, 128), (256, 256)] if quick else [(8, 128), (4096, 4096), (65536, 65536)]
    # on a CPU --compile graph is refused (it needs CUDA): the end-to-end runs go eager there
    plan = [("none", [0])] if dev != "cuda" else [("graph", [0, 1, 2, 3, 4]), ("none", [0, 1, 2])]
    sections = {
        "startup_s": (startup, dev, 2 if quick else 5),
        "iteration_us": (iterations, dev, cases, 50 if quick else 300, recorder),
        "time_to_solve": (time_to_solve, dev, plan, report, work),
        "population": (population, dev, 2 if quick else 1024, "graph" if dev == "cuda" else "none", report, work,
                       ["--total_steps", "20000"] if quick else []),
        "env": (env_rows, dev, report, work, [4096] if quick else [4096, 65536, 1048576, 16777216]),
        "compiled_graph": (compiled_graph, dev, 50 if quick else 300, recorder),
        "minatar": (minatar, dev, 2 if quick else 16, "graph" if dev == "cuda" else "none", report, work,
                    20 if quick else 300, ["--total_steps", "2000", "--learning_starts", "500"] if quick else [],
                    args.minatar_games),
    }
    chosen = args.sections or [s for s in SECTIONS if s != "minatar" and not (quick and s == "compiled_graph")]
    for name in SECTIONS:
        if name in chosen:
            report.section(name, *sections[name])
    print("wrote", report.path, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
