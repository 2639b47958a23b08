"""MinAtar env steps/s: the reference package (one env, Python), fastdqn's batched torch games
(eager and compiled, ``step`` and ``rollout``) and gymnax (JAX jit), side by side in one run.

    python bench/minatar_throughput.py [--games Breakout SpaceInvaders Freeway Asterix Seaquest] [--n 4096]
                                       [--threads 2] [--no-gymnax] [--no-compile] [--out NAME]

Per game, random actions from the minimal action set (``-v1``), sticky actions 0.1 and ramping on:

* ``reference``: ``minatar.Environment(game)`` stepped one ``act`` at a time, reset on terminal
  (the package's own loop; actions pre-drawn), ~2 s;
* ``fastdqn step``: ``env.step(actions)`` of N envs (same-step autoreset; actions from a pool of 8
  pre-drawn batches; eager and ``compile=True``);
* ``fastdqn rollout``: ``env.rollout(T)`` (T=100 steps, actions drawn inside; eager and compiled);
* ``numba step`` / ``numba rollout``: the same two calls on ``backend="numba"`` (the CPU kernels of
  ``kernels/minatar_numba.py``; threaded or serial as the env picks for N, numba limited to
  ``--threads`` threads when given);
* ``gymnax step`` / ``gymnax scan``: ``jit(vmap(step))`` per call, and a jitted ``lax.scan`` of
  T=100 vmapped steps (``bench/gymnax_ref.py``), N envs; gymnax has no Seaquest.

Medians of 5 timed blocks of >= 0.25 s after a warm-up (compile times reported separately).
Writes ``bench/results/minatar_throughput.json`` with the machine (CPU model named).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, median, time_repeats, write_json  # noqa: E402

GAMES = ["Breakout", "SpaceInvaders", "Freeway", "Asterix", "Seaquest"]
MODULE = {"Breakout": "breakout", "SpaceInvaders": "space_invaders", "Freeway": "freeway", "Asterix": "asterix",
          "Seaquest": "seaquest"}
T = 100


def rate(fn, steps_per_call: int) -> dict:
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    per_call, calls = time_repeats(fn, repeats=5, min_time=0.25)
    return {"steps_per_s": steps_per_call / median(per_call), "first_call_s": first, "calls": calls}


def reference_rate(game: str, seconds: float = 2.0) -> dict:
    import numpy as np
    from minatar import Environment

    env = Environment(MODULE[game], sticky_action_prob=0.1)
    env.seed(0)
    env.reset()
    actions = np.random.default_rng(0).choice(env.minimal_action_set(), size=100_000)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for a in actions[:2000]:
            _, done = env.act(int(a))
            if done:
                env.reset()
        steps += 2000
    return {"steps_per_s": steps / (time.perf_counter() - t0)}


def fastdqn_rates(game: str, n: int, compile: bool) -> dict:
    import torch

    import fastdqn

    env_id = f"MinAtar/{game}-v1"
    t = time.perf_counter()
    env = fastdqn.make(env_id, n, backend="torch", seed=0, compile=compile)
    g = torch.Generator().manual_seed(1)
    pool = itertools.cycle([torch.randint(0, env.n_actions, (n,), generator=g) for _ in range(8)])
    out = env.new_outputs()
    step = rate(lambda: env.step(next(pool), check=False, out=out), n)
    step["setup_s"] = time.perf_counter() - t
    roll = rate(lambda: env.rollout(T), n * T)
    return {"step": step, "rollout": roll}


def numba_rates(game: str, n: int) -> dict:
    import torch

    import fastdqn

    env_id = f"MinAtar/{game}-v1"
    t = time.perf_counter()
    env = fastdqn.make(env_id, n, backend="numba", seed=0)
    g = torch.Generator().manual_seed(1)
    pool = itertools.cycle([torch.randint(0, env.n_actions, (n,), generator=g) for _ in range(8)])
    out = env.new_outputs()
    step = rate(lambda: env.step(next(pool), check=False, out=out), n)
    step["setup_s"] = time.perf_counter() - t
    roll = rate(lambda: env.rollout(T), n * T)
    return {"step": step, "rollout": roll, "parallel": env.parallel}


def gymnax_rates(game: str, n: int) -> dict | None:
    import gymnax_ref

    if gymnax_ref.available() is None:
        return None
    env_id = f"{game}-MinAtar"
    import gymnax

    if env_id not in gymnax.registered_envs:
        return None
    s, r = gymnax_ref.make_step(n, env_id=env_id), gymnax_ref.make_rollout(n, T, env_id=env_id)
    return {"step": {**rate(s, n), "compile_s": s.compile_s}, "scan": {**rate(r, n * T), "compile_s": r.compile_s}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--games", nargs="+", default=GAMES, choices=GAMES)
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--no-gymnax", action="store_true")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--out", default="minatar_throughput")
    args = p.parse_args()
    import torch

    if args.threads:
        import numba

        torch.set_num_threads(args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    import gymnax_ref

    results = {"machine": machine_info(), "n": args.n, "T": T, "gymnax": None if args.no_gymnax else gymnax_ref.available(),
               "games": {}}
    print(f"{results['machine']['cpu']}, torch threads {torch.get_num_threads()}, N={args.n}")
    for game in args.games:
        row = {"reference": reference_rate(game), "eager": fastdqn_rates(game, args.n, False)}
        import fastdqn.envs

        if game in fastdqn.envs.MINATAR_NUMBA:
            row["numba"] = numba_rates(game, args.n)
            if args.threads:  # numba's OpenMP threads set the thread count torch shares: set it back
                torch.set_num_threads(args.threads)
        if not args.no_compile:
            row["compiled"] = fastdqn_rates(game, args.n, True)
        if not args.no_gymnax:
            row["gymnax"] = gymnax_rates(game, args.n)
        ref = row["reference"]["steps_per_s"]
        line = [f"{game:14s} reference {ref / 1e3:7.1f}k"]
        for kind in ("numba", "eager", "compiled"):
            if kind in row:
                for how in ("step", "rollout"):
                    v = row[kind][how]["steps_per_s"]
                    line.append(f"{kind} {how} {v / 1e6:6.2f}M ({v / ref:5.0f}x)")
        if row.get("gymnax"):
            for how in ("step", "scan"):
                v = row["gymnax"][how]["steps_per_s"]
                line.append(f"gymnax {how} {v / 1e6:6.2f}M")
        print(" | ".join(line), flush=True)
        results["games"][game] = row
        write_json(f"{args.out}.json", results)


if __name__ == "__main__":
    main()
