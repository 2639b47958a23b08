"""GPU check of the torch backend's rollout (CUDA graph of the T-step loop) against the numba kernel.

    python bench/gpu_env_check.py            # on a machine with a CUDA GPU

For each N, dtype and eager / ``compile=True``: two rollouts with given actions and two with
drawn actions (the second of each replays the captured graph) on CUDA and on the CPU numba
kernel from the same seed. In float64 the episodes, rewards and step counters must be equal and
the states within 1e-9: exit 1 otherwise. In float32 the two compute sin/cos differently (~1
ulp), so an env that passes within an ulp of a threshold may end its episode on one and not the
other; the number of envs that differ is reported, not failed. Also prints how CUDA compares a
float32 tensor with a Python float. The throughput figures come from bench/env_throughput.py.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch

import fastdqn


def check(n: int, compile: bool, dtype: torch.dtype, steps: int = 130, device="cuda") -> tuple[bool, str]:
    gpu = fastdqn.CartPole(n, backend="torch", device=device, seed=3, compile=compile, max_episode_steps=60, dtype=dtype)
    cpu = fastdqn.CartPole(n, backend="numba", seed=3, max_episode_steps=60, dtype=dtype)
    worst, differ = 0.0, 0
    for call in range(4):
        if call < 2:
            acts = torch.randint(0, 2, (steps, n), generator=torch.Generator().manual_seed(call))
            got, want = gpu.rollout(steps, actions=acts.to(device)), cpu.rollout(steps, actions=acts)
        else:
            got, want = gpu.rollout(steps, seed=call), cpu.rollout(steps, seed=call)
        same = (got.episodes.cpu() == want.episodes) & (gpu.elapsed_steps.cpu() == cpu.elapsed_steps)
        same &= got.reward.cpu() == want.reward
        differ += int((~same).sum())
        if same.any():
            worst = max(worst, (gpu.state.cpu()[same] - cpu.state[same]).abs().max().item())
        gpu.state = cpu.state.to(device)  # resync the rounding and any env that went its own way
        gpu.elapsed_steps.copy_(cpu.elapsed_steps)
    ok = differ == 0 and worst < 1e-9 if dtype == torch.float64 else True
    return ok, f"{differ} env(s) differ in episodes/steps over 4 calls; max state difference elsewhere {worst:.1e}"


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA GPU")
        return 1
    print(torch.cuda.get_device_name(0), "torch", torch.__version__)
    th32 = float(np.float32(12 * 2 * math.pi / 360))  # float32(12 degrees), above the float64 value
    t = torch.tensor([th32], dtype=torch.float32)
    print(f"float32(12 deg) > 12 deg as a Python float: CPU {bool(t > 12 * 2 * math.pi / 360)}, "
          f"CUDA {bool((t.cuda() > 12 * 2 * math.pi / 360).item())}")
    bad = 0
    for dtype in (torch.float64, torch.float32):
        for n in (1000, 65536):
            for compile in (False, True):
                ok, line = check(n, compile, dtype)
                bad += not ok
                print(f"{str(dtype)[6:]:7s} N={n:6d} compile={compile!s:5s} {'ok ' if ok else 'BAD'} {line}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
