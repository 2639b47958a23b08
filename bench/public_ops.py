"""The learner's two private torch ops against their public replacements, side by side.

* Adam: ``torch._fused_adam_`` at unit rate into a scratch tensor, then one ``addcmul`` with
  the per-agent rates ``lr [K, 1]`` (what :class:`fastdqn.learner.Adam` does), against
  ``torch.optim.Adam(fused=True)``: over the whole ``[K, P]`` tensor (one rate for every agent,
  so per-agent learning rates are lost), and with one parameter group per agent (per-agent rates
  kept, K tensors).
* The ReLU backward: ``torch.ops.aten.threshold_backward(g, h, 0)`` against ``torch.where(h > 0,
  g, 0)`` and ``g * (h > 0)``.

Writes ``bench/results/public_ops.json`` (machine, raw repeats, medians in microseconds).
"""

from __future__ import annotations

import time

import torch
from common import machine_info, write_json


def timeit(fn, calls=400, repeats=7) -> list[float]:
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        out.append((time.perf_counter() - t) / calls * 1e6)
    return out


def main() -> None:
    torch.set_num_threads(1)
    results = {}
    for k, p in [(1, 4610), (16, 4610), (64, 4610), (1, 17_795)]:  # 64-64 MLP on CartPole; 128-128 on Acrobot
        params = torch.randn(k, p)
        grads = torch.randn(k, p)
        lr = torch.full((k, 1), 1e-3)
        exp_avg, exp_avg_sq, delta = torch.zeros_like(params), torch.zeros_like(params), torch.zeros_like(params)
        step = torch.zeros(())

        def private(params=params, grads=grads, lr=lr, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq, delta=delta, step=step):
            step.add_(1.0)
            delta.zero_()
            torch._fused_adam_([delta], [grads], [exp_avg], [exp_avg_sq], [], [step], lr=1.0, beta1=0.9,
                               beta2=0.999, weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)
            params.addcmul_(delta, lr)

        whole = torch.nn.Parameter(params.clone())
        whole.grad = grads.clone()
        opt_whole = torch.optim.Adam([whole], lr=1e-3, fused=True)
        rows = [torch.nn.Parameter(params[i].clone()) for i in range(k)]
        for i, r in enumerate(rows):
            r.grad = grads[i].clone()
        opt_groups = torch.optim.Adam([{"params": [r], "lr": 1e-3} for r in rows], fused=True)
        results[f"adam K={k} P={p}"] = {
            "private _fused_adam_ + addcmul (per-agent lr)": timeit(private),
            "torch.optim.Adam(fused=True), one tensor (one lr)": timeit(opt_whole.step),
            "torch.optim.Adam(fused=True), a group per agent (per-agent lr)": timeit(opt_groups.step),
        }
    for k, b, h in [(1, 256, 64), (16, 256, 64), (1, 256, 128)]:
        g, x = torch.randn(k, b, h), torch.randn(k, b, h).relu()
        results[f"relu backward K={k} B={b} H={h}"] = {
            "private aten.threshold_backward": timeit(lambda g=g, x=x: torch.ops.aten.threshold_backward(g, x, 0.0)),
            "torch.where(h > 0, g, 0)": timeit(lambda g=g, x=x: torch.where(x > 0, g, 0.0)),
            "g * (h > 0)": timeit(lambda g=g, x=x: g * (x > 0)),
        }
    medians = {case: {m: sorted(v)[len(v) // 2] for m, v in d.items()} for case, d in results.items()}
    for case, d in medians.items():
        print(case)
        for m, us in d.items():
            print(f"  {us:8.2f} us  {m}")
    write_json("public_ops.json", {"benchmark": "public_ops", "machine": machine_info(), "torch_threads": 1,
                                   "median_us": medians, "raw_us": results})


if __name__ == "__main__":
    main()
