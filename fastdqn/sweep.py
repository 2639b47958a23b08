"""``fastdqn sweep``: hyperparameter search with Optuna, each round of K trials trained as one population.

A worker asks the study for up to K trials, trains them together (one agent per trial, its
hyperparameters as per-agent fields, seed ``--seed + trial number``), reports every evaluation
as an intermediate value so the study's pruner can stop an agent inside the population (it leaves
the engine), and tells each trial its objective. ``--n-trials`` is study-wide: workers stop asking
once that many trials are complete, pruned or running, so several workers (processes or machines
on one RDB storage) share one study. A worker's running trials carry a heartbeat; a worker that
dies (SIGKILL) leaves them stale, and the next worker marks them failed and re-queues their
parameters (Optuna's retry callback for stale trials). Ctrl-C marks the round's trials failed and
exits 130.

On a SQLite storage the workers take turns through a lock file next to the database,
``<db>.lock`` (``fastdqn-sweep.db.lock`` for the default storage; an ``flock`` on it, so a dead
worker never holds it): one worker at a time opens the study, fails stale trials and takes the
waiting retry copies and new trials, so two workers never take the same trial (SQLite ignores the
``SELECT ... FOR UPDATE`` that guards this on PostgreSQL). The file holds nothing and may be
deleted while no worker runs. Without ``--create`` a SQLite file that does not exist is not
made (the study cannot be in it); a file the opening did make is deleted again if the study could
not be created.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import statistics
import threading
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no lock, as before it
    fcntl = None

from fastdqn.config import DQNConfig
from fastdqn.engine import PER_AGENT_FIELDS

DEFAULT_STORAGE = "sqlite:///fastdqn-sweep.db"
OBJECTIVES = {"steps": "minimize", "wall": "minimize", "return": "maximize"}
# The default search space: per-agent fields only (structural ones come from --preset and flags).
DEFAULT_SPACE = {
    "lr": {"type": "float", "low": 3e-4, "high": 1e-2, "log": True},
    "gamma": {"type": "float", "low": 0.95, "high": 0.999},
    "eps_end": {"type": "float", "low": 0.01, "high": 0.1},
    "eps_decay": {"type": "float", "low": 0.02, "high": 0.2},
    "target_period": {"type": "int", "low": 10, "high": 200, "log": True},
    "grad_clip": {"type": "categorical", "choices": [0.0, 1.0, 10.0]},
}
SEARCHABLE = tuple(f for f in PER_AGENT_FIELDS if f != "seed")


class SweepError(ValueError):
    """Bad sweep input: a one-line message."""


def load_space(path) -> dict:
    """A search space from a JSON or YAML file: ``{field: {"type": "float"|"int", "low", "high",
    "log"?} | {"type": "categorical", "choices": [...]}}``, fields among :data:`SEARCHABLE`."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise SweepError(f"cannot read space file {p}: {e.strerror or type(e).__name__}") from None
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            space = yaml.safe_load(text)
        else:
            space = json.loads(text)
    except Exception as e:  # noqa: BLE001 - json and yaml raise their own kinds
        raise SweepError(f"space file {p} is not valid {p.suffix.lstrip('.') or 'JSON'}: {type(e).__name__}") from None
    return check_space(space, str(p))


def check_space(space, where: str = "space") -> dict:
    if not isinstance(space, dict) or not space:
        raise SweepError(f"{where}: expected a non-empty mapping of field -> distribution")
    for name, d in space.items():
        if name not in SEARCHABLE:
            raise SweepError(f"{where}: {name!r} is not a per-agent field; searchable: {', '.join(SEARCHABLE)}")
        if not isinstance(d, dict) or d.get("type") not in ("float", "int", "categorical"):
            raise SweepError(f"{where}: {name} needs a type of float, int or categorical")
        if d["type"] == "categorical":
            if not isinstance(d.get("choices"), list) or not d["choices"]:
                raise SweepError(f"{where}: {name} (categorical) needs a non-empty list of choices")
        else:
            lo, hi = d.get("low"), d.get("high")
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)) or not lo <= hi:
                raise SweepError(f"{where}: {name} needs numbers low <= high; got {lo!r}, {hi!r}")
            if d.get("log") and lo <= 0:
                raise SweepError(f"{where}: {name} is log-scaled and needs low > 0; got {lo!r}")
    return space


def suggest(trial, space: dict) -> dict:
    params = {}
    for name, d in space.items():
        if d["type"] == "float":
            params[name] = trial.suggest_float(name, d["low"], d["high"], log=bool(d.get("log")))
        elif d["type"] == "int":
            params[name] = trial.suggest_int(name, int(d["low"]), int(d["high"]), log=bool(d.get("log")))
        else:
            params[name] = trial.suggest_categorical(name, d["choices"])
    return params


def quiet_optuna() -> None:
    """Optuna's experimental/deprecation chatter about heartbeats is about our intended use."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for category in (optuna.exceptions.ExperimentalWarning, FutureWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=r"optuna(\..*)?$")
    warnings.filterwarnings("ignore", message=r".*(Heartbeat|heartbeat|RetryFailedTrialCallback|fail_stale_trials).*")


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite storage URL; None for other databases, in-memory SQLite and
    URI file names."""
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except Exception:  # noqa: BLE001 - a malformed URL: opening the storage says so
        return None
    db = u.database
    if not db or db == ":memory:" or db.startswith("file:") or u.query.get("uri"):
        return None
    return Path(db)


class StorageLock:
    """The lock of a SQLite storage: an exclusive ``flock`` on ``<db>.lock`` next to the database,
    held by one worker (process) at a time; released when the ``with`` block ends, by an exception
    too, and by the system when the worker dies. Not re-entrant. A no-op where ``fcntl`` is missing."""

    def __init__(self, db: Path):
        self.path = db.with_name(db.name + ".lock")
        self._fd: int | None = None

    def __enter__(self):
        if fcntl is None:
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                held, current = os.fstat(fd), os.stat(self.path)
            except FileNotFoundError:  # removed (remove()) while we waited: lock the new one
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                self._fd = fd
                return self
            os.close(fd)  # replaced while we waited: lock the file now at the path

    def __exit__(self, *exc):
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock

    def remove(self) -> None:
        """Delete the lock file; call while holding it (a worker waiting for it sees it gone and
        locks a new one)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def storage_lock(url: str):
    """:class:`StorageLock` for a SQLite storage; for any other a no-op (its database locks rows)."""
    db = sqlite_file(url)
    return StorageLock(db) if db is not None else contextlib.nullcontext()


def _discard_new_sqlite(db: Path, lock: StorageLock) -> None:
    """Delete a SQLite file this worker's opening made, and its lock file, unless a study is in it
    after all (another worker's); call holding the lock."""
    if db.exists():
        try:
            con = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True, timeout=10)
            try:
                n = con.execute("SELECT COUNT(*) FROM studies").fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error as e:
            if "no such table" not in str(e):
                return  # cannot tell: keep it
            n = 0
        if n:
            return
        for suffix in ("", "-journal", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{db}{suffix}")
    lock.remove()


def open_storage(url: str, heartbeat: float, create: bool = False):
    """Optuna's RDBStorage for ``url``. A SQLite file that does not exist is only made with
    ``create``: without it, the study cannot be there and opening would leave an empty file."""
    import optuna

    db = sqlite_file(url)
    if db is not None and not create and not db.exists():
        raise SweepError(f"no SQLite storage at {db}, so no study in it; add --create to start one")
    quiet_optuna()
    beats = {"heartbeat_interval": max(1, round(heartbeat)), "grace_period": max(2, round(2 * heartbeat))}
    if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # Optuna >= 4.9
        beats["heartbeat_stale_trial_callback"] = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
    else:
        beats["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(max_retry=3)
    if url.startswith("postgresql://"):  # SQLAlchemy >= 2.1 reads that as psycopg 3; the extra installs psycopg2
        try:
            import psycopg  # noqa: F401
        except ImportError:
            url = "postgresql+psycopg2://" + url[len("postgresql://"):]
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, **beats)
        except Exception as e:  # noqa: BLE001 - SQLAlchemy/driver errors of every kind
            # Workers started together race to create a new storage's tables: the loser retries.
            if attempt == 4 or "Failed to import" in str(e) or "could not connect" in str(e).lower():
                raise SweepError(f"cannot open storage {url}: {type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:200]}") from None
            time.sleep(0.1 * (attempt + 1))


PRUNERS = ("halving", "median", "none")


def make_pruner(kind: str, first_rung: int):
    """``halving``: asynchronous successive halving over env steps (rungs at first_rung * 2**i; at
    each, a trial continues if it is in the better half of the trials that reached it, running
    ones included -- so agents of one population prune each other); ``median``: Optuna's
    MedianPruner (against completed trials only: it acts from the second round on); ``none``."""
    import optuna

    if kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first_rung, reduction_factor=2)
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=8, n_warmup_steps=first_rung)
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise SweepError(f"pruner must be one of {', '.join(PRUNERS)}; got {kind!r}")


def open_study(name: str, storage, create: bool, direction: str | None, pruner=None, seed: int | None = None):
    """The study ``name`` (created with ``create``); its TPE sampler is seeded with ``seed``, so one
    worker's sweep samples the same configs again (give concurrent workers different seeds)."""
    import optuna

    sampler = optuna.samplers.TPESampler(seed=seed)
    if create:
        study = optuna.create_study(study_name=name, storage=storage, direction=direction, load_if_exists=True,
                                    pruner=pruner, sampler=sampler)
    else:
        try:
            study = optuna.load_study(study_name=name, storage=storage, pruner=pruner, sampler=sampler)
        except KeyError:
            raise SweepError(f"no study named {name!r} in this storage; add --create to start it") from None
    if direction is not None and study.direction.name.lower() != direction:
        raise SweepError(f"study {name!r} {study.direction.name.lower()}s its objective; --objective asks to {direction}")
    return study


def open_sweep(url: str, heartbeat: float, name: str, create: bool, direction: str | None, pruner=None,
               seed: int | None = None):
    """``(storage, study)`` for a worker (:func:`open_storage`, :func:`open_study`). On SQLite the
    opening holds the storage lock, and a database file it made is deleted again on any failure
    before the study exists (unless another worker's study is in it)."""
    db = sqlite_file(url)
    if db is None or not (create or db.exists()):  # not SQLite, or refused before any file is made
        storage = open_storage(url, heartbeat, create)
        return storage, open_study(name, storage, create, direction, pruner, seed)
    with StorageLock(db) as lock:
        new = not db.exists()
        try:
            storage = open_storage(url, heartbeat, create)
            return storage, open_study(name, storage, create, direction, pruner, seed)
        except BaseException:
            if new:
                _discard_new_sqlite(db, lock)
            raise


def take_trials(study, n_trials: int, population: int, lock=None) -> list:
    """The hand-over, under ``lock`` (:func:`storage_lock`): fail the stale trials of dead workers
    (their retry copies wait), then ask for up to ``population`` trials -- waiting ones first --
    while the study holds fewer than ``n_trials``. Trials asked before an error end failed."""
    import optuna
    from optuna.trial import TrialState

    with lock if lock is not None else contextlib.nullcontext():
        optuna.storages.fail_stale_trials(study)  # a dead worker's trials: failed, then re-queued
        # Re-queued copies of failed trials wait to be asked (ask() takes them first): they do not
        # take a place of their own.
        free = n_trials - counted(study) + len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        trials = []
        try:
            for _ in range(min(population, free)):
                trials.append(study.ask())
        except BaseException:
            for t in trials:
                with contextlib.suppress(Exception):
                    study.tell(t, state=TrialState.FAIL)
            raise
        return trials


def counted(study) -> int:
    """Trials that count towards --n-trials: complete, pruned, running or waiting (not failed)."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING,
                                                          TrialState.WAITING)))


def objective_value(objective: str, agent: dict, result, budget: int) -> float:
    if objective == "steps":
        return float(agent["solved_at_env_step"] if agent["solved"] else budget + 1)
    if objective == "wall":
        return float(agent["solved_at_wall_s"] if agent["solved"] else result.wall_time_s + 1.0)
    return float(agent["eval_mean_return"] if agent["eval_mean_return"] is not None else 0.0)


class Heartbeat:
    """Records a heartbeat for this worker's running trials every ``interval`` seconds."""

    def __init__(self, storage, interval: float):
        self.storage, self.interval = storage, interval
        self.trial_ids: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def beat(self):
        for tid in list(self.trial_ids):
            try:
                self.storage.record_heartbeat(tid)
            except Exception:  # noqa: BLE001 - a missed beat only risks a retry, never the run
                pass

    def _run(self):
        while not self._stop.wait(self.interval):
            self.beat()


def run_sweep(base: DQNConfig, *, study_name: str, storage_url: str = DEFAULT_STORAGE, n_trials: int,
              population: int, seed: int = 0, space: dict | None = None, objective: str = "steps",
              create: bool = False, out=None, heartbeat: float = 10.0, pruner: str = "halving",
              seeds_per_trial: int = 1, log=print) -> dict:
    """Run rounds until the study holds ``n_trials`` counted trials; returns a summary. Each trial
    trains ``seeds_per_trial`` agents (seeds) and its value is the mean of theirs (the expected
    value: a median let one fast seed and one failure beat three steady solves)."""
    from optuna.trial import TrialState

    from fastdqn.train import train

    if objective not in OBJECTIVES:
        raise SweepError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    s_per = seeds_per_trial
    for name, value in (("n-trials", n_trials), ("population", population), ("seeds-per-trial", s_per)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SweepError(f"--{name} must be an integer >= 1; got {value!r}")
    if not heartbeat > 0:
        raise SweepError(f"--heartbeat must be > 0 seconds; got {heartbeat!r}")
    if population > n_trials:
        raise SweepError(f"--population ({population}) must not exceed --n-trials ({n_trials})")
    space = check_space(space if space is not None else DEFAULT_SPACE)
    base = base.replace(progress=False, plot=False).validate()
    first_rung = max(base.eval_every, base.learning_starts) * 10
    study_pruner = make_pruner(pruner, first_rung)  # before the storage is touched
    storage, study = open_sweep(storage_url, heartbeat, study_name, create, OBJECTIVES[objective], study_pruner, seed)
    lock = storage_lock(storage_url)
    if "base_config" not in study.user_attrs:  # the fixed fields, for --report's best.json
        study.set_user_attr("base_config", base.to_dict())
    out = Path(out) if out is not None else Path("runs") / f"sweep-{study_name}"
    out.mkdir(parents=True, exist_ok=True)
    sign = 1.0 if OBJECTIVES[objective] == "maximize" else -1.0  # intermediate values: eval return, oriented
    t0 = time.perf_counter()
    rounds = 0
    with Heartbeat(storage, heartbeat) as beat:
        while True:
            trials = take_trials(study, n_trials, population, lock)
            if not trials:
                break
            told: set[int] = set()
            try:
                # Another worker may have asked at the same time: trials beyond n_trials go back as failed.
                ranked = sorted(t.number for t in study.get_trials(deepcopy=False, states=(
                    TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)))
                allowed = set(ranked[:n_trials])
                for t in trials:
                    if t.number not in allowed:
                        study.tell(t, state=TrialState.FAIL)
                        told.add(t.number)
                trials = [t for t in trials if t.number in allowed]
                if not trials:
                    break
                beat.trial_ids = [t._trial_id for t in trials]
                beat.beat()  # at once: a worker killed before its first interval is still seen as dead
                params = [suggest(t, space) for t in trials]
                # Trial i is agents i*S .. i*S+S-1 (S = seeds_per_trial), seeds seed + number*S + j.
                configs = [base.replace(seed=seed + t.number * s_per + j, **p)
                           for t, p in zip(trials, params) for j in range(s_per)]
                state = RoundState(trials, s_per, best_steps(study, objective), objective)

                def on_eval(rows, state=state):
                    return state.on_eval(rows, sign)

                rounds += 1
                result = train(configs, out=out / f"round-{rounds:04d}-{time.strftime('%H%M%S')}-{trials[0].number}",
                               on_eval=on_eval)
                if result.interrupted:
                    raise KeyboardInterrupt
                for i, t in enumerate(trials):
                    agents = result.agents[i * s_per:(i + 1) * s_per]
                    t.set_user_attr("seed", agents[0]["seed"])
                    t.set_user_attr("seeds", [a["seed"] for a in agents])
                    t.set_user_attr("solved", all(a["solved"] for a in agents))
                    t.set_user_attr("solved_at_env_step", [a["solved_at_env_step"] for a in agents])
                    if any(a["stopped"] for a in agents):
                        study.tell(t, state=TrialState.PRUNED)
                    else:
                        study.tell(t, statistics.fmean(objective_value(objective, a, result, base.total_steps)
                                                       for a in agents))
                    told.add(t.number)
            except BaseException:  # Ctrl-C or an error: this round's trials end failed, not left running
                for t in trials:
                    if t.number not in told:
                        try:
                            study.tell(t, state=TrialState.FAIL)
                        except Exception:  # noqa: BLE001 - already finished or storage gone: keep the first error
                            pass
                raise
            beat.trial_ids = []
            log(progress_line(study, n_trials, time.perf_counter() - t0))
    summary = report(study, base, out)
    summary.update(rounds=rounds, wall_s=time.perf_counter() - t0)
    return summary


class RoundState:
    """The interval logic of one round: per-trial reports to the pruner and early stops.

    A trial is ``s_per`` agents. After each evaluation every trial still training reports the
    mean eval return of its agents (oriented by ``sign``), then is judged: the pruner may stop it,
    and for the ``steps`` objective so may the bound -- once even the most hopeful completion of
    its agents (each unsolved one solving right now) gives a mean of at least the best trial's
    value, the trial cannot win. Stopping a trial stops all its agents.
    """

    def __init__(self, trials, s_per: int, bound: float, objective: str):
        self.trials, self.s_per, self.objective = trials, s_per, objective
        self.bound = bound
        self.solved_at: dict[int, int] = {}  # agent -> env step it solved at

    def on_eval(self, rows, sign: float) -> list[int]:
        by_trial: dict[int, list] = {}
        for r in rows:
            by_trial.setdefault(r["agent"] // self.s_per, []).append(r)
            if r["solved"]:  # the evaluation reached the threshold and its confirmation did too
                self.solved_at.setdefault(r["agent"], r["env_step"])
        if self.objective == "steps":  # trials whose agents have all solved set the bound
            for i in range(len(self.trials)):
                agents = range(i * self.s_per, (i + 1) * self.s_per)
                if all(a in self.solved_at for a in agents):
                    self.bound = min(self.bound, statistics.fmean(self.solved_at[a] for a in agents))
        for i, rs in by_trial.items():  # every trial reports before any is judged: they compete
            self.trials[i].report(sign * statistics.fmean(r["eval_mean_return"] for r in rs), step=rs[0]["env_step"])
        stop = []
        for i, rs in by_trial.items():
            step = rs[0]["env_step"]
            agents = range(i * self.s_per, (i + 1) * self.s_per)
            hopeful = statistics.fmean(self.solved_at.get(a, step) for a in agents)
            unsolved = [r["agent"] for r in rs if r["agent"] not in self.solved_at]
            if unsolved and (hopeful >= self.bound or self.trials[i].should_prune()):
                stop += unsolved
        return stop


def best_steps(study, objective: str) -> float:
    """For the ``steps`` objective, the fewest env steps any complete trial needed to solve
    (infinity before one did; never a bound for the other objectives)."""
    from optuna.trial import TrialState

    if objective != "steps":
        return float("inf")
    solved = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.user_attrs.get("solved")]
    return min(solved, default=float("inf"))


def progress_line(study, n_trials: int, elapsed: float) -> str:
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    line = f"{len(done):>4d}/{n_trials} trials done ({len(done) - len(complete)} pruned), {elapsed:7.1f} s"
    if complete:
        best = study.best_trial
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
        line += f" | best {best.value:g} (trial {best.number}): {params}"
    return line


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def report(study, base: DQNConfig, out: Path) -> dict:
    """Write best.json (a config ``fastdqn train --config`` accepts: the fixed fields the sweep
    trained with, recorded on the study, plus the best trial's parameters), history.png and
    importance.png into ``out``; return a summary of the study."""
    from optuna.trial import TrialState

    from fastdqn.plot import line_chart, stacked_bar

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    summary = {"study": study.study_name, "direction": study.direction.name.lower(), "complete": len(complete),
               "pruned": len(pruned), "best": None}
    if not complete:
        return summary
    best = study.best_trial
    if "base_config" in study.user_attrs:  # the fixed fields the sweep trained with
        base = DQNConfig.from_dict(study.user_attrs["base_config"])
    cfg = base.replace(**best.params).to_dict()
    (out / "best.json").write_text(json.dumps(cfg, indent=2) + "\n")
    summary["best"] = {"trial": best.number, "value": best.value, "params": best.params,
                       "config": str(out / "best.json")}
    values = [t.value for t in sorted(complete, key=lambda t: t.number)]
    better = max if summary["direction"] == "maximize" else min
    running = [better(values[:i + 1]) for i in range(len(values))]
    xs = list(range(1, len(values) + 1))
    line_chart(out / "history.png", [("trial value", xs, values, (166, 198, 230), 1),
                                     ("best so far", xs, running, (31, 119, 180), 3)],
               title=f"study {study.study_name}: optimization history", xlabel="complete trial", ylabel="objective")
    if len(complete) >= 2 and len({tuple(sorted(t.params.items())) for t in complete}) >= 2:
        try:
            import optuna

            imp = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError):
            imp = {}
        if imp:
            colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                       (227, 119, 194), (127, 127, 127), (188, 189, 34)]
            stacked_bar(out / "importance.png", [(k, v, colours[i % len(colours)]) for i, (k, v) in
                                                 enumerate(imp.items())],
                        title=f"study {study.study_name}: parameter importance (Optuna's default evaluator)", unit="")
            summary["importance"] = imp
    return summary


def format_summary(summary: dict) -> str:
    if summary["best"] is None:
        return f"study {summary['study']}: {summary['complete']} complete, {summary['pruned']} pruned trials; no best yet"
    b = summary["best"]
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in b["params"].items())
    return (f"study {summary['study']}: {summary['complete']} complete, {summary['pruned']} pruned; best "
            f"{b['value']:g} (trial {b['trial']}): {params} -> {b['config']}")
