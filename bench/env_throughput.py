"""Random-action env steps per second against batch size N (each env of a batch counts).

    python bench/env_throughput.py [--env CartPole-v1] [--sizes 1 16 256 4096 65536 1048576] [--repeats 5]
                                   [--no-compile] [--rollout-steps 100]

Two kinds of method, labelled apart:

* one step per call, from Python (``...step...``): fastdqn numba (1 thread and all threads, fresh
  outputs and ``out=``), fastdqn torch CPU (eager and torch.compile), fastdqn torch CUDA (when a GPU
  is present), Gymnasium's CartPoleVectorEnv, Gymnasium's single CartPoleEnv (only N=1), gymnax's
  jitted vmap(step) on JAX's CPU backend (when installed), EnvPool (when installed). Actions come
  from a pool of 8 pre-drawn random batches cycled through, so drawing them is not timed.
* T steps per call with the actions drawn inside (``...rollout...``/``...scan...``):
  ``CartPole.rollout(T)`` (numba; torch on CUDA) against gymnax's jitted ``lax.scan`` of T
  vmapped steps (bench/gymnax_ref.py), the like-for-like pair.

``--env`` another native id (``Acrobot-v1``, ``MountainCar-v0``, ``CartPole-v0``): the same
fastdqn methods through ``fastdqn.envs.make(env_id, N, backend=..., seed=0)`` against Gymnasium's
own vector env for that id, ``gym.make_vec(env_id, num_envs=N, vectorization_mode="sync")`` (one
Python env per copy: Acrobot and MountainCar have no vectorised Gymnasium implementation), at
N in 256 .. 65536 by default; Gymnasium runs fewer timed blocks from N = 16384 on (one call takes
seconds there). Writes bench/results/env_throughput_<env>.json and .png. The numba "all threads"
rows run the threaded kernels only from the machine's measured switch on (recorded in the JSON
as ``numba_parallel_min_envs``; ``FASTDQN_PARALLEL_MIN_ENVS=4096`` pins it).

Each point is the median of ``--repeats`` timed blocks after a warm-up. The JSON records the
CPU model, its SIMD flags and numba's threading layer. Writes bench/results/env_throughput.json
and env_throughput.png (log-log).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gymnax_ref  # noqa: E402
from common import RESULTS, loglog, machine_info, median, time_repeats, write_json  # noqa: E402

import fastdqn  # noqa: E402

SIZES = [1, 16, 256, 4096, 65536, 1048576]
ENV_SIZES = [256, 1024, 4096, 65536]  # --env other than CartPole-v1 (Gymnasium's sync vector env is slow)
SLOW_FROM = 16384  # Gymnasium's sync vector env: from this N on, at most SLOW_REPEATS timed blocks of one call
SLOW_REPEATS = 3


def action_pool(n: int, device="cpu", n_actions: int = 2):
    g = torch.Generator().manual_seed(0)
    return itertools.cycle([torch.randint(0, n_actions, (n,), generator=g).to(device) for _ in range(8)])


def fastdqn_stepper(n, backend, device="cpu", compile=False, out=False):
    env = fastdqn.CartPole(n, backend=backend, device=device, seed=0, compile=compile)
    pool = action_pool(n, device)
    if out:
        outputs = env.new_outputs()
        return lambda: env.step(next(pool), out=outputs)
    return lambda: env.step(next(pool))


def fastdqn_roller(n, steps, backend="numba", device="cpu", compile=False):
    env = fastdqn.CartPole(n, backend=backend, device=device, seed=0, compile=compile)
    seeds = itertools.count()
    return lambda: env.rollout(steps, seed=next(seeds)), steps


def gym_vector_stepper(n):
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

    env = CartPoleVectorEnv(num_envs=n)
    env.reset(seed=0)
    pool = itertools.cycle([a.numpy() for a in itertools.islice(action_pool(n), 8)])
    return lambda: env.step(next(pool))


def gym_single_stepper(n):
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = itertools.cycle(rng.integers(0, 2, 4096).tolist())

    def step():
        _, _, terminated, truncated, _ = env.step(next(actions))
        if terminated or truncated:
            env.reset()

    return step


def envpool_stepper(n):
    import envpool

    env = envpool.make_gymnasium("CartPole-v1", num_envs=n, batch_size=n, num_threads=0)
    env.reset()
    pool = itertools.cycle([a.numpy() for a in itertools.islice(action_pool(n), 8)])
    return lambda: env.step(next(pool))


# --- any native env id (--env): fastdqn.envs.make against Gymnasium's sync vector env ------------
def env_stepper(env_id, n, backend, device="cpu", compile=False, out=False):
    from fastdqn import envs

    env = envs.make(env_id, n, backend=backend, device=device, seed=0, compile=compile)
    pool = action_pool(n, device, env.spec.n_actions)
    if out:
        outputs = env.new_outputs()
        return lambda: env.step(next(pool), out=outputs)
    return lambda: env.step(next(pool))


def env_roller(env_id, n, steps, backend="numba", device="cpu", compile=False):
    from fastdqn import envs

    env = envs.make(env_id, n, backend=backend, device=device, seed=0, compile=compile)
    seeds = itertools.count()
    return lambda: env.rollout(steps, seed=next(seeds)), steps


def gym_make_vec_stepper(env_id, n):
    import gymnasium as gym

    from fastdqn import envs

    env = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync")
    env.reset(seed=0)
    pool = itertools.cycle([a.numpy() for a in itertools.islice(action_pool(n, n_actions=envs.spec(env_id).n_actions), 8)])
    return lambda: env.step(next(pool))


def gym_vector_name(env_id: str) -> str:
    return f"gymnasium-{env_id}-make_vec-sync"


def env_methods(args):
    """:func:`methods` for ``--env`` other than CartPole-v1 (no gymnax, EnvPool or single-env rows)."""
    import numba

    all_threads = numba.config.NUMBA_NUM_THREADS
    T, e = args.rollout_steps, args.env

    def numba_threads(k, make):
        def made(n):
            numba.set_num_threads(k)
            return make(n)

        return made

    out = {
        "fastdqn-numba-step-1thread": numba_threads(1, lambda n: env_stepper(e, n, "numba")),
        f"fastdqn-numba-step-{all_threads}threads": numba_threads(all_threads, lambda n: env_stepper(e, n, "numba")),
        f"fastdqn-numba-step-out-{all_threads}threads": numba_threads(
            all_threads, lambda n: env_stepper(e, n, "numba", out=True)),
        "fastdqn-torch-cpu-step": lambda n: env_stepper(e, n, "torch"),
    }
    if not args.no_compile:
        out["fastdqn-torch-cpu-step-compiled"] = lambda n: env_stepper(e, n, "torch", compile=True)
    if torch.cuda.is_available():
        out["fastdqn-torch-cuda-step"] = lambda n: env_stepper(e, n, "torch", "cuda")
        out["fastdqn-torch-cuda-step-compiled"] = lambda n: env_stepper(e, n, "torch", "cuda", compile=True)
    out[gym_vector_name(e)] = lambda n: gym_make_vec_stepper(e, n)
    out[f"fastdqn-numba-rollout-T{T}-1thread"] = numba_threads(1, lambda n: env_roller(e, n, T))
    out[f"fastdqn-numba-rollout-T{T}-{all_threads}threads"] = numba_threads(all_threads, lambda n: env_roller(e, n, T))
    if torch.cuda.is_available():
        out[f"fastdqn-torch-cuda-rollout-T{T}"] = lambda n: env_roller(e, n, T, "torch", "cuda")
        out[f"fastdqn-torch-cuda-rollout-T{T}-compiled"] = lambda n: env_roller(e, n, T, "torch", "cuda", True)
    return out


def methods(args):
    """name -> make(n), which returns a zero-argument callable, or (callable, env steps per env per call)."""
    import numba

    all_threads = numba.config.NUMBA_NUM_THREADS
    T = args.rollout_steps

    def numba_threads(k, make):
        def made(n):
            numba.set_num_threads(k)
            return make(n)

        return made

    out = {
        "fastdqn-numba-step-1thread": numba_threads(1, lambda n: fastdqn_stepper(n, "numba")),
        f"fastdqn-numba-step-{all_threads}threads": numba_threads(all_threads, lambda n: fastdqn_stepper(n, "numba")),
        f"fastdqn-numba-step-out-{all_threads}threads": numba_threads(
            all_threads, lambda n: fastdqn_stepper(n, "numba", out=True)),
        "fastdqn-torch-cpu-step": lambda n: fastdqn_stepper(n, "torch"),
    }
    if not args.no_compile:
        out["fastdqn-torch-cpu-step-compiled"] = lambda n: fastdqn_stepper(n, "torch", compile=True)
    if torch.cuda.is_available():
        out["fastdqn-torch-cuda-step"] = lambda n: fastdqn_stepper(n, "torch", "cuda")
        if not args.no_compile:
            out["fastdqn-torch-cuda-step-compiled"] = lambda n: fastdqn_stepper(n, "torch", "cuda", compile=True)
    out["gymnasium-CartPoleVectorEnv"] = gym_vector_stepper
    out["gymnasium-CartPoleEnv-single"] = gym_single_stepper
    try:
        import envpool  # noqa: F401

        out["envpool"] = envpool_stepper
    except ImportError:
        print("envpool not installed: skipped")
    out[f"fastdqn-numba-rollout-T{T}-1thread"] = numba_threads(1, lambda n: fastdqn_roller(n, T))
    out[f"fastdqn-numba-rollout-T{T}-{all_threads}threads"] = numba_threads(all_threads, lambda n: fastdqn_roller(n, T))
    if torch.cuda.is_available():
        out[f"fastdqn-torch-cuda-rollout-T{T}"] = lambda n: fastdqn_roller(n, T, "torch", "cuda")
        if not args.no_compile:
            out[f"fastdqn-torch-cuda-rollout-T{T}-compiled"] = lambda n: fastdqn_roller(n, T, "torch", "cuda", True)
    gymnax_ref.PLATFORM = args.gymnax_platform
    if gymnax_ref.available():
        where = "cpu" if args.gymnax_platform == "cpu" else "gpu"
        out[f"gymnax-{where}-jit-step"] = gymnax_ref.make_step
        out[f"gymnax-{where}-jit-scan-T{T}"] = lambda n: (gymnax_ref.make_rollout(n, T), T)
    else:
        print("gymnax not installed (pip install -e '.[gymnax]'): skipped")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="CartPole-v1",
                   help="native env id (default CartPole-v1; Acrobot-v1, MountainCar-v0: against gym.make_vec)")
    p.add_argument("--sizes", type=int, nargs="+", help=f"batch sizes (default {SIZES}; other --env: {ENV_SIZES})")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.25, help="seconds per timed block")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile'd torch backend (CPU and CUDA rows)")
    p.add_argument("--rollout-steps", type=int, default=100, help="T of the rollout/scan methods (default: 100)")
    p.add_argument("--only", nargs="+", metavar="PREFIX", help="run only the methods whose names start so, in this order")
    p.add_argument("--gymnax-platform", choices=["cpu", "cuda"], default="cpu", help="JAX backend of the gymnax rows")
    p.add_argument("--out", help="result file stem (default env_throughput; other --env: env_throughput_<env>)")
    args = p.parse_args(argv)
    cartpole = args.env == "CartPole-v1"
    if not cartpole:
        from fastdqn import envs

        if args.env not in envs.native_ids():
            p.error(f"--env must be a native id ({', '.join(envs.native_ids())}), got {args.env!r}")
    args.sizes = args.sizes or (SIZES if cartpole else ENV_SIZES)
    args.out = args.out or ("env_throughput" if cartpole else f"env_throughput_{args.env}")

    load_start = os.getloadavg()  # a busy machine (other jobs on its cores) slows the threaded rows most
    chosen = methods(args) if cartpole else env_methods(args)
    if args.only:  # those methods, in the order of the prefixes given
        chosen = {name: chosen[name] for p in args.only for name in chosen if name.startswith(p)}
    rows = []
    for name, make in chosen.items():
        for n in args.sizes:
            if name == "gymnasium-CartPoleEnv-single" and n != 1:
                continue
            cuda = "cuda" in name
            sync = torch.cuda.synchronize if cuda else (lambda: None)
            t0 = time.perf_counter()
            fn = make(n)
            fn, per_env = fn if isinstance(fn, tuple) else (fn, 1)
            fn()
            sync()
            setup_s = time.perf_counter() - t0
            repeats = args.repeats
            if name == gym_vector_name(args.env) and n >= SLOW_FROM:  # seconds per call: fewer blocks
                repeats = min(repeats, SLOW_REPEATS)
            per_call, calls = time_repeats(fn, repeats=repeats, min_time=args.min_time, sync=sync)
            sps = [n * per_env / t for t in per_call]
            row = {
                "method": name,
                "num_envs": n,
                "steps_per_call": n * per_env,
                "steps_per_s_median": median(sps),
                "steps_per_s_repeats": sps,
                "calls_per_repeat": calls,
                "setup_and_first_call_s": setup_s,
            }
            rows.append(row)
            print(f"{name:40s} N={n:>8d}  {median(sps) / 1e6:10.2f} M steps/s  (setup {setup_s:.2f}s)", flush=True)
            write_json(f"{args.out}.json", {"benchmark": "env_throughput", "env": args.env, "partial": True,
                                             "results": rows})

    from fastdqn import calibrate

    # the N from which the numba backend runs its threaded kernels (measured per machine and cached,
    # or FASTDQN_PARALLEL_MIN_ENVS; never below 256): below it the "all threads" rows run the serial kernels too
    payload = {"benchmark": "env_throughput", "env": args.env, "machine": machine_info(),
               "numba_parallel_min_envs": calibrate.parallel_min_envs(),
               "load_average_1_5_15min": {"start": load_start, "end": os.getloadavg()}, "results": rows,
               **ratios(rows, args)}
    for key in ("speedup_vs_gymnasium", "rollout_vs_gymnax_scan", "threads_vs_1thread"):
        for k, v in payload[key].items():
            print(f"{k}: {v:.2f}x")
    path = write_json(f"{args.out}.json", payload)
    plot(rows, RESULTS / f"{args.out}.png", payload["machine"], args.env)
    print("wrote", path)


def ratios(rows, args) -> dict:
    """The benchmark's side-by-side ratios, each at every N both methods ran."""
    import numba

    by = {(r["method"], r["num_envs"]): r["steps_per_s_median"] for r in rows}
    threads, T = numba.config.NUMBA_NUM_THREADS, args.rollout_steps

    def pairs(top, bottom, label):
        return {f"{label} at N={n}": v / by[(bottom, n)] for (m, n), v in by.items() if m == top and (bottom, n) in by}

    baseline = "gymnasium-CartPoleVectorEnv" if args.env == "CartPole-v1" else gym_vector_name(args.env)
    gym = {}
    for m in dict.fromkeys(m for m, _ in by):
        if m.startswith("fastdqn") and "-step" in m:
            gym.update(pairs(m, baseline, f"{m} / gymnasium"))
    return {
        "speedup_vs_gymnasium": gym,
        "rollout_vs_gymnax_scan": {
            **pairs(f"fastdqn-numba-rollout-T{T}-{threads}threads", f"gymnax-cpu-jit-scan-T{T}",
                    f"numba rollout T={T} / gymnax CPU scan T={T}"),
            **pairs(f"fastdqn-torch-cuda-rollout-T{T}-compiled", f"gymnax-gpu-jit-scan-T{T}",
                    f"torch CUDA compiled rollout T={T} / gymnax GPU scan T={T}")},
        "threads_vs_1thread": {**pairs(f"fastdqn-numba-step-{threads}threads", "fastdqn-numba-step-1thread",
                                       f"numba step {threads} threads / 1 thread"),
                               **pairs(f"fastdqn-numba-rollout-T{T}-{threads}threads",
                                       f"fastdqn-numba-rollout-T{T}-1thread",
                                       f"numba rollout {threads} threads / 1 thread")},
    }


def plot(rows, path, machine, env_id="CartPole-v1"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for name in dict.fromkeys(r["method"] for r in rows):
        pts = [(r["num_envs"], r["steps_per_s_median"]) for r in rows if r["method"] == name]
        xs, ys = zip(*pts)
        style = "--" if ("rollout" in name or "scan" in name) else "-"
        ax.plot(xs, ys, style, marker="o" if len(xs) > 1 else "*", markersize=6 if len(xs) > 1 else 12, label=name)
    loglog(ax, "number of envs N", "env steps / s (median)", legend_size=7)
    name = "CartPole" if env_id == "CartPole-v1" else env_id
    ax.set_title(f"{name} random-action throughput (dashed: T steps per call)\n{machine['cpu']} "
                 f"({machine['cpu_count']} cores, {machine.get('cpu_simd', '?')}), torch {machine['torch']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
