"""The replay's two layouts side by side: one packed float row per transition (vector float32
observations) against a field per tensor in the observation's own dtype (any other observation),
for the same data: ``add`` of N transitions per agent and ``gather`` of a batch, per call.

The fields layout is forced by giving the same observations a leading dimension of 1.
Writes ``bench/results/replay_layout.json``.
"""

from __future__ import annotations

import time

import torch
from common import machine_info, write_json

from fastdqn.replay import ReplayBuffer


def per_call_us(fn, calls=2000, repeats=5) -> float:
    fn()
    best = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        best.append((time.perf_counter() - t) / calls * 1e6)
    return sorted(best)[len(best) // 2]


def time_add_and_gather(buf, transition, idx) -> tuple[float, float]:
    return per_call_us(lambda: buf.add(*transition)), per_call_us(lambda: buf.gather(idx))


def main() -> None:
    torch.set_num_threads(1)
    rows = []
    for k, n, b, d in [(1, 8, 128, 4), (1, 8, 128, 6), (16, 8, 128, 6), (1, 64, 256, 8)]:
        for layout, shape in (("packed", (d,)), ("fields", (1, d))):
            buf = ReplayBuffer(50_000, shape, agents=k)
            assert buf.packed == (layout == "packed")
            obs, nxt = torch.randn(k, n, *shape), torch.randn(k, n, *shape)
            act, rew = torch.randint(0, 3, (k, n)), torch.randn(k, n)
            term, trunc = torch.rand(k, n) < 0.1, torch.rand(k, n) < 0.01
            for _ in range(50_000 // n):
                buf.add(obs, act, rew, nxt, term, trunc)
            idx = torch.randint(0, 50_000, (k, b))
            add_us, gather_us = time_add_and_gather(buf, (obs, act, rew, nxt, term, trunc), idx)
            rows.append({"agents": k, "num_envs": n, "batch": b, "obs_dim": d, "layout": layout, "add_us": add_us,
                         "gather_us": gather_us})
            r = rows[-1]
            print(f"K={k:3d} N={n:3d} B={b:4d} obs {d}: {layout:7s} add {r['add_us']:7.1f} us  gather {r['gather_us']:7.1f} us")
    write_json("replay_layout.json", {"benchmark": "replay_layout", "machine": machine_info(), "torch_threads": 1,
                                       "rows": rows})


if __name__ == "__main__":
    main()
