"""The DQN training loop: ``train(config) -> TrainResult``.

The loop body in :func:`train` reads top to bottom: act, step, store, sample, update, then the
interval work (metrics flush, evaluation, checkpoint). Everything per step stays on the device:
epsilon and counters are host numbers that advance deterministically, episode returns are
accumulated on the device and copied to the host only at ``log_every`` intervals.
"""

from __future__ import annotations

import csv
import gc
import json
import math
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from fastdqn import checkpoint
from fastdqn.cartpole import CartPole
from fastdqn.config import ConfigError, DQNConfig
from fastdqn.learner import Learner, QNetwork
from fastdqn.replay import ReplayBuffer

METRICS_FIELDS = ["env_step", "wall_time_s", "episode_return", "epsilon", "loss", "env_steps_per_s"]
EVAL_FIELDS = ["env_step", "updates", "wall_time_s", "eval_mean_return", "eval_std_return"]
RESUMABLE_OVERRIDES = {"total_steps", "eval_every", "stop_when_solved", "progress", "plot", "log_every"}


class RunDirError(ValueError):
    """The output directory cannot be used (message is one readable line)."""


@dataclass
class TrainResult:
    solved: bool
    solved_at_env_step: int | None
    env_steps: int
    updates: int
    wall_time_s: float
    eval_mean_return: float | None
    eval_std_return: float | None
    env_steps_per_s: float
    updates_per_s: float
    interrupted: bool
    run_dir: str


def epsilon(cfg: DQNConfig, env_step: int) -> float:
    """Exploration rate after ``env_step`` transitions (a host float: no device work)."""
    if cfg.eps_schedule == "exp":
        return cfg.eps_end + (cfg.eps_start - cfg.eps_end) * math.exp(-cfg.eps_decay * env_step)
    span = cfg.eps_decay * cfg.total_steps
    frac = 1.0 if span <= 0 else min(1.0, env_step / span)
    return cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)


@torch.no_grad()
def act(q: QNetwork, obs: torch.Tensor, eps: float, gen: torch.Generator) -> torch.Tensor:
    """Epsilon-greedy actions for every env at once, drawn on the device."""
    greedy = q(obs).argmax(dim=1)
    # One uniform draw per env decides both: explore if u < eps, and then the random action is
    # u < eps / 2, which is a fair coin given u < eps.
    u = torch.rand(obs.shape[0], device=obs.device, generator=gen)
    return torch.where(u < eps, (u < eps / 2).long(), greedy)


@torch.no_grad()
def evaluate(q: QNetwork, env: CartPole) -> torch.Tensor:
    """Greedy returns of one episode in each of ``env.num_envs`` envs (fresh resets)."""
    obs = env.reset()
    returns = torch.zeros(env.num_envs, device=env.device)
    running = torch.ones(env.num_envs, dtype=torch.bool, device=env.device)
    for t in range(env.max_episode_steps):
        res = env.step(q(obs).argmax(dim=1))
        returns += res.reward * running
        running &= ~(res.terminated | res.truncated)
        obs = res.obs
        if t % 50 == 49 and not running.any():  # a host sync every 50 steps, eval only
            break
    return returns


def resolve_device(cfg: DQNConfig) -> tuple[torch.device, str, str]:
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RunDirError("device cuda was requested but torch sees no CUDA GPU; use --device cpu or auto")
    backend = cfg.env_backend if cfg.env_backend != "auto" else ("numba" if device.type == "cpu" else "torch")
    compile_mode = cfg.compile if cfg.compile != "auto" else ("none" if device.type == "cpu" else "default")
    return device, backend, compile_mode


def versions() -> dict:
    import numpy

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}


class Progress:
    """One self-rewriting status line on stderr (only when it is a terminal)."""

    def __init__(self, total: int, enabled: bool):
        self.total = total
        self.enabled = enabled and sys.stderr.isatty()
        self.last = 0.0

    def update(self, env_steps, sps, recent_return, eps, last_eval=None, force=False):
        now = time.perf_counter()
        if not self.enabled or (not force and now - self.last < 0.25):
            return
        self.last = now
        frac = env_steps / self.total
        bar = "#" * int(24 * frac) + "-" * (24 - int(24 * frac))
        ret = f"{recent_return:6.1f}" if recent_return is not None else "     -"
        ev = f"  eval {last_eval:5.1f}" if last_eval is not None else ""
        sys.stderr.write(f"\r[{bar}] {env_steps:>9,d}/{self.total:,d} steps  {sps:>9,.0f} steps/s  "
                         f"return {ret}  eps {eps:.3f}{ev} ")
        sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\n")


def prepare_run_dir(out, resume: bool) -> Path:
    out = Path(out)
    if resume:  # train() has already loaded its checkpoint
        return out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunDirError(f"run directory {out} already exists and is not empty; use --resume {out} to continue it "
                          "or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def resume_config(out, **overrides) -> DQNConfig:
    """The config of the run in ``out`` with ``overrides`` (only RESUMABLE_OVERRIDES) applied."""
    bad = sorted(set(overrides) - RESUMABLE_OVERRIDES)
    if bad:
        raise ConfigError(f"{bad[0]} cannot change when resuming; allowed: {', '.join(sorted(RESUMABLE_OVERRIDES))}")
    return DQNConfig.from_dict({**checkpoint.load(out)["config"], **overrides})


def train(cfg: DQNConfig, out=None, resume: bool = False) -> TrainResult:
    """Train a DQN agent; writes config, metrics, checkpoint, summary and plot into ``out``.

    ``resume=True`` continues the run in ``out`` from its checkpoint; ``cfg`` must then equal the
    run's config except for RESUMABLE_OVERRIDES (build it with :func:`resume_config`).
    """
    t_start = time.perf_counter()
    ckpt = None
    cfg.validate()
    if resume:
        ckpt = checkpoint.load(out)
        saved = DQNConfig.from_dict(ckpt["config"])
        changed = [f for f in DQNConfig.__dataclass_fields__ if f not in RESUMABLE_OVERRIDES
                   and getattr(cfg, f) != getattr(saved, f)]
        if changed:
            raise ConfigError(f"{changed[0]} differs from the resumed run's ({getattr(saved, changed[0])!r}); only "
                              f"{', '.join(sorted(RESUMABLE_OVERRIDES))} may change when resuming")
    if out is None:  # a fresh directory under runs/, never one that exists
        stem = Path("runs") / time.strftime(f"{cfg.env_id}-%Y%m%d-%H%M%S")
        out = next(p for i in range(1, 10**6) if not (p := stem.with_name(stem.name + (f"-{i}" if i > 1 else ""))).exists())
    run_dir = prepare_run_dir(out, resume)
    device, backend, compile_mode = resolve_device(cfg)
    if device.type == "cpu" and cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")

    # --- set-up -------------------------------------------------------------------------
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    n = cfg.num_envs
    env = CartPole(n, backend=backend, device=device, max_episode_steps=cfg.max_episode_steps, seed=cfg.seed)
    eval_env = CartPole(cfg.eval_episodes, backend=backend, device=device, max_episode_steps=cfg.max_episode_steps,
                        seed=cfg.seed + 1_000_003)
    buffer = ReplayBuffer(cfg.buffer_size, 4, device=device)
    q = QNetwork(4, 2, cfg.hidden).to(device)
    learner = Learner(q, lr=cfg.lr, gamma=cfg.gamma, loss=cfg.loss, double_dqn=cfg.double_dqn,
                      target_period=cfg.target_period, tau=cfg.tau, grad_clip=cfg.grad_clip, compile_mode=compile_mode)
    env_steps, evals, solved_at, prior_wall = 0, [], None, 0.0
    if ckpt is not None:
        learner.load_state_dict(ckpt["learner"])
        buffer.load_state_dict(ckpt["replay"])
        gen.set_state(ckpt["generator"])
        env_steps, prior_wall = int(ckpt["env_steps"]), float(ckpt["wall_time_s"])
        evals, solved_at = list(ckpt["evals"]), ckpt["solved_at_env_step"]
    metrics_file = open(run_dir / "metrics.csv", "a", newline="")
    metrics = csv.writer(metrics_file)
    if metrics_file.tell() == 0:
        metrics.writerow(METRICS_FIELDS)

    # device-side episode bookkeeping, copied to the host every log_every steps
    ep_return = torch.zeros(n, device=device)
    pending_ret = torch.zeros(cfg.log_every, n, device=device)
    pending_done = torch.zeros(cfg.log_every, n, dtype=torch.bool, device=device)
    recent, last_loss, k = [], torch.zeros((), device=device), 0
    progress = Progress(cfg.total_steps, cfg.progress)
    next_eval = (env_steps // cfg.eval_every + 1) * cfg.eval_every if cfg.eval_every else None
    loop_start, loop_steps0, updates0 = time.perf_counter(), env_steps, learner.updates
    solved = solved_at is not None
    interrupted = False

    def flush(final=False):
        nonlocal k
        if k == 0 and not final:
            return
        done = pending_done[:k].cpu()
        rets = pending_ret[:k].cpu()
        elapsed = time.perf_counter() - loop_start
        sps = (env_steps - loop_steps0) / max(elapsed, 1e-9)
        eps_now, loss_now = epsilon(cfg, env_steps), float(last_loss)
        first_step = env_steps - k * n
        for row, col in done.nonzero().tolist():
            r = float(rets[row, col])
            recent.append(r)
            metrics.writerow([first_step + (row + 1) * n, f"{prior_wall + elapsed:.3f}", r, f"{eps_now:.4f}",
                              f"{loss_now:.5g}", f"{sps:.0f}"])
        del recent[:-100]
        k = 0
        progress.update(env_steps, sps, sum(recent) / len(recent) if recent else None, eps_now,
                        evals[-1]["eval_mean_return"] if evals else None, force=final)

    def run_eval():
        nonlocal solved, solved_at
        rets = evaluate(q, eval_env)
        mean, std = rets.mean().item(), rets.std(unbiased=False).item()
        evals.append({"env_step": env_steps, "updates": learner.updates,
                      "wall_time_s": prior_wall + time.perf_counter() - t_start,
                      "eval_mean_return": mean, "eval_std_return": std})
        if mean >= cfg.solve_threshold and not solved:
            solved, solved_at = True, env_steps

    def save_checkpoint():
        flush()  # the metrics on disk match the checkpoint
        metrics_file.flush()
        checkpoint.save({
            "config": cfg.to_dict(), "learner": learner.state_dict(), "replay": buffer.state_dict(),
            "generator": gen.get_state(), "env_steps": env_steps, "evals": evals, "solved_at_env_step": solved_at,
            "wall_time_s": prior_wall + time.perf_counter() - t_start,
            "env": env.state_dict(), "obs": obs, "ep_return": ep_return,
        }, run_dir / checkpoint.CHECKPOINT)

    # --- the loop -----------------------------------------------------------------------
    # The loop allocates many short-lived tensors and creates no reference cycles: pause the
    # cyclic garbage collector while it runs (~5 % of loop time), restore it after.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    if ckpt is None:
        obs = env.reset()
    else:  # continue the running episodes exactly where they were
        env.load_state_dict(ckpt["env"])
        obs = ckpt["obs"].to(device)
        ep_return.copy_(ckpt["ep_return"])
    try:
        while env_steps < cfg.total_steps and not (solved and cfg.stop_when_solved):
            eps = epsilon(cfg, env_steps)
            actions = act(q, obs, eps, gen)  # act
            res = env.step(actions)  # step
            buffer.add(obs, actions, res.reward, res.final_obs, res.terminated, res.truncated)  # store
            obs = res.obs
            env_steps += n
            done = res.terminated | res.truncated
            ep_return += res.reward
            pending_ret[k].copy_(ep_return)
            pending_done[k].copy_(done)
            ep_return.masked_fill_(done, 0.0)
            k += 1
            if env_steps >= cfg.learning_starts and (env_steps // n) % cfg.train_frequency == 0:
                for _ in range(cfg.gradient_steps):
                    last_loss = learner.update(buffer.sample(cfg.batch_size, gen))  # sample, update
            if k == cfg.log_every:
                flush()
            if next_eval is not None and env_steps >= next_eval:
                next_eval += cfg.eval_every
                if env_steps >= cfg.learning_starts:
                    run_eval()
                    save_checkpoint()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if gc_was_enabled:
            gc.enable()
    loop_time = time.perf_counter() - loop_start
    if not interrupted and (not evals or evals[-1]["env_step"] != env_steps):
        run_eval()
    flush(final=True)
    progress.close()
    save_checkpoint()
    metrics_file.close()

    # --- outputs ------------------------------------------------------------------------
    wall = prior_wall + time.perf_counter() - t_start
    last = evals[-1] if evals else {}
    result = TrainResult(
        solved=solved, solved_at_env_step=solved_at, env_steps=env_steps, updates=learner.updates,
        wall_time_s=wall, eval_mean_return=last.get("eval_mean_return"), eval_std_return=last.get("eval_std_return"),
        env_steps_per_s=(env_steps - loop_steps0) / max(loop_time, 1e-9),
        updates_per_s=(learner.updates - updates0) / max(loop_time, 1e-9), interrupted=interrupted,
        run_dir=str(run_dir),
    )
    with open(run_dir / "evals.csv", "w", newline="") as f:
        w = csv.DictWriter(f, EVAL_FIELDS)
        w.writeheader()
        w.writerows(evals)
    summary = {**asdict(result), "device": str(device), "env_backend": backend, "compile": compile_mode,
               "versions": versions(), "seed": cfg.seed, "env_id": cfg.env_id,
               "solve_threshold": cfg.solve_threshold}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    from fastdqn.outputs import write_extras

    write_extras(run_dir, cfg)
    return result
