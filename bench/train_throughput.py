"""Training-loop throughput (env steps/s, updates/s) over num_envs x batch size, eager and compiled.

    python bench/train_throughput.py [--num-envs 1 16 256 4096] [--batch-sizes 64 256 1024] [--compile]
                                     [--compile-mode default] [--seconds 2.0] [--repeats 3]

Part 1, the loop: ``fastdqn.train.train`` in-process on the `fast` preset (``--preset``) with
stop_when_solved=False, eval_every=0, eval_episodes=1, learning_starts=batch_size,
buffer_size=max(100000, num_envs, batch), on the CPU and, when ``torch.cuda.is_available()``, on CUDA;
eager (compile "none") always, plus ``--compile-mode`` with ``--compile``. The rates come from each run's
summary (``env_steps_per_s``, ``updates_per_s``: env steps and updates over the loop's wall time). That loop
time also holds fixed costs: the updates-free prefill and the first update's torch.compile.
So each repeat runs two lengths, short (prefill + V/4 vector steps) and long
(short + V), and reports both the long run's summary rates ("loop_*") and the difference between the two
("steady_*" = extra env steps or updates / extra loop seconds), which cancels the fixed costs. V is
calibrated per cell (eager) so the difference takes about ``--seconds``. Compiled runs call
``torch._dynamo.reset()`` first, so each pays a fresh trace (as a new process with a warm inductor cache
would) and never hits dynamo's recompile limit.

Part 2, the update alone: ``Learner.update`` for a single agent (population K=1: parameters [1, P], batch
[1, B]) on one fixed batch per batch size (the preset's ``MLP`` and loss, ``torch_threads or 1`` CPU threads as
train() uses for one agent), median of 5 timed blocks (``common.time_repeats``) after the first call, which is
timed on its own ("first_call_s": for compiled modes the compile time). train() compiles the whole engine
iteration (act, step, store, sample, update); here a compile mode wraps ``learner.update`` alone
(``torch.compile(learner.update, mode=...)``, the Adam step taking its compile-safe branch).

Writes bench/results/train_throughput.json and .png (``--quick``: tiny grid, ``_quick`` suffix).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, loglog, machine_info, median, time_repeats, write_json  # noqa: E402

from fastdqn.config import preset  # noqa: E402
from fastdqn.learner import MLP, Learner  # noqa: E402
from fastdqn.replay import ReplayBuffer  # noqa: E402
from fastdqn.train import set_threads, train  # noqa: E402

NUM_ENVS = [1, 16, 256, 4096]
BATCH_SIZES = [64, 256, 1024]


def reset_compiler(mode: str) -> None:
    if mode != "none":
        torch._dynamo.reset()


def cell_config(args, device: str, mode: str, n: int, b: int):
    return preset(args.preset).replace(
        num_envs=n, batch_size=b, learning_starts=b, buffer_size=max(100_000, n, b), stop_when_solved=False,
        eval_every=0, eval_episodes=1, progress=False, plot=False, device=device, compile=mode,
    ).validate()


def run_loop(cfg, vector_steps: int) -> dict:
    """One training run of ``vector_steps`` vector steps; its summary rates and the loop time they imply."""
    reset_compiler(cfg.compile)
    cfg = cfg.replace(total_steps=vector_steps * cfg.num_envs)
    with tempfile.TemporaryDirectory(prefix="fastdqn-tput-") as d:
        r = train(cfg, out=Path(d) / "run")
    loop_s = r.env_steps / r.env_steps_per_s  # the loop's wall time, as train() measured it
    return {"env_steps": r.env_steps, "updates": r.updates, "loop_s": loop_s, "wall_time_s": r.wall_time_s,
            "env_steps_per_s": r.env_steps_per_s, "updates_per_s": r.updates_per_s}


def calibrate(cfg, prefill: int, probe: int) -> float:
    """Seconds per steady-state vector step (eager), from two short runs differenced."""
    run_loop(cfg, prefill + 5)  # numba JIT, first-touch allocations
    a = run_loop(cfg, prefill + probe)
    b = run_loop(cfg, prefill + 4 * probe)
    return max((b["loop_s"] - a["loop_s"]) / (3 * probe), 1e-7)


def failed(e: Exception, **key) -> dict:
    msg = f"{type(e).__name__}: {e}"
    print(f"FAILED {key}: {msg.splitlines()[0][:300]}", flush=True)
    return {**key, "error": msg[:4000]}


def loop_cell(args, device: str, n: int, b: int, modes: list[str]) -> list[dict]:
    eager = cell_config(args, device, "none", n, b)
    prefill = math.ceil(b / n)  # vector steps before the first update (learning_starts = b)
    per_vec = calibrate(eager, prefill, args.probe_steps)
    v = max(args.min_vector_steps, round(args.seconds / per_vec))
    short_len, long_len = prefill + max(1, v // 4), prefill + max(1, v // 4) + v
    rows = []
    for mode in modes:
        cfg = cell_config(args, device, mode, n, b)
        try:
            pairs = [(run_loop(cfg, short_len), run_loop(cfg, long_len)) for _ in range(args.repeats)]
        except Exception as e:  # noqa: BLE001 - a failing mode (e.g. a compile error) is a result, not a crash
            rows.append(failed(e, device=device, compile=mode, num_envs=n, batch_size=b))
            continue
        steady_env, steady_upd, fixed = [], [], []
        for s, lg in pairs:
            dt = max(lg["loop_s"] - s["loop_s"], 1e-9)
            steady_env.append((lg["env_steps"] - s["env_steps"]) / dt)
            steady_upd.append((lg["updates"] - s["updates"]) / dt)
            fixed.append(s["loop_s"] - s["env_steps"] / steady_env[-1])
        row = {
            "device": device, "compile": mode, "num_envs": n, "batch_size": b,
            "steady_env_steps_per_s": median(steady_env), "steady_updates_per_s": median(steady_upd),
            "loop_env_steps_per_s": median([lg["env_steps_per_s"] for _, lg in pairs]),
            "loop_updates_per_s": median([lg["updates_per_s"] for _, lg in pairs]),
            "fixed_overhead_s": median(fixed),
            "vector_steps_short": short_len, "vector_steps_long": long_len, "prefill_vector_steps": prefill,
            "calibrated_s_per_vector_step_eager": per_vec,
            "steady_env_steps_per_s_repeats": steady_env, "steady_updates_per_s_repeats": steady_upd,
            "runs": [{"short": s, "long": lg} for s, lg in pairs],
        }
        rows.append(row)
        print(f"loop {device:4s} {mode:8s} N={n:>6d} batch={b:>5d}: steady {row['steady_env_steps_per_s']:>12,.0f} env "
              f"steps/s {row['steady_updates_per_s']:>8,.0f} updates/s | summary {row['loop_env_steps_per_s']:>12,.0f} "
              f"env steps/s {row['loop_updates_per_s']:>8,.0f} updates/s | fixed {row['fixed_overhead_s']:.2f} s",
              flush=True)
    return rows


def update_cell(args, device: str, mode: str, b: int) -> dict:
    """``Learner.update`` for one agent (K=1) on one fixed batch: first call timed alone, then median of 5
    blocks. A compile mode compiles ``learner.update`` itself (``torch.compile(learner.update, mode=mode)``)."""
    cfg = cell_config(args, device, mode, 1, b)
    dev = torch.device(device)
    set_threads(cfg, 1, dev)  # as train() does for a single agent
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    reset_compiler(mode)
    torch.manual_seed(0)
    size = 4 * b
    buf = ReplayBuffer(size, 4, agents=1, device=dev)
    buf.add(torch.randn(1, size, 4, device=dev), torch.randint(0, 2, (1, size), device=dev),
            torch.ones(1, size, device=dev), torch.randn(1, size, 4, device=dev), torch.rand(1, size, device=dev) < 0.05,
            torch.zeros(1, size, dtype=torch.bool, device=dev))
    batch = buf.sample(torch.randint(0, 2**32, (1, b), dtype=torch.int64).to(dev))
    net = MLP(4, 2, cfg.hidden)
    params = net.init(torch.Generator().manual_seed(cfg.seed))[None].to(dev)
    learner = Learner(net, params, lr=cfg.lr, gamma=cfg.gamma, loss=cfg.loss, double_dqn=cfg.double_dqn,
                      target_period=cfg.target_period, tau=cfg.tau, grad_clip=cfg.grad_clip)
    update = learner.update if mode == "none" else torch.compile(learner.update, mode=mode)
    sync()
    t = time.perf_counter()
    update(batch)
    sync()
    first = time.perf_counter() - t
    per_call, calls = time_repeats(lambda: update(batch), repeats=args.update_repeats,
                                   min_time=args.update_min_time, sync=sync)
    ups = [1.0 / x for x in per_call]
    row = {"device": device, "compile": mode, "batch_size": b, "updates_per_s": median(ups),
           "us_per_update": 1e6 * median(per_call), "first_call_s": first,
           "compile_s": first - median(per_call) if mode != "none" else 0.0,
           "updates_per_s_repeats": ups, "calls_per_repeat": calls}
    print(f"update {device:4s} {mode:8s} batch={b:>5d}: {row['updates_per_s']:>10,.0f} updates/s "
          f"({row['us_per_update']:.1f} us), first call {first:.3f} s", flush=True)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-envs", type=int, nargs="+", default=NUM_ENVS)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=BATCH_SIZES)
    p.add_argument("--compile", action="store_true", help="also measure torch.compile'd updates (default: eager only)")
    p.add_argument("--compile-mode", default="default", choices=["default", "reduce-overhead", "max-autotune"])
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    p.add_argument("--preset", default="fast", help="base config (network, loss, lr, ...); default: fast")
    p.add_argument("--seconds", type=float, default=2.0, help="target steady-state seconds per (long - short) difference")
    p.add_argument("--repeats", type=int, default=3, help="(short, long) run pairs per cell")
    p.add_argument("--probe-steps", type=int, default=50, help="vector steps of the calibration runs")
    p.add_argument("--min-vector-steps", type=int, default=100)
    p.add_argument("--update-repeats", type=int, default=5)
    p.add_argument("--update-min-time", type=float, default=0.25, help="seconds per timed block of updates")
    p.add_argument("--skip-loop", action="store_true", help="only the update microbenchmark")
    p.add_argument("--skip-update", action="store_true", help="only the training loop")
    p.add_argument("--quick", action="store_true", help="tiny smoke run: N 1 64, batch 64, short runs, *_quick output")
    p.add_argument("--out", default=None, help="output name stem (default: train_throughput[_quick])")
    args = p.parse_args(argv)
    if args.quick:
        args.num_envs, args.batch_sizes = [1, 64], [64]
        args.seconds, args.repeats, args.probe_steps, args.min_vector_steps = 0.2, 1, 20, 20
        args.update_repeats, args.update_min_time = 2, 0.05
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    modes = ["none", args.compile_mode] if args.compile else ["none"]
    stem = args.out or ("train_throughput_quick" if args.quick else "train_throughput")

    loop_rows, update_rows = [], []
    t0 = time.perf_counter()
    for device in devices:
        if not args.skip_update:
            for mode in modes:
                for b in args.batch_sizes:
                    try:
                        update_rows.append(update_cell(args, device, mode, b))
                    except Exception as e:  # noqa: BLE001
                        update_rows.append(failed(e, device=device, compile=mode, batch_size=b))
        if not args.skip_loop:
            for n in args.num_envs:
                for b in args.batch_sizes:
                    loop_rows.extend(loop_cell(args, device, n, b, modes))
    base = preset(args.preset)
    payload = {
        "benchmark": "train_throughput", "machine": machine_info(), "quick": args.quick, "preset": args.preset,
        "config": {"hidden": list(base.hidden), "loss": base.loss, "double_dqn": base.double_dqn,
                   "target_period": base.target_period, "train_frequency": base.train_frequency,
                   "gradient_steps": base.gradient_steps, "env_backend": base.env_backend,
                   "torch_threads": base.torch_threads, "log_every": base.log_every},
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "devices": devices, "modes": modes, "bench_wall_s": time.perf_counter() - t0,
        "notes": ["steady_* = (long - short) env steps or updates / (long - short) loop seconds: fixed costs cancel",
                  "loop_* = the long run's summary rates: the loop alone, prefill and the first update (compile) included",
                  "env steps count every env of the batch; updates are gradient steps of batch_size transitions"],
        "loop": loop_rows, "update": update_rows,
    }
    path = write_json(f"{stem}.json", payload)
    plot(loop_rows, update_rows, RESULTS / f"{stem}.png", payload["machine"])
    print("wrote", path)


def plot(loop_rows, update_rows, path, machine):
    loop_rows = [r for r in loop_rows if "error" not in r]
    update_rows = [r for r in update_rows if "error" not in r]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    batches = sorted({r["batch_size"] for r in loop_rows + update_rows})
    colors = {b: plt.cm.viridis(i / max(1, len(batches) - 1) * 0.85) for i, b in enumerate(batches)}
    styles = {"none": "-"}
    markers = {"cpu": "o", "cuda": "s"}
    for ax, key, label in [(axes[0], "steady_env_steps_per_s", "env steps / s"),
                           (axes[1], "steady_updates_per_s", "updates / s")]:
        for (dev, mode, b) in dict.fromkeys((r["device"], r["compile"], r["batch_size"]) for r in loop_rows):
            pts = sorted((r["num_envs"], r[key]) for r in loop_rows
                         if (r["device"], r["compile"], r["batch_size"]) == (dev, mode, b))
            xs, ys = zip(*pts)
            ax.plot(xs, ys, ls=styles.get(mode, "--"), marker=markers.get(dev, "^"), color=colors[b],
                    label=f"{dev} {'eager' if mode == 'none' else 'compiled ' + mode} batch {b}")
        loglog(ax, "num_envs", f"{label} (steady state, median)", legend_size=7)
    axes[0].set_title("training loop: env steps / s")
    axes[1].set_title("training loop: updates / s")
    ax = axes[2]
    for (dev, mode) in dict.fromkeys((r["device"], r["compile"]) for r in update_rows):
        pts = sorted((r["batch_size"], r["updates_per_s"]) for r in update_rows if (r["device"], r["compile"]) == (dev, mode))
        xs, ys = zip(*pts)
        ax.plot(xs, ys, ls=styles.get(mode, "--"), marker=markers.get(dev, "^"),
                label=f"{dev} {'eager' if mode == 'none' else 'compiled ' + mode}")
    loglog(ax, "batch size", "updates / s (median)", xbase=2)
    ax.set_title("Learner.update alone, fixed batch")
    fig.suptitle(f"{machine['cpu']} ({machine['cpu_count']} cores), torch {machine['torch']}"
                 + (f", {machine['cuda']}" if machine.get("cuda") else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
