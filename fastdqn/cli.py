"""``fastdqn`` command line: train, eval, play, bench-env.

``fastdqn train`` flags are generated from :class:`fastdqn.config.DQNConfig`: every field is a
``--field`` flag with the field's default and doc string.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """Usage errors (bad choice, bad value, unknown flag, missing argument) as one line on stderr,
    ``fastdqn <command>: error: <message> (see fastdqn <command> --help)``, and exit code 2 --
    not argparse's whole usage block. Subcommand parsers are of this class too (``parser_class``)."""

    commands = None  # the subparsers action, once add_subparsers made one

    def add_subparsers(self, **kwargs):
        self.commands = super().add_subparsers(**kwargs)
        return self.commands

    def parse_args(self, args=None, namespace=None):
        # argparse reports a subcommand's unknown flags from the top-level parser: report them from
        # the subcommand's, so the line names the command whose --help lists its flags.
        namespace, extra = self.parse_known_args(args, namespace)
        if extra:
            command = getattr(namespace, self.commands.dest, None) if self.commands is not None else None
            parser = self.commands.choices.get(command, self) if command is not None else self
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return namespace

    def error(self, message):
        message = " ".join(str(message).splitlines())  # one line, whatever argparse put in it
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _bool(s: str) -> bool:
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def _optional_float(s: str) -> float | None:
    if s.lower() == "none":
        return None
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or none, got {s!r}") from None


def add_config_flags(p: argparse.ArgumentParser) -> None:
    from fastdqn.config import CHOICES, DQNConfig

    defaults = DQNConfig()
    g = p.add_argument_group("config fields (defaults shown are the 'fast' preset's; a --preset changes them)")
    for f in dataclasses.fields(DQNConfig):
        kw = {"default": argparse.SUPPRESS, "help": f"{f.metadata['doc']} (default: {getattr(defaults, f.name)!r})"}
        if f.name in CHOICES:
            kw["choices"] = CHOICES[f.name]
        if f.type == "bool":
            kw.update(type=_bool, metavar="true|false")
        elif f.type == "int":
            kw["type"] = int
        elif f.type == "float":
            kw["type"] = float
        elif f.type == "float | None":
            kw.update(type=_optional_float, metavar="X|none")
        elif f.metadata.get("nargs"):
            kw.update(type=int, nargs=f.metadata["nargs"])
        # --batch_size and --batch-size; --env_id also as --env
        names = dict.fromkeys([f"--{f.name}", f"--{f.name.replace('_', '-')}", *f.metadata.get("alias", "").split()])
        g.add_argument(*names, dest=f.name, **kw)


def build_parser() -> argparse.ArgumentParser:
    from fastdqn.config import DEFAULT_PRESET, PRESETS

    p = _Parser(prog="fastdqn", description="Vectorized DQN on batched envs (CartPole, Acrobot, MountainCar, any Gymnasium id).")
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,eval,play,profile,sweep,bench-env}",
                           parser_class=_Parser)

    t = sub.add_parser("train", help="train an agent (the main job)",
                       description="Train a DQN agent. Writes config.json, metrics.csv, evals.csv, checkpoint.pt, "
                                   "summary.json and learning_curve.png into the run directory.")
    t.add_argument("--preset", help=f"starting config: {', '.join(PRESETS)} (default: the env's tuned preset, "
                   f"{DEFAULT_PRESET} for CartPole and Gymnasium ids)")
    t.add_argument("--config", metavar="FILE", help="starting config from a JSON file (a run's config.json or the "
                   "best.json of `fastdqn sweep`), instead of a preset; flags still override it")
    t.add_argument("--out", help="run directory (default: runs/<env>-<timestamp>); must be new or empty")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its checkpoint; only "
                   "total_steps, eval_every, stop_when_solved, progress, plot and log_every may be changed")
    t.add_argument("--population", type=int, default=None, metavar="K",
                   help="train K agents at once as one batch, agent k with seed SEED+k (default: 1); each stops "
                        "updating once solved and the run ends when all are")
    add_config_flags(t)

    e = sub.add_parser("eval", help="greedy evaluation of a trained agent on Gymnasium's own CartPole")
    e.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    e.add_argument("--episodes", type=int, default=100)
    e.add_argument("--seed", type=int, default=12345, help="reset seed of the first episode (default: 12345)")
    e.add_argument("--agent", type=int, default=0, help="which agent of a population run (default: 0)")
    e.add_argument("--env", "--env_id", dest="env_id", metavar="ID",
                   help="evaluate on this id instead of the run's own env (same observations and actions)")

    pl = sub.add_parser("play", help="render the trained agent balancing into a GIF (no display needed)")
    pl.add_argument("run", metavar="RUN_OR_CHECKPOINT")
    pl.add_argument("--gif", default="play.gif", help="output file (default: play.gif)")
    pl.add_argument("--steps", type=int, default=500, help="at most this many frames (default: 500)")
    pl.add_argument("--seed", type=int, default=0)
    pl.add_argument("--agent", type=int, default=0, help="which agent of a population run (default: 0)")
    pl.add_argument("--env", "--env_id", dest="env_id", metavar="ID",
                    help="play this id instead of the run's own env (same observations and actions)")

    pr = sub.add_parser("profile", help="time each phase of the training iteration (act, env, store, sample, update, ...)",
                        description="Run the training engine for --warmup + --iterations iterations (after the replay "
                                    "has filled to learning_starts) and report per phase the mean, p50 and p95 "
                                    "microseconds per iteration and the share of the iteration. Writes profile.json, "
                                    "profile.png and, in trace mode, trace.json (Perfetto / chrome://tracing).")
    pr.add_argument("--preset", help=f"starting config: {', '.join(PRESETS)} (default: the env's tuned preset, "
                    f"{DEFAULT_PRESET} for CartPole and Gymnasium ids)")
    pr.add_argument("--population", type=int, default=1, metavar="K", help="agents trained as one batch (default: 1)")
    pr.add_argument("--iterations", type=int, default=500, help="measured iterations (default: 500)")
    pr.add_argument("--warmup", type=int, default=50, help="iterations run before measuring (default: 50)")
    pr.add_argument("--mode", choices=["timer", "trace", "both"], default="timer",
                    help="timer: wall clocks per phase (cheap); trace: a torch.profiler trace; both (default: timer)")
    pr.add_argument("--fuse", type=_bool, default=True, metavar="true|false",
                    help="numba env: the fused collect kernel (true, as training runs) or act/env/store/bookkeeping "
                         "as separate tensor phases (false)")
    pr.add_argument("--out", help="output directory (default: runs/profile-<timestamp>); must be new or empty")
    pr.add_argument("--compare", nargs=2, metavar=("A", "B"),
                    help="print two earlier reports (profile.json or their directories) side by side and exit")
    add_config_flags(pr)

    sw = sub.add_parser("sweep", help="hyperparameter search with Optuna, K trials trained as one population",
                        description="Ask an Optuna study for up to --population trials at a time, train them as one "
                                    "population (per-agent hyperparameters; evaluations reported so the pruner can "
                                    "stop an agent), tell each its objective; repeat until the study holds --n-trials "
                                    "trials. Several workers may share one study (SQLite file or any Optuna RDB URL, "
                                    "e.g. postgresql://). Writes best.json (for `fastdqn train --config`), "
                                    "history.png and importance.png into --out.")
    sw.add_argument("--study-name", required=True)
    sw.add_argument("--storage", default="sqlite:///fastdqn-sweep.db", help="Optuna storage URL "
                    "(default: sqlite:///fastdqn-sweep.db in the working directory)")
    sw.add_argument("--create", action="store_true", help="create the study if it does not exist")
    sw.add_argument("--n-trials", type=int, default=64, help="trials in the whole study, all workers together "
                    "(default: 64)")
    sw.add_argument("--population", type=int, default=16, metavar="K", help="trials trained at once, as one "
                    "population of K x seeds-per-trial agents (default: 16)")
    sw.add_argument("--objective", choices=["steps", "wall", "return"], default="steps",
                    help="steps: env steps to solve (budget + 1 if unsolved; default); wall: seconds to solve; "
                         "return: final greedy evaluation return (maximised)")
    sw.add_argument("--space", metavar="FILE", help="search space as JSON or YAML: {field: {type: float|int, low, "
                    "high, log} | {type: categorical, choices: [...]}} over per-agent fields (default: lr, gamma, "
                    "eps_end, eps_decay, target_period, grad_clip)")
    sw.add_argument("--preset", help=f"fixed fields from a preset: {', '.join(PRESETS)} (default: the env's tuned "
                    f"preset, {DEFAULT_PRESET} for CartPole and Gymnasium ids)")
    sw.add_argument("--out", help="directory for rounds and results (default: runs/sweep-<study>)")
    sw.add_argument("--heartbeat", type=float, default=10.0, help="seconds between a worker's heartbeats; a worker "
                    "silent for twice that is taken as dead and its trials are retried (default: 10)")
    sw.add_argument("--pruner", choices=["halving", "median", "none"], default="halving",
                    help="halving: successive halving over env steps, agents of a round compete (default); median: "
                         "Optuna's MedianPruner against completed trials; none")
    sw.add_argument("--seeds-per-trial", type=int, default=1, metavar="S", help="agents (seeds) per trial; its "
                    "value is their mean, so a lucky seed does not win the study (default: 1)")
    sw.add_argument("--report", action="store_true", help="only print and plot the study as it is")
    add_config_flags(sw)

    b = sub.add_parser("bench-env", help="quick env throughput check (full benchmark: bench/env_throughput.py)",
                       description="Random-action env steps per second: step() with fresh outputs, step(out=...) "
                                   "into reused outputs, and rollout(T) (T steps per call, actions drawn inside).")
    b.add_argument("--env", "--env_id", dest="env_id", default="CartPole-v1", metavar="ID",
                   help="a native env id: CartPole-v1, CartPole-v0, Acrobot-v1, MountainCar-v0, MinAtar/<Game>-v0|v1 "
                        "(default: CartPole-v1)")
    b.add_argument("--num-envs", type=int, default=65536)
    b.add_argument("--backend", default="auto", choices=["auto", "numba", "torch"],
                   help="auto (default): numba on the CPU where the env has kernels, else torch")
    b.add_argument("--device", default="cpu", help="torch device (the numba backend runs on the CPU only)")
    b.add_argument("--steps", type=int, default=200, help="timed steps per measurement (default: 200)")
    b.add_argument("--rollout-steps", type=int, default=100, help="T of the rollout measurement (default: 100)")
    return p


def config_overrides(args) -> dict:
    """The config fields given as flags (only those given)."""
    from fastdqn.config import field_names

    overrides = {k: v for k, v in vars(args).items() if k in field_names()}
    if "hidden" in overrides:
        overrides["hidden"] = tuple(overrides["hidden"])
    return overrides


def config_from_file(path):
    """A DQNConfig from a JSON file of config fields (extra keys of a population's config.json,
    ``population`` and ``agents``, are ignored: the file gives one agent's config)."""
    import json
    from pathlib import Path

    from fastdqn.config import DQNConfig

    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"no config file at {path}") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read config file {path}: {type(e).__name__}: {e}") from None
    if not isinstance(d, dict):
        raise ValueError(f"config file {path} must hold a JSON object of config fields")
    d.pop("population", None)
    d.pop("agents", None)
    return DQNConfig.from_dict(d)


def cmd_train(args) -> int:
    from fastdqn.config import preset, preset_for_env
    from fastdqn.train import resume_config, train

    for flag in ("config", "resume", "out", "preset"):
        value = getattr(args, flag)
        if value is not None and not value.strip():
            raise ValueError(f"--{flag} needs a {'name' if flag == 'preset' else 'path'}, got an empty one")
    overrides = config_overrides(args)
    if args.resume:
        if args.out and args.out != args.resume:
            raise ValueError("--out and --resume name different directories; resuming writes into the resumed run")
        if args.preset or args.config is not None or args.population is not None:
            raise ValueError("--preset, --config and --population cannot be combined with --resume: the run keeps "
                             "its own config")
        cfg = resume_config(args.resume, **overrides)
    elif args.config is not None:
        if args.preset:
            raise ValueError("--preset and --config are two starting configs; give one")
        cfg = config_from_file(args.config).replace(**overrides).validate()
    else:
        cfg = preset(args.preset or preset_for_env(overrides.get("env_id", "CartPole-v1"))).replace(**overrides).validate()
    population = 1 if args.population is None else args.population
    result = train(cfg, out=args.resume or args.out, resume=bool(args.resume), population=population)
    ev = "-" if result.eval_mean_return is None else f"{result.eval_mean_return:.1f}"
    k = len(result.agents)
    if k == 1:
        status = "solved" if result.solved else "not solved"
        print(f"{status}: eval mean return {ev} after {result.env_steps:,d} env steps, "
              f"{result.updates:,d} updates, {result.wall_time_s:.2f} s ({result.env_steps_per_s:,.0f} env steps/s) "
              f"-> {result.run_dir}")
    else:
        solved = sum(a["solved"] for a in result.agents)
        print(f"{solved}/{k} agents solved: mean eval return {ev} after {result.env_steps:,d} env steps and "
              f"{result.updates:,d} updates per agent, {result.wall_time_s:.2f} s "
              f"({result.env_steps_per_s:,.0f} env steps/s over all agents) -> {result.run_dir}")
    if result.interrupted:
        print(f"interrupted: checkpoint and summary written; continue with: fastdqn train --resume {result.run_dir}")
        return EXIT_INTERRUPTED
    return 0


def env_for(policy, env_id: str | None) -> str:
    """The env to evaluate or play a policy on: ``env_id`` if given (its observations and actions
    must be the run's), else the run's own."""
    from fastdqn.envs import spec

    if env_id is None:
        return policy.config.env_id
    run, other = spec(policy.config.env_id), spec(env_id)
    if (other.obs_shape, other.n_actions) != (run.obs_shape, run.n_actions):
        raise ValueError(f"{env_id} observes {other.obs_shape} with {other.n_actions} actions; the run trained on "
                         f"{run.id} ({run.obs_shape}, {run.n_actions} actions)")
    return env_id


def cmd_eval(args) -> int:
    import numpy as np

    from fastdqn.checkpoint import load_policy
    from fastdqn.envs import spec
    from fastdqn.evaluate import gymnasium_returns

    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    policy = load_policy(args.run, agent=args.agent)
    env_id = env_for(policy, args.env_id)
    rets = gymnasium_returns(policy, env_id, args.episodes, args.seed)
    where = "the reference package's Gymnasium env" if env_id.startswith("MinAtar/") else "Gymnasium's own env"
    print(f"agent {args.agent}, {spec(env_id).gym_id} ({where}), {args.episodes} episodes: mean return "
          f"{np.mean(rets):.2f} +- {np.std(rets):.2f} (min {np.min(rets):.0f}, max {np.max(rets):.0f})")
    return 0


def cmd_play(args) -> int:
    from fastdqn.checkpoint import load_policy
    from fastdqn.envs import spec
    from fastdqn.render import play_gif

    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    policy = load_policy(args.run, agent=args.agent)
    env_id = env_for(policy, args.env_id)
    frames, ret = play_gif(policy, args.gif, env_id, max_steps=min(args.steps, spec(env_id).max_episode_steps),
                           seed=args.seed)
    print(f"wrote {args.gif}: {frames} frames, episode return {ret:.0f}")
    return 0


def cmd_profile(args) -> int:
    import time
    from pathlib import Path

    from fastdqn.config import preset, preset_for_env
    from fastdqn.engine import population_configs
    from fastdqn.profile import compare, format_table, load_report, run_profile, write_outputs
    from fastdqn.train import prepare_run_dir, resolve_device, set_threads

    if args.compare:
        print(compare(load_report(args.compare[0]), load_report(args.compare[1])))
        return 0
    overrides = config_overrides(args)
    cfg = preset(args.preset or preset_for_env(overrides.get("env_id", "CartPole-v1"))).replace(**overrides).validate()
    configs = population_configs(cfg, args.population)
    if args.iterations < 1 or args.warmup < 0:
        raise ValueError(f"--iterations must be >= 1 and --warmup >= 0; got {args.iterations} and {args.warmup}")
    device, backend, _ = resolve_device(cfg)
    set_threads(cfg, args.population, device)
    out = prepare_run_dir(args.out or time.strftime("runs/profile-%Y%m%d-%H%M%S"), resume=False)
    report = run_profile(configs, device, backend, iterations=args.iterations, warmup=args.warmup, mode=args.mode,
                         out=out, fuse=args.fuse)
    write_outputs(report, Path(out))
    if report["phases"]:
        print(format_table(report))
    if "trace" in report:
        print(f"trace: {Path(out) / report['trace']['file']} (open in https://ui.perfetto.dev)")
    print(f"-> {out}")
    return 0


def cmd_sweep(args) -> int:
    from pathlib import Path

    from fastdqn.config import preset, preset_for_env

    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ValueError("fastdqn sweep needs Optuna: pip install 'fastdqn[sweep]'") from None
    from fastdqn import sweep

    overrides = config_overrides(args)
    cfg = preset(args.preset or preset_for_env(overrides.get("env_id", "CartPole-v1"))).replace(**overrides).validate()
    out = Path(args.out) if args.out else Path("runs") / f"sweep-{args.study_name}"
    if args.report:
        storage = sweep.open_storage(args.storage, args.heartbeat)
        study = sweep.open_study(args.study_name, storage, False, None)
        out.mkdir(parents=True, exist_ok=True)
        print(sweep.format_summary(sweep.report(study, cfg, out)))
        return 0
    space = sweep.load_space(args.space) if args.space else None
    summary = sweep.run_sweep(cfg, study_name=args.study_name, storage_url=args.storage, n_trials=args.n_trials,
                              population=args.population, seed=cfg.seed, space=space, objective=args.objective,
                              create=args.create, out=out, heartbeat=args.heartbeat, pruner=args.pruner,
                              seeds_per_trial=args.seeds_per_trial)
    print(sweep.format_summary(summary))
    return 0


def cmd_bench_env(args) -> int:
    import time

    import torch

    from fastdqn.envs import make, native_ids, spec

    for name in ("steps", "rollout_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    n = args.num_envs
    if not spec(args.env_id).native:
        raise ValueError(f"bench-env measures native envs; {args.env_id} steps through Gymnasium (native: "
                         f"{', '.join(native_ids())})")
    env = make(args.env_id, n, backend=args.backend, device=args.device, seed=0)
    actions = torch.randint(0, env.spec.n_actions, (n,), device=env.device)
    out = env.new_outputs()
    sync = torch.cuda.synchronize if env.device.type == "cuda" else (lambda: None)

    def rate(fn, steps_per_call, calls):
        fn()  # warm-up (first-use compilation, the serial/threaded switch's measurement)
        sync()
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        return steps_per_call * calls / (time.perf_counter() - t) / 1e6

    t_rollout = args.rollout_steps
    rows = [("step", rate(lambda: env.step(actions), n, args.steps)),
            ("step(out=)", rate(lambda: env.step(actions, out=out), n, args.steps)),
            (f"rollout({t_rollout})", rate(lambda: env.rollout(t_rollout), n * t_rollout,
                                            max(1, args.steps // t_rollout)))]
    for label, mps in rows:
        print(f"{args.env_id} {env.backend} {label:14s}: {mps:9.3f} M env steps/s at N={n}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"train": cmd_train, "eval": cmd_eval, "play": cmd_play, "profile": cmd_profile, "sweep": cmd_sweep,
                "bench-env": cmd_bench_env}
    try:
        return handlers[args.command](args)
    except ValueError as e:  # ConfigError, RunDirError, CheckpointError and input errors: one line
        print(f"fastdqn {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
