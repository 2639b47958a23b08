"""Random-action env steps per second against batch size N (each env of a batch counts).

    python bench/env_throughput.py [--sizes 1 16 256 4096 65536 1048576] [--repeats 5] [--no-compile]

Methods: fastdqn numba (1 thread and all threads), fastdqn torch CPU (eager and torch.compile),
fastdqn torch CUDA (when a GPU is present), Gymnasium's CartPoleVectorEnv, Gymnasium's single
CartPoleEnv (one env, so only N=1), EnvPool (when installed). Each point is the median of
``--repeats`` timed blocks after a warm-up. Actions come from a pool of 8 pre-drawn random batches
cycled through, so drawing actions is not timed. Writes bench/results/env_throughput.json and
env_throughput.png (log-log).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, loglog, machine_info, median, time_repeats, write_json  # noqa: E402

import fastdqn  # noqa: E402

SIZES = [1, 16, 256, 4096, 65536, 1048576]


def action_pool(n: int, device="cpu"):
    g = torch.Generator().manual_seed(0)
    return itertools.cycle([torch.randint(0, 2, (n,), generator=g).to(device) for _ in range(8)])


def fastdqn_stepper(n, backend, device="cpu", compile=False):
    env = fastdqn.CartPole(n, backend=backend, device=device, seed=0, compile=compile)
    pool = action_pool(n, device)
    return lambda: env.step(next(pool))


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


def methods(args):
    import numba

    all_threads = numba.config.NUMBA_NUM_THREADS

    def numba_threads(k):
        def make(n):
            numba.set_num_threads(k)
            return fastdqn_stepper(n, "numba")

        return make

    out = {
        "fastdqn-numba-1thread": numba_threads(1),
        f"fastdqn-numba-{all_threads}threads": numba_threads(all_threads),
        "fastdqn-torch-cpu": lambda n: fastdqn_stepper(n, "torch"),
    }
    if not args.no_compile:
        out["fastdqn-torch-cpu-compiled"] = lambda n: fastdqn_stepper(n, "torch", compile=True)
    if torch.cuda.is_available():
        out["fastdqn-torch-cuda"] = lambda n: fastdqn_stepper(n, "torch", "cuda")
        out["fastdqn-torch-cuda-compiled"] = lambda n: fastdqn_stepper(n, "torch", "cuda", compile=True)
    out["gymnasium-CartPoleVectorEnv"] = gym_vector_stepper
    out["gymnasium-CartPoleEnv-single"] = gym_single_stepper
    try:
        import envpool  # noqa: F401

        out["envpool"] = envpool_stepper
    except ImportError:
        print("envpool not installed: skipped")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.25, help="seconds per timed block")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile'd torch backend")
    p.add_argument("--out", default="env_throughput")
    args = p.parse_args(argv)

    rows = []
    for name, make in methods(args).items():
        for n in args.sizes:
            if name == "gymnasium-CartPoleEnv-single" and n != 1:
                continue
            cuda = "cuda" in name
            sync = torch.cuda.synchronize if cuda else (lambda: None)
            t0 = time.perf_counter()
            fn = make(n)
            fn()
            sync()
            setup_s = time.perf_counter() - t0
            per_call, calls = time_repeats(fn, repeats=args.repeats, min_time=args.min_time, sync=sync)
            sps = [n / t for t in per_call]
            row = {
                "method": name,
                "num_envs": n,
                "steps_per_s_median": median(sps),
                "steps_per_s_repeats": sps,
                "calls_per_repeat": calls,
                "setup_and_first_step_s": setup_s,
            }
            rows.append(row)
            print(f"{name:32s} N={n:>8d}  {median(sps) / 1e6:10.2f} M steps/s  (setup {setup_s:.2f}s)", flush=True)

    summary = {}
    by = {(r["method"], r["num_envs"]): r["steps_per_s_median"] for r in rows}
    gym_key = "gymnasium-CartPoleVectorEnv"
    for (m, n), v in by.items():
        if m.startswith("fastdqn") and (gym_key, n) in by:
            summary[f"{m} / gymnasium at N={n}"] = v / by[(gym_key, n)]
    payload = {"benchmark": "env_throughput", "machine": machine_info(), "results": rows, "speedup_vs_gymnasium": summary}
    path = write_json(f"{args.out}.json", payload)
    plot(rows, RESULTS / f"{args.out}.png", payload["machine"])
    print("wrote", path)


def plot(rows, path, machine):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for name in dict.fromkeys(r["method"] for r in rows):
        pts = [(r["num_envs"], r["steps_per_s_median"]) for r in rows if r["method"] == name]
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="o" if len(xs) > 1 else "*", markersize=6 if len(xs) > 1 else 12, label=name)
    loglog(ax, "number of envs N", "env steps / s (median)")
    ax.set_title(f"CartPole random-action throughput\n{machine['cpu']} ({machine['cpu_count']} cores), torch {machine['torch']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
