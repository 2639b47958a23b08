"""The DQN training loop: ``train(config | configs, population=K) -> TrainResult``.

The hot loop is :meth:`fastdqn.engine.Engine.iteration` (act, step, store, sample, update,
target update, bookkeeping for all K agents, no host sync). This module drives it and does the
interval work between iterations: metric flushes (one row per agent every ``log_every`` vector
steps), greedy evaluations (every agent at once), checkpoints and the run's outputs. An agent
whose evaluation reaches the env's threshold is solved; with ``stop_when_solved`` it stops
updating (its policy stays the one that passed) and the run ends when every agent is solved.
"""

from __future__ import annotations

import csv
import gc
import json
import os
import platform
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from fastdqn import checkpoint
from fastdqn.config import ConfigError, DQNConfig
from fastdqn.engine import PER_AGENT_FIELDS, Engine, check_population, population_configs

METRICS_FIELDS = ["env_step", "agent", "wall_time_s", "episodes", "mean_return", "epsilon", "loss", "env_steps_per_s"]
EVAL_FIELDS = ["env_step", "agent", "updates", "wall_time_s", "eval_mean_return", "eval_std_return"]
RESUMABLE_OVERRIDES = {"total_steps", "eval_every", "stop_when_solved", "progress", "plot", "log_every"}


class RunDirError(ValueError):
    """The output directory cannot be used (message is one readable line)."""


@dataclass
class TrainResult:
    solved: bool  # every agent solved
    solved_at_env_step: int | None  # when the last agent solved (per-agent env steps)
    env_steps: int  # per agent
    updates: int  # per agent
    wall_time_s: float
    eval_mean_return: float | None  # mean over agents of each one's last (for a solved agent: passing) evaluation
    eval_std_return: float | None
    env_steps_per_s: float  # all agents together, over the loop
    updates_per_s: float  # all agents together, over the loop
    interrupted: bool
    run_dir: str
    agents: list[dict] = field(default_factory=list)


def resolve_device(cfg: DQNConfig) -> tuple[torch.device, str, str]:
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RunDirError("device cuda was requested but torch sees no CUDA GPU; use --device cpu or auto")
    backend = cfg.env_backend if cfg.env_backend != "auto" else ("numba" if device.type == "cpu" else "torch")
    # auto: eager everywhere. On a CPU the compile takes longer than a whole run; on an H200 the
    # compiled update was slower per iteration than eager (3.7 vs 2.4 ms, shared/gpu/README.md).
    compile_mode = cfg.compile if cfg.compile != "auto" else "none"
    return device, backend, compile_mode


def set_threads(cfg: DQNConfig, agents: int, device: torch.device) -> None:
    """torch's intra-op threads on a CPU: ``cfg.torch_threads``, or (0, auto) one for a single agent
    and every core this process may use for a population."""
    if device.type == "cpu":
        torch.set_num_threads(cfg.torch_threads or (1 if agents == 1 else len(os.sched_getaffinity(0))))


def versions() -> dict:
    import numpy

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}


class Progress:
    """One self-rewriting status line on stderr (only when it is a terminal)."""

    def __init__(self, total: int, agents: int, enabled: bool):
        self.total, self.agents = total, agents
        self.enabled = enabled and sys.stderr.isatty()
        self.last = 0.0

    def update(self, env_steps, sps, recent_return, eps, last_eval=None, solved=0, force=False):
        now = time.perf_counter()
        if not self.enabled or (not force and now - self.last < 0.25):
            return
        self.last = now
        frac = env_steps / self.total
        bar = "#" * int(24 * frac) + "-" * (24 - int(24 * frac))
        ret = f"{recent_return:6.1f}" if recent_return is not None else "     -"
        ev = f"  eval {last_eval:5.1f}" if last_eval is not None else ""
        pop = f"  solved {solved}/{self.agents}" if self.agents > 1 else ""
        sys.stderr.write(f"\r[{bar}] {env_steps:>9,d}/{self.total:,d} steps  {sps:>9,.0f} steps/s  "
                         f"return {ret}  eps {eps:.3f}{ev}{pop} ")
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


def resume_config(out, **overrides) -> list[DQNConfig]:
    """The agents' configs of the run in ``out`` with ``overrides`` (only RESUMABLE_OVERRIDES) applied to each."""
    bad = sorted(set(overrides) - RESUMABLE_OVERRIDES)
    if bad:
        raise ConfigError(f"{bad[0]} cannot change when resuming; allowed: {', '.join(sorted(RESUMABLE_OVERRIDES))}")
    return [DQNConfig.from_dict({**d, **overrides}) for d in checkpoint.load(out)["configs"]]


def config_json(configs: list[DQNConfig]) -> dict:
    """config.json: the first agent's config; for a population also each agent's own fields."""
    d = configs[0].to_dict()
    if len(configs) > 1:
        d["population"] = len(configs)
        d["agents"] = [{f: getattr(c, f) for f in PER_AGENT_FIELDS} for c in configs]
    return d


def train(cfg: DQNConfig | list[DQNConfig], out=None, resume: bool = False, population: int = 1,
          net=None, on_eval=None) -> TrainResult:
    """Train one agent, or a population trained as one batch; writes config, metrics, evals,
    checkpoint, summary and plot into ``out``.

    ``cfg`` is one config (with ``population`` K: K agents, agent k with seed ``cfg.seed + k``)
    or a list of configs, one per agent, differing only in per-agent fields
    (:data:`fastdqn.engine.PER_AGENT_FIELDS`). ``resume=True`` continues the run in ``out`` from
    its checkpoint; the configs must then equal the run's except for RESUMABLE_OVERRIDES (build
    them with :func:`resume_config`). ``net``: a Q-network object for the engine (default: the
    configs' MLP). ``on_eval(rows)``: called after each evaluation with one row per agent still
    training (env_step, agent, updates, wall_time_s, eval_mean_return, eval_std_return); it
    returns the agents to stop (they leave the engine like solved ones; ``fastdqn sweep`` prunes
    this way).
    """
    t_start = time.perf_counter()
    configs = check_population(list(cfg) if isinstance(cfg, (list, tuple)) else population_configs(cfg, population))
    cfg, k = configs[0], len(configs)
    ckpt = None
    if resume:
        ckpt = checkpoint.load(out)
        saved = [DQNConfig.from_dict(d) for d in ckpt["configs"]]
        if len(saved) != k:
            raise ConfigError(f"the resumed run has {len(saved)} agents, not {k}; the population cannot change")
        for a, b in zip(configs, saved):
            changed = [f for f in DQNConfig.__dataclass_fields__ if f not in RESUMABLE_OVERRIDES
                       and getattr(a, f) != getattr(b, f)]
            if changed:
                raise ConfigError(f"{changed[0]} differs from the resumed run's ({getattr(b, changed[0])!r}); only "
                                  f"{', '.join(sorted(RESUMABLE_OVERRIDES))} may change when resuming")
    if out is None:  # a fresh directory under runs/, never one that exists
        stem = Path("runs") / time.strftime(f"{cfg.env_id}-%Y%m%d-%H%M%S")
        out = next(p for i in range(1, 10**6) if not (p := stem.with_name(stem.name + (f"-{i}" if i > 1 else ""))).exists())
    run_dir = prepare_run_dir(out, resume)
    device, backend, compile_mode = resolve_device(cfg)
    set_threads(cfg, k, device)
    (run_dir / "config.json").write_text(json.dumps(config_json(configs), indent=2) + "\n")

    # --- set-up -------------------------------------------------------------------------
    # The engine holds the agents still training (`alive`, by agent number); with
    # stop_when_solved a solved agent leaves it (its parameters go to `policies`, [K, P] on the host).
    def compiled(e: Engine) -> Engine:
        if compile_mode != "none":
            e.iteration_fn = torch.compile(e.iteration, mode=compile_mode, fullgraph=backend == "torch")
        return e

    agents = [{"agent": i, "seed": c.seed, "solved": False, "solved_at_env_step": None, "updates_at_solve": None,
               "solved_at_wall_s": None, "stopped": False, "eval_mean_return": None, "eval_std_return": None,
               **{f: getattr(c, f) for f in PER_AGENT_FIELDS}}
              for i, c in enumerate(configs)]
    evals, prior_wall, alive = [], 0.0, list(range(k))
    if ckpt is not None:
        agents, evals, prior_wall = ckpt["agents"], list(ckpt["evals"]), float(ckpt["wall_time_s"])
        alive = list(ckpt["alive"])
    engine = Engine([configs[i] for i in alive], device=device, backend=backend, net=net)
    if ckpt is not None:
        engine.load_state_dict(ckpt["engine"])
    engine = compiled(engine)
    policies = ckpt["policies"].clone() if ckpt is not None else engine.learner.params.cpu().clone()
    freeze = cfg.stop_when_solved
    metrics_file = open(run_dir / "metrics.csv", "a", newline="")
    metrics = csv.writer(metrics_file)
    if metrics_file.tell() == 0:
        metrics.writerow(METRICS_FIELDS)

    recent: list[float] = []
    progress = Progress(cfg.total_steps, k, cfg.progress)
    next_eval = (engine.host_env_steps // cfg.eval_every + 1) * cfg.eval_every if cfg.eval_every else None
    loop_start = time.perf_counter()
    since_flush = 0
    work = {"env_steps": 0, "updates": 0}  # summed over the agents in the engine, this session
    interrupted = False

    def n_solved():
        return sum(a["solved"] for a in agents)

    def all_done():  # every agent solved (when solved agents stop) or stopped by on_eval
        return all(a["solved"] and freeze or a["stopped"] for a in agents)

    def flush(final=False):
        nonlocal since_flush
        if since_flush == 0:  # nothing new since the last rows
            if final:
                progress.update(engine.host_env_steps, 0.0, recent[0] if recent else None, 0.0, None, n_solved(), True)
            return
        since_flush = 0
        m = engine.read_metrics()
        steps = engine.host_env_steps
        elapsed = time.perf_counter() - loop_start
        sps = work["env_steps"] / max(elapsed, 1e-9)
        wall = f"{prior_wall + elapsed:.3f}"
        means = []
        for row, i in enumerate(alive):
            eps_i, loss_i, count = m["epsilon"][row], m["loss"][row], m["episodes"][row]
            mean = m["return_sum"][row] / count if count else None
            if mean is not None:
                means.append(mean)
            metrics.writerow([steps, i, wall, int(count), "" if mean is None else f"{mean:.2f}", f"{eps_i:.4f}",
                              f"{loss_i:.5g}", f"{sps:.0f}"])
        if means:
            recent[:] = [sum(means) / len(means)]
        last_eval = [a["eval_mean_return"] for a in agents if a["eval_mean_return"] is not None]
        progress.update(steps, sps, recent[0] if recent else None, sum(m["epsilon"]) / len(alive),
                        sum(last_eval) / len(last_eval) if last_eval else None, n_solved(), force=final)

    def run_eval():
        nonlocal engine, alive
        rets = engine.evaluate().cpu()
        mean, std = rets.mean(1).tolist(), rets.std(1, unbiased=False).tolist()
        wall = prior_wall + time.perf_counter() - t_start
        rows = []
        for row, i in enumerate(alive):
            a = agents[i]
            rows.append({"env_step": engine.host_env_steps, "agent": i, "updates": engine.host_updates,
                         "wall_time_s": wall, "eval_mean_return": mean[row], "eval_std_return": std[row]})
            a["eval_mean_return"], a["eval_std_return"] = mean[row], std[row]
            if mean[row] >= cfg.solve_threshold and not a["solved"]:
                a.update(solved=True, solved_at_env_step=engine.host_env_steps, updates_at_solve=engine.host_updates,
                         solved_at_wall_s=wall)
        evals.extend(rows)
        for i in (on_eval(rows) if on_eval is not None else ()):
            agents[i]["stopped"] = True
        keep = [row for row, i in enumerate(alive) if not (agents[i]["solved"] and freeze or agents[i]["stopped"])]
        if len(keep) < len(alive):  # the solved (and the stopped) leave, with the weights that passed
            flush()  # their last metrics rows first
            policies[alive] = engine.learner.params.cpu()
            if keep:
                alive = [alive[row] for row in keep]
                engine = compiled(engine.select(keep))

    def save_checkpoint():
        flush()  # the metrics on disk match the checkpoint
        metrics_file.flush()
        policies[alive] = engine.learner.params.cpu()
        checkpoint.save({
            "format": checkpoint.FORMAT, "configs": [c.to_dict() for c in configs], "engine": engine.state_dict(),
            "alive": alive, "policies": policies, "agents": agents, "evals": evals,
            "wall_time_s": prior_wall + time.perf_counter() - t_start,
            "obs_dim": engine.obs_dim, "n_actions": engine.n_actions,
        }, run_dir / checkpoint.CHECKPOINT)

    # --- the loop -----------------------------------------------------------------------
    # The loop allocates many short-lived tensors and creates no reference cycles: pause the
    # cyclic garbage collector while it runs (~5 % of loop time), restore it after. Ctrl-C only
    # raises a flag, read between iterations, so the checkpoint never holds half an iteration.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    stop = []
    main_thread = threading.current_thread() is threading.main_thread()
    old_handler = signal.signal(signal.SIGINT, lambda *_: stop.append(1)) if main_thread else None
    try:
        while engine.host_env_steps < cfg.total_steps and not all_done():
            if stop:
                raise KeyboardInterrupt
            updates = engine.host_updates
            engine.step()  # act, step, store, sample, update: every agent, no host sync
            work["env_steps"] += engine.agents * engine.num_envs
            work["updates"] += engine.agents * (engine.host_updates - updates)
            since_flush += 1
            if since_flush == cfg.log_every:
                flush()
            if next_eval is not None and engine.host_env_steps >= next_eval:
                next_eval += cfg.eval_every
                if engine.host_env_steps >= cfg.learning_starts:
                    run_eval()
                    save_checkpoint()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if gc_was_enabled:
            gc.enable()
        if main_thread:
            signal.signal(signal.SIGINT, old_handler)
    loop_time = time.perf_counter() - loop_start
    if not interrupted and (not evals or evals[-1]["env_step"] != engine.host_env_steps):
        run_eval()
    flush(final=True)
    progress.close()
    save_checkpoint()
    metrics_file.close()

    # --- outputs ------------------------------------------------------------------------
    wall = prior_wall + time.perf_counter() - t_start
    finals = [a for a in agents if a["eval_mean_return"] is not None]
    solved_all = n_solved() == k
    result = TrainResult(
        solved=solved_all,
        solved_at_env_step=max(a["solved_at_env_step"] for a in agents) if solved_all else None,
        env_steps=engine.host_env_steps, updates=engine.host_updates, wall_time_s=wall,
        eval_mean_return=sum(a["eval_mean_return"] for a in finals) / len(finals) if finals else None,
        eval_std_return=(sum(a["eval_std_return"] for a in finals) / len(finals)) if finals else None,
        env_steps_per_s=work["env_steps"] / max(loop_time, 1e-9), updates_per_s=work["updates"] / max(loop_time, 1e-9),
        interrupted=interrupted,
        run_dir=str(run_dir), agents=agents,
    )
    with open(run_dir / "evals.csv", "w", newline="") as f:
        w = csv.DictWriter(f, EVAL_FIELDS)
        w.writeheader()
        w.writerows(evals)
    summary = {**asdict(result), "population": k, "agents_solved": n_solved(), "device": str(device),
               "env_backend": backend, "compile": compile_mode, "versions": versions(), "seed": cfg.seed,
               "env_id": cfg.env_id, "solve_threshold": cfg.solve_threshold}
    summary["agents"] = summary.pop("agents")  # last: it is the long part
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    from fastdqn.outputs import write_extras

    write_extras(run_dir, cfg, k)
    return result
