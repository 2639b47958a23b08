"""GPU check of the torch backend's rollout (CUDA graph of the T-step loop) against the numba kernel.

    python bench/gpu_env_check.py            # on a machine with a CUDA GPU

For each N and each of eager / ``compile=True``: two rollouts with given actions and two with
drawn actions (the second of each replays the captured graph) on CUDA and on the CPU numba
kernel from the same seed; episodes, rewards and step counters must be equal and states within
float32 rounding (the two compute sin/cos differently). Prints one line per case and exits 1 on
any mismatch. The throughput figures come from ``bench/env_throughput.py``.
"""

from __future__ import annotations

import sys

import torch

import fastdqn


def check(n: int, compile: bool, steps: int = 130) -> str:
    gpu = fastdqn.CartPole(n, backend="torch", device="cuda", seed=3, compile=compile, max_episode_steps=60)
    cpu = fastdqn.CartPole(n, backend="numba", seed=3, max_episode_steps=60)
    worst = 0.0
    for call in range(4):
        if call < 2:
            acts = torch.randint(0, 2, (steps, n), generator=torch.Generator().manual_seed(call))
            got, want = gpu.rollout(steps, actions=acts.cuda()), cpu.rollout(steps, actions=acts)
        else:
            got, want = gpu.rollout(steps, seed=call), cpu.rollout(steps, seed=call)
        ok = (torch.equal(got.episodes.cpu(), want.episodes) and torch.equal(got.reward.cpu(), want.reward)
              and torch.equal(gpu.elapsed_steps.cpu(), cpu.elapsed_steps))
        worst = max(worst, (gpu.state.cpu() - cpu.state).abs().max().item())
        if not ok or worst > 1e-4:
            return f"MISMATCH at call {call} (max state difference {worst:.2e})"
        gpu.state = cpu.state.cuda()  # resync the float32 rounding
    return f"ok (max state difference {worst:.2e}, {int(want.episodes.sum())} episodes in the last call)"


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA GPU")
        return 1
    print(torch.cuda.get_device_name(0), "torch", torch.__version__)
    bad = 0
    for n in (1000, 65536):
        for compile in (False, True):
            line = check(n, compile)
            bad += line.startswith("MISMATCH")
            print(f"N={n:6d} compile={compile!s:5s} {line}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
