"""The DQN training loop: ``train(config | configs, population=K) -> TrainResult``.

The hot loop is :meth:`fastdqn.engine.Engine.iteration` (act, step, store, sample, update,
target update, bookkeeping for all K agents, no host sync). This module drives it and does the
interval work between iterations: metric flushes (one row per agent every ``log_every`` vector
steps), greedy evaluations (every agent at once), checkpoints and the run's outputs. An agent
whose evaluation reaches the env's threshold is confirmed on ``confirm_episodes`` fresh episodes
(independent of the evaluation, so the best of several noisy evaluations does not pass for
solved); it is solved when the confirmation's mean clears the threshold by ``confirm_margin``
standard errors (a policy whose true mean sits at the threshold would pass a bare "mean >=
threshold" half the time, and then fail a fresh check half the time). With
``stop_when_solved`` a solved agent stops updating (its policy stays the one that passed) and
the run ends when every agent is solved.
"""

from __future__ import annotations

import csv
import gc
import json
import math
import os
import platform
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from fastdqn import checkpoint, envs
from fastdqn.config import ConfigError, DQNConfig
from fastdqn.engine import PER_AGENT_FIELDS, Engine, check_population, population_configs

METRICS_FIELDS = ["env_step", "agent", "wall_time_s", "episodes", "mean_return", "epsilon", "loss", "env_steps_per_s"]
EVAL_FIELDS = ["env_step", "agent", "updates", "wall_time_s", "eval_mean_return", "eval_std_return",
               "confirm_mean_return", "confirm_std_return"]
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
    eval_mean_return: float | None  # mean over agents of each one's last evaluation (a solved agent: its confirmation)
    eval_std_return: float | None
    env_steps_per_s: float  # all agents together, over the loop
    updates_per_s: float  # all agents together, over the loop
    interrupted: bool
    run_dir: str
    agents: list[dict] = field(default_factory=list)


MASKED_MODES = ("graph", "reduce-overhead")
"""Compile modes that keep the engine's shapes fixed: solved agents stay in it, masked (a smaller
engine would mean a new capture or compile)."""


def resolve_device(cfg: DQNConfig) -> tuple[torch.device, str, str]:
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RunDirError("device cuda was requested but torch sees no CUDA GPU; use --device cpu or auto")
    backend = cfg.env_backend if cfg.env_backend != "auto" else envs.default_backend(cfg.spec, device)
    # auto: eager everywhere. On a CPU the compile takes longer than a whole run; on an H200 the
    # compiled update was slower per iteration than eager (3.7 vs 2.4 ms, bench/NOTES.md).
    compile_mode = cfg.compile if cfg.compile != "auto" else "none"
    if backend == "numba" and device.type != "cpu":
        raise RunDirError(f"env_backend numba runs on the CPU only, not on {device}; use env_backend torch or auto")
    if compile_mode == "graph" and device.type != "cuda":
        raise RunDirError(f"compile graph captures CUDA graphs and needs a CUDA device, not {device}; use --compile none")
    if compile_mode == "graph" and backend == "gymnasium":
        raise RunDirError("compile graph cannot capture Gymnasium envs (they step on the host); use --compile none")
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
    configs' ``network``). ``on_eval(rows)``: called after each evaluation with one row per agent
    still training (env_step, agent, updates, wall_time_s, eval_mean_return, eval_std_return,
    confirm_mean_return, solved); it returns the agents to stop (they leave the engine like
    solved ones; ``fastdqn sweep`` prunes this way).
    """
    run = Run(cfg, out, resume, population, net, on_eval)
    engine, cfg = run.engine, run.cfg
    run.pause_gc_and_sigint()
    try:
        while engine.host_env_steps < cfg.total_steps and not run.all_done():
            run.check_interrupt()
            updates = engine.step()  # act, step, store, sample, update: every agent, no host sync
            run.count_iteration(updates)
            if run.since_flush == cfg.log_every:
                run.flush()
            if run.eval_due():
                run.evaluate()  # may shed solved agents: a new, smaller engine
                run.save_checkpoint()
                engine = run.engine
    except KeyboardInterrupt:
        run.interrupted = True
    finally:
        run.restore_gc_and_sigint()
    return run.finish()


class Run:
    """One training run's interval work around the engine: metrics flushes, evaluations with
    their confirmations, shedding solved agents, checkpoints and the final outputs."""

    def __init__(self, cfg, out, resume: bool, population: int, net, on_eval):
        self.t_start = time.perf_counter()
        configs = check_population(list(cfg) if isinstance(cfg, (list, tuple)) else population_configs(cfg, population))
        self.configs, self.cfg, self.k = configs, configs[0], len(configs)
        cfg, k = self.cfg, self.k
        ckpt = checkpoint.load(out) if resume else None
        if ckpt is not None:
            check_resumable(configs, ckpt)
        if out is None:  # a fresh directory under runs/, never one that exists
            stem = Path("runs") / time.strftime(f"{cfg.env_id.replace('/', '_')}-%Y%m%d-%H%M%S")
            out = next(p for i in range(1, 10**6)
                       if not (p := stem.with_name(stem.name + (f"-{i}" if i > 1 else ""))).exists())
        device, self.backend, self.compile_mode = resolve_device(cfg)
        self.run_dir = prepare_run_dir(out, resume)
        self.device = device
        set_threads(cfg, k, device)
        (self.run_dir / "config.json").write_text(json.dumps(config_json(configs), indent=2) + "\n")

        # The agents still training are `alive` (agent numbers); the engine's rows are `rows`. With
        # stop_when_solved a solved agent stops (its parameters go to `policies`, [K, P] on the host):
        # it leaves the engine (a smaller one is made), or, where the iteration is captured or
        # compiled for fixed shapes (`mask_solved`), stays in it masked: its parameters no longer change.
        self.agents = [{"agent": i, "seed": c.seed, "solved": False, "solved_at_env_step": None,
                        "updates_at_solve": None, "solved_at_wall_s": None, "stopped": False, "eval_mean_return": None,
                        "eval_std_return": None, "crossing_eval_mean_return": None,
                        **{f: getattr(c, f) for f in PER_AGENT_FIELDS}}
                       for i, c in enumerate(configs)]
        self.evals, self.prior_wall, self.alive = [], 0.0, list(range(k))
        if ckpt is not None:
            self.agents, self.evals = ckpt["agents"], list(ckpt["evals"])
            self.prior_wall, self.alive = float(ckpt["wall_time_s"]), list(ckpt["alive"])
        self.rows = list(ckpt.get("rows", self.alive)) if ckpt is not None else list(self.alive)
        self.mask_solved = self.compile_mode in MASKED_MODES
        engine = Engine([configs[i] for i in self.rows], device=device, backend=self.backend, net=net)
        if ckpt is not None:
            engine.load_state_dict(ckpt["engine"])
        self.engine = self.compiled(engine)
        self.policies = ckpt["policies"].clone() if ckpt is not None else engine.learner.params.cpu().clone()
        self.on_eval = on_eval
        self.freeze = cfg.stop_when_solved
        self.metrics_file = open(self.run_dir / "metrics.csv", "a", newline="")
        self.file_flushed = time.perf_counter()
        self.metrics = csv.writer(self.metrics_file)
        if self.metrics_file.tell() == 0:
            self.metrics.writerow(METRICS_FIELDS)
        self.recent: float | None = None  # latest mean training return over agents
        self.progress = Progress(cfg.total_steps, k, cfg.progress)
        self.next_eval = (engine.host_env_steps // cfg.eval_every + 1) * cfg.eval_every if cfg.eval_every else None
        self.loop_start = time.perf_counter()
        self.since_flush = 0
        self.work = {"env_steps": 0, "updates": 0}  # summed over the agents in the engine, this session
        self.interrupted = False
        self._stop: list[int] = []

    def compiled(self, e: Engine) -> Engine:
        if self.compile_mode == "graph":
            e.capture()
        elif self.compile_mode != "none":
            # static shapes: a smaller engine after agents leave compiles anew rather than symbolically
            e.iteration_fn = torch.compile(e.iteration, mode=self.compile_mode, fullgraph=self.backend == "torch",
                                           dynamic=False)
        return e

    # -- the loop's bookkeeping --------------------------------------------------------------
    def pause_gc_and_sigint(self) -> None:
        """The loop allocates many short-lived tensors and creates no reference cycles: pause the
        cyclic garbage collector while it runs (~5 % of loop time). Ctrl-C only raises a flag,
        read between iterations, so the checkpoint never holds half an iteration."""
        self.gc_was_enabled = gc.isenabled()
        gc.disable()
        self.main_thread = threading.current_thread() is threading.main_thread()
        self.old_handler = signal.signal(signal.SIGINT, lambda *_: self._stop.append(1)) if self.main_thread else None

    def restore_gc_and_sigint(self) -> None:
        if self.gc_was_enabled:
            gc.enable()
        if self.main_thread:
            signal.signal(signal.SIGINT, self.old_handler)

    def check_interrupt(self) -> None:
        if self._stop:
            raise KeyboardInterrupt

    def count_iteration(self, updates: int) -> None:
        """Account one iteration of every agent in the engine (``updates`` per agent)."""
        e = self.engine
        self.work["env_steps"] += e.agents * e.num_envs
        self.work["updates"] += e.agents * updates
        self.since_flush += 1

    def eval_due(self) -> bool:
        """Whether an evaluation is due now (every eval_every env steps, once learning has started)."""
        steps = self.engine.host_env_steps
        if self.next_eval is None or steps < self.next_eval:
            return False
        self.next_eval += self.cfg.eval_every
        return steps >= self.cfg.learning_starts

    def training_rows(self) -> list[tuple[int, int]]:
        """``(engine row, agent)`` of the agents still training (masked rows left out)."""
        alive = set(self.alive)
        return [(row, i) for row, i in enumerate(self.rows) if i in alive]

    def n_solved(self) -> int:
        return sum(a["solved"] for a in self.agents)

    def all_done(self) -> bool:
        """Every agent solved (when solved agents stop) or stopped by on_eval."""
        return all(a["solved"] and self.freeze or a["stopped"] for a in self.agents)

    # -- interval work ---------------------------------------------------------------------------
    def flush(self, final: bool = False) -> None:
        """One metrics row per agent in the engine (episodes finished since the last flush, their
        mean return, epsilon, loss, env steps/s) and a progress-line refresh."""
        engine = self.engine
        if self.since_flush == 0:  # nothing new since the last rows
            if final:
                self.progress.update(engine.host_env_steps, 0.0, self.recent, 0.0, None, self.n_solved(), True)
            return
        self.since_flush = 0
        m = engine.read_metrics()
        steps = engine.host_env_steps
        elapsed = time.perf_counter() - self.loop_start
        sps = self.work["env_steps"] / max(elapsed, 1e-9)
        wall = f"{self.prior_wall + elapsed:.3f}"
        means, eps = [], []
        for row, i in self.training_rows():
            eps.append(m["epsilon"][row])
            count = m["episodes"][row]
            mean = m["return_sum"][row] / count if count else None
            if mean is not None:
                means.append(mean)
            self.metrics.writerow([steps, i, wall, int(count), "" if mean is None else f"{mean:.2f}",
                                   f"{m['epsilon'][row]:.4f}", f"{m['loss'][row]:.5g}", f"{sps:.0f}"])
        if time.perf_counter() - self.file_flushed > 2.0:  # a long run's metrics.csv can be followed (tail -f)
            self.metrics_file.flush()
            self.file_flushed = time.perf_counter()
        if means:
            self.recent = sum(means) / len(means)
        last_eval = [a["eval_mean_return"] for a in self.agents if a["eval_mean_return"] is not None]
        self.progress.update(steps, sps, self.recent, sum(eps) / max(len(eps), 1),
                             sum(last_eval) / len(last_eval) if last_eval else None, self.n_solved(), force=final)

    def evaluate(self) -> None:
        """Greedy evaluation of every agent in the engine; an agent whose mean reaches the threshold
        is confirmed on fresh episodes and solved if the confirmation's mean clears it by
        ``confirm_margin`` standard errors. Solved
        (and stopped) agents then stop with the weights that passed: they leave the engine, or stay
        in it masked where its shapes must not change (``mask_solved``)."""
        engine, threshold = self.engine, self.cfg.solve_threshold
        rets = engine.evaluate().cpu()
        mean, std = rets.mean(1).tolist(), rets.std(1, unbiased=False).tolist()
        training = self.training_rows()
        crossed = {row: threshold is not None and mean[row] >= threshold and not self.agents[i]["solved"]
                   for row, i in training}
        confirm = engine.evaluate(confirm=True).cpu() if any(crossed.values()) else None
        wall = self.prior_wall + time.perf_counter() - self.t_start
        rows = []
        for row, i in training:
            a = self.agents[i]
            r = {"env_step": engine.host_env_steps, "agent": i, "updates": engine.host_updates, "wall_time_s": wall,
                 "eval_mean_return": mean[row], "eval_std_return": std[row], "confirm_mean_return": None,
                 "confirm_std_return": None, "solved": False}
            a["eval_mean_return"], a["eval_std_return"] = mean[row], std[row]
            if crossed[row]:
                c = confirm[row]
                c_mean, c_std = c.mean().item(), c.std(unbiased=False).item()
                r["confirm_mean_return"], r["confirm_std_return"] = c_mean, c_std
                if c_mean - self.cfg.confirm_margin * c_std / math.sqrt(len(c)) >= threshold:
                    # solved: report the confirmation, not the crossing
                    r["solved"] = True
                    a.update(solved=True, solved_at_env_step=engine.host_env_steps, updates_at_solve=engine.host_updates,
                             solved_at_wall_s=wall, crossing_eval_mean_return=mean[row],
                             eval_mean_return=c_mean, eval_std_return=c_std)
            rows.append(r)
        self.evals.extend(rows)
        self.write_evals()  # on disk as they happen: a long run can be watched
        for i in (self.on_eval(rows) if self.on_eval is not None else ()):
            self.agents[i]["stopped"] = True
        still = [i for i in self.alive if not (self.agents[i]["solved"] and self.freeze or self.agents[i]["stopped"])]
        if len(still) < len(self.alive):  # the solved (and the stopped) stop, with the weights that passed
            self.flush()  # their last metrics rows first
            self.policies[self.rows] = engine.learner.params.cpu()
            self.alive = still
            if self.mask_solved:
                engine.set_active([i in still for i in self.rows])
            elif still:
                self.engine = self.compiled(engine.select([self.rows.index(i) for i in still]))
                self.rows = list(still)

    def write_evals(self) -> None:
        tmp = self.run_dir / "evals.csv.tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, EVAL_FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(self.evals)
        tmp.replace(self.run_dir / "evals.csv")

    def save_checkpoint(self) -> None:
        self.flush()  # the metrics on disk match the checkpoint
        self.metrics_file.flush()
        engine = self.engine
        self.policies[self.rows] = engine.learner.params.cpu()
        checkpoint.save({
            "format": checkpoint.FORMAT, "configs": [c.to_dict() for c in self.configs], "engine": engine.state_dict(),
            "alive": self.alive, "rows": self.rows, "policies": self.policies, "agents": self.agents, "evals": self.evals,
            "wall_time_s": self.prior_wall + time.perf_counter() - self.t_start, "net": engine.net_desc,
        }, self.run_dir / checkpoint.CHECKPOINT)

    # -- the end ---------------------------------------------------------------------------------
    def finish(self) -> TrainResult:
        """The final evaluation (unless one just ran), checkpoint, evals.csv, summary.json and plots."""
        engine, cfg, k = self.engine, self.cfg, self.k
        loop_time = time.perf_counter() - self.loop_start
        if not self.interrupted and (not self.evals or self.evals[-1]["env_step"] != engine.host_env_steps):
            self.evaluate()
        self.flush(final=True)
        self.progress.close()
        self.save_checkpoint()
        self.metrics_file.close()
        wall = self.prior_wall + time.perf_counter() - self.t_start
        agents = self.agents
        finals = [a for a in agents if a["eval_mean_return"] is not None]
        solved_all = self.n_solved() == k
        result = TrainResult(
            solved=solved_all,
            solved_at_env_step=max(a["solved_at_env_step"] for a in agents) if solved_all else None,
            env_steps=self.engine.host_env_steps, updates=self.engine.host_updates, wall_time_s=wall,
            eval_mean_return=sum(a["eval_mean_return"] for a in finals) / len(finals) if finals else None,
            eval_std_return=(sum(a["eval_std_return"] for a in finals) / len(finals)) if finals else None,
            env_steps_per_s=self.work["env_steps"] / max(loop_time, 1e-9),
            updates_per_s=self.work["updates"] / max(loop_time, 1e-9),
            interrupted=self.interrupted, run_dir=str(self.run_dir), agents=agents,
        )
        self.write_evals()
        summary = {**asdict(result), "population": k, "agents_solved": self.n_solved(), "device": str(self.device),
                   "env_backend": self.backend, "compile": self.compile_mode, "versions": versions(), "seed": cfg.seed,
                   "env_id": cfg.env_id, "solve_threshold": cfg.solve_threshold,
                   "confirm_episodes": cfg.confirm_episodes, "confirm_margin": cfg.confirm_margin}
        summary["agents"] = summary.pop("agents")  # last: it is the long part
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        from fastdqn.outputs import write_extras

        write_extras(self.run_dir, cfg, k)
        return result


def check_resumable(configs: list[DQNConfig], ckpt: dict) -> None:
    """The configs must be the checkpointed run's, but for RESUMABLE_OVERRIDES."""
    saved = [DQNConfig.from_dict(d) for d in ckpt["configs"]]
    if len(saved) != len(configs):
        raise ConfigError(f"the resumed run has {len(saved)} agents, not {len(configs)}; the population cannot change")
    for a, b in zip(configs, saved):
        changed = [f for f in DQNConfig.__dataclass_fields__ if f not in RESUMABLE_OVERRIDES
                   and getattr(a, f) != getattr(b, f)]
        if changed:
            raise ConfigError(f"{changed[0]} differs from the resumed run's ({getattr(b, changed[0])!r}); only "
                              f"{', '.join(sorted(RESUMABLE_OVERRIDES))} may change when resuming")
