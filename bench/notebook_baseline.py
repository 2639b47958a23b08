"""The classic TF1 "Deep Q-learning with Cart-Pole" tutorial's per-step loop (PyTorch eager) against
fastdqn's `notebook` preset: time per env step.

    python bench/notebook_baseline.py [--warmup 10000] [--block-steps 2000] [--repeats 3] [--sampler numpy]

Baseline, re-implemented step for step from the tutorial: one Gymnasium ``gym.make('CartPole-v0')`` env
stepped one step at a time; a ``collections.deque(maxlen=10000)`` memory of (state, action, reward,
next_state) tuples prefilled with 20 random steps; explore_p = 0.01 + 0.99 exp(-1e-4 step); per step:
act (random, or argmax of Q(state) on a [1, 4] tensor), env.step, append to the deque, sample 20
(``np.random.choice(len, 20, replace=False)`` as the tutorial's ``Memory.sample``; ``--sampler random``
uses ``random.sample`` instead), build numpy arrays from the tuples, targets from the same 64-64 ReLU
network (no target network; the episode-end marker next_state = zeros bootstraps 0, as in the
tutorial), MSE on the chosen action's Q, Adam lr 1e-4, gamma 0.99.

The baseline's memory is first filled by ``--warmup`` steps (default 10000 = its capacity, so sampling
costs what it costs for most of the tutorial's run), then ``--repeats`` blocks of ``--block-steps`` steps
are timed. fastdqn first does one untimed 200-step run (numba JIT, lazy imports: once per process), then,
between the baseline's blocks, its notebook preset runs in-process, ``fastdqn.train.train(
preset('notebook').replace(total_steps=<the baseline's whole run>, eval_every=0, eval_episodes=1,
stop_when_solved=False, progress=False, plot=False))``, and the summary's ``env_steps_per_s`` (the loop's
rate, including its one final 1-episode evaluation and checkpoint) is read. Interleaving the two spreads
load changes of a shared machine over both. Both use the preset's torch thread count (1).

Reports the median seconds per env step of each and the ratio (target: the notebook preset >= 20x
faster per env step). Writes bench/results/notebook_baseline.json (``--quick``: ``_quick`` suffix).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, median, write_json  # noqa: E402

from fastdqn.config import preset  # noqa: E402
from fastdqn.train import train  # noqa: E402

TARGET_RATIO = 20.0

# The tutorial's hyperparameters.
GAMMA = 0.99
EXPLORE_START, EXPLORE_STOP, DECAY_RATE = 1.0, 0.01, 1e-4
HIDDEN_SIZE = 64
LEARNING_RATE = 1e-4
MEMORY_SIZE = 10_000
BATCH_SIZE = 20
PRETRAIN_LENGTH = BATCH_SIZE


class Memory:
    """The tutorial's replay memory: a deque of (state, action, reward, next_state) tuples."""

    def __init__(self, max_size: int, sampler: str = "numpy"):
        self.buffer = deque(maxlen=max_size)
        self.sampler = sampler

    def add(self, experience):
        self.buffer.append(experience)

    def sample(self, batch_size: int):
        if self.sampler == "random":
            return random.sample(self.buffer, batch_size)
        idx = np.random.choice(np.arange(len(self.buffer)), size=batch_size, replace=False)
        return [self.buffer[ii] for ii in idx]


class TutorialAgent:
    """The tutorial's training loop, unrolled so it can be run (and timed) a block of steps at a time."""

    def __init__(self, seed: int, sampler: str):
        import gymnasium as gym

        np.random.seed(seed)
        random.seed(seed)
        torch.manual_seed(seed)
        self.env = gym.make("CartPole-v0")
        self.env.reset(seed=seed)
        self.env.action_space.seed(seed)
        # QNetwork: two fully connected ReLU layers of 64, linear output per action.
        self.model = nn.Sequential(nn.Linear(4, HIDDEN_SIZE), nn.ReLU(), nn.Linear(HIDDEN_SIZE, HIDDEN_SIZE), nn.ReLU(),
                                   nn.Linear(HIDDEN_SIZE, 2))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LEARNING_RATE)
        self.memory = Memory(MEMORY_SIZE, sampler)
        self.steps = 0
        self.total_reward = 0.0
        self.rewards_list: list[float] = []
        self.loss = None
        self._pretrain()

    def _pretrain(self):
        """Fill the memory with ``PRETRAIN_LENGTH`` random transitions, as the tutorial does."""
        env = self.env
        env.reset()
        state, *_ = env.step(env.action_space.sample())
        for _ in range(PRETRAIN_LENGTH):
            action = env.action_space.sample()
            next_state, reward, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                next_state = np.zeros(state.shape)
                self.memory.add((state, action, reward, next_state))
                env.reset()
                state, *_ = env.step(env.action_space.sample())
            else:
                self.memory.add((state, action, reward, next_state))
                state = next_state
        self.state = state

    def run(self, n_steps: int):
        env, model, memory, state = self.env, self.model, self.memory, self.state
        for _ in range(n_steps):
            self.steps += 1
            explore_p = EXPLORE_STOP + (EXPLORE_START - EXPLORE_STOP) * np.exp(-DECAY_RATE * self.steps)
            if explore_p > np.random.rand():
                action = env.action_space.sample()
            else:
                with torch.no_grad():
                    qs = model(torch.as_tensor(state.reshape((1, *state.shape)), dtype=torch.float32)).numpy()
                action = int(np.argmax(qs))
            next_state, reward, terminated, truncated, _ = env.step(action)
            # The tutorial (old gym API) has one `done`: the 200-step time limit ends an episode like a fall.
            done = terminated or truncated
            self.total_reward += reward
            if done:
                # The tutorial's episode-end marker: next_state all zeros, whose target is set to 0 below,
                # i.e. no bootstrap at any episode end (truncation included). Kept as the tutorial had it.
                next_state = np.zeros(state.shape)
                self.rewards_list.append(self.total_reward)
                self.total_reward = 0.0
                memory.add((state, action, reward, next_state))
                env.reset()
                state, *_ = env.step(env.action_space.sample())
            else:
                memory.add((state, action, reward, next_state))
                state = next_state

            batch = memory.sample(BATCH_SIZE)
            states = np.array([each[0] for each in batch])
            actions = np.array([each[1] for each in batch])
            rewards = np.array([each[2] for each in batch])
            next_states = np.array([each[3] for each in batch])
            with torch.no_grad():
                target_qs = model(torch.as_tensor(next_states, dtype=torch.float32)).numpy()
            episode_ends = (next_states == np.zeros(states[0].shape)).all(axis=1)
            target_qs[episode_ends] = (0, 0)
            targets = rewards + GAMMA * np.max(target_qs, axis=1)

            # mainQN.loss / mainQN.opt: MSE between the target and Q of the chosen action, Adam step.
            output = model(torch.as_tensor(states, dtype=torch.float32))
            q = (output * F.one_hot(torch.as_tensor(actions), 2)).sum(dim=1)
            loss = (torch.as_tensor(targets, dtype=torch.float32) - q).pow(2).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.loss = loss.item()  # sess.run([loss, opt]) hands the loss back every step
        self.state = state


def fastdqn_run(total_steps: int, seed: int) -> dict:
    cfg = preset("notebook").replace(total_steps=total_steps, eval_every=0, eval_episodes=1, stop_when_solved=False,
                                     progress=False, plot=False, seed=seed)
    with tempfile.TemporaryDirectory(prefix="fastdqn-nb-") as d:
        r = train(cfg, out=Path(d) / "run")
    return {"env_steps": r.env_steps, "updates": r.updates, "env_steps_per_s": r.env_steps_per_s,
            "updates_per_s": r.updates_per_s, "wall_time_s": r.wall_time_s, "s_per_env_step": 1.0 / r.env_steps_per_s}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--warmup", type=int, default=MEMORY_SIZE, help="untimed baseline steps first (default: fill memory)")
    p.add_argument("--block-steps", type=int, default=2000, help="baseline env steps per timed block")
    p.add_argument("--repeats", type=int, default=3, help="timed baseline blocks = fastdqn runs")
    p.add_argument("--sampler", default="numpy", choices=["numpy", "random"],
                   help="numpy: np.random.choice(replace=False) as the tutorial's Memory.sample; random: random.sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch-threads", type=int, default=None,
                   help="default: the notebook preset's torch_threads (auto: 1 for one agent)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (short warm-up and blocks), *_quick output")
    p.add_argument("--out", default=None, help="output name stem (default: notebook_baseline[_quick])")
    args = p.parse_args(argv)
    if args.quick:
        args.warmup, args.block_steps, args.repeats = 200, 300, 2
    stem = args.out or ("notebook_baseline_quick" if args.quick else "notebook_baseline")
    nb = preset("notebook")
    threads = args.torch_threads if args.torch_threads is not None else (nb.torch_threads or 1)  # 0: auto = 1 agent
    torch.set_num_threads(threads)
    assert (nb.hidden, nb.batch_size, nb.buffer_size, nb.lr, nb.gamma, nb.env_id) == (
        (HIDDEN_SIZE, HIDDEN_SIZE), BATCH_SIZE, MEMORY_SIZE, LEARNING_RATE, GAMMA, "CartPole-v0"), \
        "the notebook preset no longer matches the tutorial's network/batch/memory/lr/gamma/env"

    agent = TutorialAgent(args.seed, args.sampler)
    t = time.perf_counter()
    agent.run(args.warmup)
    warmup_s = time.perf_counter() - t
    total_steps = PRETRAIN_LENGTH + args.warmup + args.repeats * args.block_steps  # the baseline's whole run
    print(f"baseline warm-up: {args.warmup} steps in {warmup_s:.2f} s; memory {len(agent.memory.buffer)}", flush=True)

    t = time.perf_counter()
    fastdqn_run(200, args.seed)  # untimed: numba JIT and lazy imports are once per process, not per step
    fast_warmup_s = time.perf_counter() - t

    base_s, fast_runs = [], []
    for i in range(args.repeats):
        t = time.perf_counter()
        agent.run(args.block_steps)
        base_s.append((time.perf_counter() - t) / args.block_steps)
        fast_runs.append(fastdqn_run(total_steps, args.seed + i))
        print(f"repeat {i}: baseline {1e6 * base_s[-1]:8.1f} us/step | fastdqn notebook preset "
              f"{1e6 * fast_runs[-1]['s_per_env_step']:8.1f} us/step ({fast_runs[-1]['env_steps']} env steps)", flush=True)

    base, fast = median(base_s), median([r["s_per_env_step"] for r in fast_runs])
    ratio = base / fast
    summary = {
        "baseline_us_per_env_step": 1e6 * base, "fastdqn_notebook_us_per_env_step": 1e6 * fast,
        "baseline_env_steps_per_s": 1.0 / base, "fastdqn_notebook_env_steps_per_s": 1.0 / fast,
        "speedup": ratio, "target_speedup": TARGET_RATIO, "target_met": ratio >= TARGET_RATIO,
    }
    rl = agent.rewards_list
    payload = {
        "benchmark": "notebook_baseline", "machine": machine_info(), "quick": args.quick,
        "settings": {"warmup_steps": args.warmup, "block_steps": args.block_steps, "repeats": args.repeats,
                     "sampler": args.sampler, "seed": args.seed, "torch_threads": threads,
                     "fastdqn_total_steps": total_steps},
        "summary": summary,
        "baseline": {
            "s_per_env_step_repeats": base_s, "warmup_s": warmup_s, "steps": agent.steps,
            "memory_len": len(agent.memory.buffer), "episodes": len(rl),
            "mean_return_last_20_episodes": float(np.mean(rl[-20:])) if rl else None,
            "implementation": "PyTorch eager, gym.make('CartPole-v0'), deque memory, per-step numpy batch, "
                              "no target network, zero bootstrap at every episode end (as the tutorial)",
        },
        "fastdqn_notebook": {
            "runs": fast_runs, "warmup_run_s": fast_warmup_s,
            "note": "summary env_steps_per_s: the training loop incl. its final 1-episode evaluation and checkpoint",
        },
    }
    path = write_json(f"{stem}.json", payload)
    print(f"baseline {summary['baseline_us_per_env_step']:.1f} us/step, fastdqn notebook preset "
          f"{summary['fastdqn_notebook_us_per_env_step']:.1f} us/step: {ratio:.1f}x faster per env step "
          f"(target {TARGET_RATIO:.0f}x: {'met' if summary['target_met'] else 'NOT met'})")
    print("wrote", path)


if __name__ == "__main__":
    main()
