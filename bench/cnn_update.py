"""One DQN update of MinAtar's CNN for K agents, three ways, side by side in one process.

    python bench/cnn_update.py [--agents 1 16] [--batch 64] [--threads 1] [--device cpu]

* ``im2col``: :class:`fastdqn.learner.ConvNet`, the convolution as a batched matrix product on
  gathered patches and a hand-written backward (what ``--network cnn`` trains);
* ``vmap``: :class:`fastdqn.learner.AutogradQNet` over ``nn.Sequential(Conv2d(C, 16, 3), ReLU,
  Flatten, Linear(1024, 128), ReLU, Linear(128, A))``: ``torch.func.vmap`` over K parameter rows
  and autograd;
* ``grouped``: the same network for K agents as one module, the K convolutions as one grouped
  ``conv2d`` (``groups=K``) and the dense layers as ``bmm``, differentiated by autograd.

Each is one full ``Learner.gradient_step`` + target update (double DQN, Huber, Adam) on a
fixed batch of bool frames ``[K, B, 4, 10, 10]``; the median of 5 timed blocks of >= 0.3 s.
Writes ``bench/results/cnn_update.json`` (CPU model named).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, median, time_repeats, write_json  # noqa: E402

from fastdqn.learner import AutogradQNet, ConvNet, Learner, linear_init  # noqa: E402
from fastdqn.replay import Batch  # noqa: E402

C, A, F, H = 4, 3, 16, 128


class Grouped:
    """MinAtar's network for K agents with a grouped conv2d and bmm, gradients by autograd."""

    def __init__(self, k: int):
        self.k = k
        self.shapes = [(F, C, 3, 3), (F,), (F * 64, H), (H,), (H, A), (A,)]
        self.num_params = sum(math.prod(s) for s in self.shapes)

    def init(self, g):
        fans = [C * 9, C * 9, F * 64, F * 64, H, H]
        return torch.cat([linear_init(f, s, g).flatten() for f, s in zip(fans, self.shapes)])

    def views(self, params):
        return params

    def _q(self, p, obs):
        k, b = obs.shape[:2]
        parts, off = [], 0
        for s in self.shapes:
            n = math.prod(s)
            parts.append(p[:, off:off + n].reshape(k, *s))
            off += n
        wc, bc, w1, b1, w2, b2 = parts
        x = obs.to(p.dtype).transpose(0, 1).reshape(b, k * C, 10, 10)
        h = torch.relu(torch.nn.functional.conv2d(x, wc.reshape(k * F, C, 3, 3), bc.reshape(-1), groups=k))
        h = h.reshape(b, k, F * 64).transpose(0, 1)
        h = torch.relu(torch.baddbmm(b1[:, None], h, w1))
        return torch.baddbmm(b2[:, None], h, w2)

    def forward(self, params, obs, need_grad=False):
        if not need_grad:
            return self._q(params, obs), None
        leaf = params.detach().requires_grad_(True)
        with torch.enable_grad():
            q = self._q(leaf, obs)
        return q.detach(), (leaf, q)

    def backward(self, params, cache, g):
        leaf, q = cache
        pad = q.shape[1] - g.shape[1]
        if pad:
            g = torch.cat([g, g.new_zeros(g.shape[0], pad, g.shape[2])], dim=1)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(q, leaf, grad_outputs=g)
        return grad


def nets(k: int):
    seq = nn.Sequential(nn.Conv2d(C, F, 3), nn.ReLU(), nn.Flatten(), nn.Linear(F * 64, H), nn.ReLU(), nn.Linear(H, A))
    return {"im2col": ConvNet((C, 10, 10), A, F, (H,)), "vmap": AutogradQNet(seq, C * 100, A), "grouped": Grouped(k)}


def update_us(net, k: int, b: int, device) -> float:
    params = torch.stack([net.init(torch.Generator().manual_seed(s)) for s in range(k)]).to(device)
    learner = Learner(net, params, lr=1e-4, gamma=0.99)
    g = torch.Generator().manual_seed(1)
    obs = (torch.rand(k, b, C, 10, 10, generator=g) < 0.1).to(device)
    nxt = (torch.rand(k, b, C, 10, 10, generator=g) < 0.1).to(device)
    batch = Batch(obs, torch.randint(0, A, (k, b), generator=g).to(device), torch.rand(k, b, generator=g).to(device),
                  nxt, torch.zeros(k, b, dtype=torch.bool, device=device), torch.zeros(k, b, dtype=torch.bool,
                                                                                      device=device))
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def one():
        learner.update(batch)
        sync()

    per_call, _ = time_repeats(one, repeats=5, min_time=0.3)
    return median(per_call) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--agents", type=int, nargs="+", default=[1, 16])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="cnn_update")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = {"machine": machine_info(), "batch": args.batch, "threads": args.threads, "device": args.device,
               "update_us": {}}
    for k in args.agents:
        row = {name: update_us(net, k, args.batch, args.device) for name, net in nets(k).items()}
        results["update_us"][f"K{k}"] = row
        print(f"K={k:3d} B={args.batch}: " + ", ".join(f"{n} {v:8.0f} us" for n, v in row.items()), flush=True)
        write_json(f"{args.out}.json", results)


if __name__ == "__main__":
    main()
