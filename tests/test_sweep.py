"""``fastdqn sweep``: an Optuna study whose trials are trained K at a time as one population.

References: Optuna's own storage read back with ``optuna.load_study(...).get_trials()`` (states,
params, values, the retry copies Optuna's RetryHeartbeatStaleTrialCallback leaves), studies and
trials made by hand with Optuna's API (enqueued and added trials), hand-written space files, the
initial parameters of ``MLP.init`` for the trial's seed (a network trained with lr 0 must keep
them), and the rounds' run directories (config.json, summary.json, checkpoint.pt) matched to
the trials by seed (``--seed`` + trial number).

Workers that share a study run as separate processes (SQLite, and a real PostgreSQL server when
its binaries are installed; .ci/run installs them); a worker dies by SIGKILL or stops by SIGINT.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

optuna = pytest.importorskip("optuna", reason="fastdqn sweep needs the sweep extra: pip install -e '.[sweep]'")
from optuna.trial import TrialState  # noqa: E402

from fastdqn.cli import main  # noqa: E402
from fastdqn.learner import MLP  # noqa: E402

HIDDEN = (16, 16)
TINY = ["--num_envs", "4", "--batch_size", "32", "--hidden", *map(str, HIDDEN), "--learning_starts", "64",
        "--total_steps", "1500", "--eval_every", "500", "--eval_episodes", "5", "--torch_threads", "1"]
# A round that lasts until its worker is stopped (no agent leaves it, solved or pruned, meanwhile).
LONG = [*TINY, "--total_steps", "100000000", "--stop_when_solved", "false", "--pruner", "none"]
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
LR_SPACE = {"lr": {"type": "categorical", "choices": [0.0, 0.005]}}


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """In-process sweeps set torch's thread count (--torch_threads 1); give the next tests theirs back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


# --- helpers ------------------------------------------------------------------------------------

def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def readable(url: str) -> str:
    """The URL the tests read the storage with: a plain postgresql:// names SQLAlchemy's default
    driver (psycopg 3 since SQLAlchemy 2.1, psycopg2 before); the sweep extra installs psycopg2."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def trials_of(url: str, name: str):
    """The study's trials as Optuna's storage holds them (a plain storage: reads only)."""
    return optuna.load_study(study_name=name, storage=readable(url)).get_trials()


def states(trials) -> Counter:
    return Counter(t.state for t in trials)


def snapshot(url: str) -> dict:
    """Everything a bad command could change: study names and every trial of every study."""
    names = sorted(optuna.get_all_study_names(readable(url)))
    return {n: [(t.number, t.state, t.params, t.values, t.user_attrs, t.system_attrs) for t in trials_of(url, n)]
            for n in names}


def rounds(*outs) -> dict[int, dict]:
    """Every agent trained in the rounds under ``outs``, by seed: its round directory, its index
    in the population, its config.json entry and (once the round ended) its summary.json entry.
    A seed (a trial) trained twice fails here."""
    found = {}
    for out in outs:
        for rd in sorted(Path(out).glob("round-*")):
            config = json.loads((rd / "config.json").read_text())
            summary = json.loads((rd / "summary.json").read_text()) if (rd / "summary.json").exists() else None
            # a round of one trial (the others asked beyond n-trials) writes a one-agent config.json
            for i, c in enumerate(config.get("agents", [config])):
                assert c["seed"] not in found, f"seed {c['seed']} trained twice ({found.get(c['seed'])}, {rd})"
                s = summary["agents"][i] if summary is not None else None
                assert s is None or (s["agent"], s["seed"]) == (i, c["seed"])
                found[c["seed"]] = {"round": rd, "index": i, "config": c, "summary": s}
    return found


def sweep_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "fastdqn.cli", "sweep", *map(str, args)]


def start(*args, cwd) -> subprocess.Popen:
    # A shell without job control starts background jobs with SIGINT ignored, and Python then keeps
    # it ignored: give the worker the default disposition so it sees Ctrl-C as a terminal would.
    return subprocess.Popen(sweep_cmd(*args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"worker still running after {timeout} s:\n{out}\n{err}")
    return proc.returncode, out, err


def wait_for(predicate, what: str, proc: subprocess.Popen | None = None, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"worker exited ({proc.returncode}) while waiting for {what}:\n{proc.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


def running_with_heartbeat(db: Path) -> int:
    """RUNNING trials that have a heartbeat row in Optuna's SQLite schema."""
    if not db.exists():
        return 0
    con = sqlite3.connect(db, timeout=10)
    try:
        return con.execute("SELECT COUNT(*) FROM trials JOIN trial_heartbeats USING (trial_id) "
                           "WHERE trials.state = 'RUNNING'").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet, or locked for a moment
        return 0
    finally:
        con.close()


def stale(url: str, name: str, grace: int = 2) -> set[int]:
    """Trial numbers a worker with --heartbeat 1 (grace period 2 s) takes as stale now, as Optuna
    decides it (read only: nothing is failed here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(readable(url), heartbeat_interval=1, grace_period=grace)
    study = optuna.load_study(study_name=name, storage=storage)
    ids = set(storage._get_stale_trial_ids(study._study_id))
    return {t.number for t in study.get_trials(deepcopy=False) if t._trial_id in ids}


def write_space(path: Path, space) -> Path:
    path.write_text(space if isinstance(space, str) else json.dumps(space))
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastdqn sweep: error: "), err
    assert "Traceback" not in err
    return lines[0]


def two_workers(url: str, name: str, n_trials: int, tmp_path: Path) -> None:
    """Two workers started at once on one new study (--create on both, different --seed, as
    concurrent workers should have). Both exit 0; the study holds exactly n_trials finished
    trials, nothing running or waiting; each finished trial was trained exactly once, by one of
    the workers, with its params."""
    workers = {tmp_path / "a": 0, tmp_path / "b": 1000}  # --out: --seed (agent seed = --seed + trial number)
    procs = [start("--study-name", name, "--storage", url, "--create", "--n-trials", n_trials, "--population", 4,
                   "--seed", seed, "--out", out, "--heartbeat", 1, *TINY, cwd=tmp_path) for out, seed in workers.items()]
    for p in procs:
        rc, _, err = finish(p)
        assert rc == 0, err
        assert "Traceback" not in err
    trials = trials_of(url, name)
    count = states(trials)
    assert count[TrialState.COMPLETE] + count[TrialState.PRUNED] == n_trials, count
    assert count[TrialState.RUNNING] == count[TrialState.WAITING] == 0, count
    finished = {t.number: t for t in trials if t.state in FINISHED}
    trained = {}
    for out, seed in workers.items():
        assert (out / "best.json").exists()  # each worker ends with the study's report
        for agent_seed, agent in rounds(out).items():
            number = agent_seed - seed
            assert number not in trained, f"trial {number} trained by both workers"
            trained[number] = agent
    # A trial told FAIL here was asked beyond n_trials by a worker racing the other: never trained.
    assert set(trained) == set(finished)
    for number, t in finished.items():
        assert {k: trained[number]["config"][k] for k in t.params} == t.params


# --- one sweep, in process: params reach the agents; --report; bad input -------------------------

SEED = 100
N_TRIALS = 8


@pytest.fixture(scope="module")
def lr_sweep(tmp_path_factory):
    """A study made by hand with Optuna (maximise, two trials enqueued: lr 0 and lr 0.005 are
    both certain to be tried), then swept in process over lr in {0, 0.005}, objective return."""
    d = tmp_path_factory.mktemp("sweep")
    url, name = sqlite_url(d / "s.db"), "lr"
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    study.enqueue_trial({"lr": 0.0})
    study.enqueue_trial({"lr": 0.005})
    space = write_space(d / "space.json", LR_SPACE)
    n = torch.get_num_threads()
    rc = main(["sweep", "--study-name", name, "--storage", url, "--n-trials", str(N_TRIALS), "--population", "4",
               "--objective", "return", "--space", str(space), "--out", str(d / "out"), "--seed", str(SEED),
               "--gamma", "0.97", "--pruner", "none", *TINY])
    torch.set_num_threads(n)
    assert rc == 0
    return {"dir": d, "url": url, "name": name, "out": d / "out"}


def test_trial_params_reach_their_agents(lr_sweep):
    trials = trials_of(lr_sweep["url"], lr_sweep["name"])
    assert states(trials) == Counter({TrialState.COMPLETE: N_TRIALS})  # --pruner none
    assert [t.params for t in trials[:2]] == [{"lr": 0.0}, {"lr": 0.005}]  # the enqueued ones, first
    trained = rounds(lr_sweep["out"])
    assert set(trained) == {SEED + t.number for t in trials}  # seed = --seed + trial number, no other agent
    assert len({a["round"] for a in trained.values()}) == N_TRIALS // 4  # K = 4 trials per round
    for t in trials:
        agent = trained[SEED + t.number]
        assert agent["config"]["lr"] == agent["summary"]["lr"] == t.params["lr"]
        assert agent["config"]["gamma"] == agent["summary"]["gamma"] == 0.97  # a flag: every agent
        assert t.value == agent["summary"]["eval_mean_return"]  # objective return: the final greedy evaluation
        assert t.user_attrs["seed"] == SEED + t.number
        assert t.user_attrs["solved"] == agent["summary"]["solved"]


def test_lr_zero_trial_learns_nothing(lr_sweep):
    """The agent of an lr 0 trial ends its round with its initial parameters; lr 0.005 ones do not."""
    trials = trials_of(lr_sweep["url"], lr_sweep["name"])
    trained = rounds(lr_sweep["out"])
    by_lr = Counter()
    for t in trials:
        seed = SEED + t.number
        agent = trained[seed]
        ckpt = torch.load(agent["round"] / "checkpoint.pt", weights_only=True)
        final = ckpt["policies"][agent["index"]]
        initial = MLP(4, 2, HIDDEN).init(torch.Generator().manual_seed(seed))
        assert final.shape == initial.shape
        assert torch.equal(final, initial) == (t.params["lr"] == 0.0), (t.number, t.params)
        by_lr[t.params["lr"]] += 1
    assert by_lr[0.0] >= 1 and by_lr[0.005] >= 1


def test_report_prints_the_best_trial_and_best_json_trains(lr_sweep, tmp_path, capsys):
    url, name = lr_sweep["url"], lr_sweep["name"]
    before = snapshot(url)
    best = optuna.load_study(study_name=name, storage=url).best_trial
    out = tmp_path / "report"
    capsys.readouterr()
    assert main(["sweep", "--study-name", name, "--storage", url, "--report", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert f"{N_TRIALS} complete" in printed and f"(trial {best.number})" in printed, printed
    assert str(out / "best.json") in printed
    cfg = json.loads((out / "best.json").read_text())
    assert cfg["lr"] == best.params["lr"] and cfg["hidden"] == list(HIDDEN)
    assert snapshot(url) == before  # --report only reads the study

    run = tmp_path / "run"
    assert main(["train", "--config", str(out / "best.json"), "--total_steps", "200", "--learning_starts", "100",
                 "--eval_every", "0", "--progress", "false", "--plot", "false", "--out", str(run)]) == 0
    trained = json.loads((run / "config.json").read_text())
    assert trained["lr"] == best.params["lr"] and trained["hidden"] == list(HIDDEN) and trained["total_steps"] == 200


def test_report_without_flags_writes_the_config_the_best_trial_trained_with(lr_sweep, tmp_path):
    url, name = lr_sweep["url"], lr_sweep["name"]
    best = optuna.load_study(study_name=name, storage=url).best_trial
    trained = rounds(lr_sweep["out"])[SEED + best.number]
    round_config = json.loads((trained["round"] / "config.json").read_text())
    out = tmp_path / "report"
    assert main(["sweep", "--study-name", name, "--storage", url, "--report", "--out", str(out)]) == 0
    cfg = json.loads((out / "best.json").read_text())
    for field in ("hidden", "num_envs", "batch_size", "learning_starts", "total_steps", "eval_every", "eval_episodes"):
        assert cfg[field] == round_config[field], field
    for field, value in trained["config"].items():
        if field != "seed":
            assert cfg[field] == value, field  # lr from the trial; gamma 0.97 from the sweep's flags


BAD_SPACES = {
    "invalid JSON": '{"lr": {"type": "float", "low": 0.001,',
    "not a per-agent field": {"hidden": {"type": "categorical", "choices": [[16], [32]]}},
    "low > high": {"lr": {"type": "float", "low": 0.01, "high": 0.001}},
    "log with low 0": {"lr": {"type": "float", "low": 0.0, "high": 0.01, "log": True}},
    "no type": {"lr": {"low": 0.001, "high": 0.01}},
    "empty choices": {"grad_clip": {"type": "categorical", "choices": []}},
}


@pytest.mark.parametrize("case", list(BAD_SPACES))
def test_bad_space_file_is_one_line_and_touches_nothing(case, lr_sweep, tmp_path, capsys):
    url, name = lr_sweep["url"], lr_sweep["name"]
    before = snapshot(url)
    space = write_space(tmp_path / "space.json", BAD_SPACES[case])
    out = tmp_path / "out"
    # --create on the existing study: had the space been read too late, the study would gain trials
    rc = main(["sweep", "--study-name", name, "--storage", url, "--create", "--n-trials", "12", "--population", "4",
               "--objective", "return", "--space", str(space), "--out", str(out), *TINY])
    assert rc == 2
    assert str(space) in one_line_error(capsys)
    assert snapshot(url) == before
    assert not out.exists()


def test_bad_input_is_one_line_and_touches_nothing(lr_sweep, tmp_path, capsys):
    url, name = lr_sweep["url"], lr_sweep["name"]
    before = snapshot(url)
    out = tmp_path / "out"
    common = ["--n-trials", "12", "--population", "4", "--objective", "return", "--out", str(out), *TINY]
    cases = {
        "unknown study": (["--study-name", "nope", "--storage", url, *common], "--create"),
        "unknown study, --report": (["--study-name", "nope", "--storage", url, "--report", "--out", str(out)],
                                    "--create"),
        "unreachable storage": (["--study-name", name, "--storage", "postgresql://postgres@127.0.0.1:1/x", *common],
                                "cannot open storage"),
        "population > n-trials": (["--study-name", name, "--storage", url, "--create", *common, "--n-trials", "3"],
                                  "--population (4) must not exceed --n-trials (3)"),
        "n-trials 0": (["--study-name", name, "--storage", url, "--create", *common, "--n-trials", "0",
                        "--population", "1"], "--n-trials"),
        "objective against the study's direction": (["--study-name", name, "--storage", url, "--create", *common,
                                                     "--objective", "steps"], "maximizes"),
        "missing space file": (["--study-name", name, "--storage", url, "--create", *common, "--space",
                                str(tmp_path / "none.json")], "cannot read space file"),
    }
    for case, (args, says) in cases.items():
        capsys.readouterr()
        assert main(["sweep", *args]) == 2, case
        line = one_line_error(capsys)
        assert says in line, (case, line)
        assert snapshot(url) == before, case
        assert not out.exists(), case


@pytest.mark.parametrize("report", [False, True])
def test_unknown_study_on_a_new_sqlite_path_leaves_no_file(report, tmp_path, capsys):
    db = tmp_path / "new.db"
    out = tmp_path / "out"
    args = ["--report"] if report else ["--n-trials", "4", "--population", "2", *TINY]
    assert main(["sweep", "--study-name", "nope", "--storage", sqlite_url(db), "--out", str(out), *args]) == 2
    assert "--create" in one_line_error(capsys)
    assert sorted(tmp_path.iterdir()) == []  # no database, no lock file, no --out


@pytest.mark.parametrize("others_study", [False, True])
def test_failure_before_the_study_exists_deletes_the_new_sqlite_file(others_study, tmp_path, monkeypatch):
    """--create on a new SQLite file, and creating the study fails: the file the opening made goes
    again -- unless another worker's study is in it by then, which stays as it was."""
    db = tmp_path / "new.db"
    url = sqlite_url(db)
    create_study = optuna.create_study

    def failing_create_study(*args, **kwargs):
        if others_study:
            create_study(study_name="other", storage=url, direction="minimize")
        raise RuntimeError("the storage failed")

    monkeypatch.setattr(optuna, "create_study", failing_create_study)
    with pytest.raises(RuntimeError, match="the storage failed"):
        main(["sweep", "--study-name", "mine", "--storage", url, "--create", "--n-trials", "4", "--population", "2",
              "--out", str(tmp_path / "out"), *TINY])
    monkeypatch.undo()
    if others_study:
        assert optuna.get_all_study_names(url) == ["other"]
    else:
        assert sorted(tmp_path.iterdir()) == []


def test_sqlite_sweep_keeps_its_lock_file_next_to_the_database(lr_sweep):
    lock = lr_sweep["dir"] / "s.db.lock"
    assert lock.is_file() and lock.stat().st_size == 0


def test_waiting_retry_copy_is_run_before_the_worker_stops(tmp_path):
    """What a dead worker leaves once its trial was failed: a FAIL trial and its WAITING copy (as
    RetryHeartbeatStaleTrialCallback makes it). With the study one trial short of n-trials, the
    next worker must run the copy, not stop."""
    url, name = sqlite_url(tmp_path / "s.db"), "retry"
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    dist = {"lr": optuna.distributions.CategoricalDistribution([0.0, 0.005])}
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(params={"lr": 0.005}, distributions=dist, value=10.0))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, params={"lr": 0.0}, distributions=dist))
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, params={"lr": 0.0}, distributions=dist,
                                              system_attrs={"failed_trial": 3, "retry_history": [3]}))
    space = write_space(tmp_path / "space.json", LR_SPACE)
    assert main(["sweep", "--study-name", name, "--storage", url, "--n-trials", "4", "--population", "4",
                 "--objective", "return", "--space", str(space), "--out", str(tmp_path / "out"), *TINY]) == 0
    trials = trials_of(url, name)
    assert states(trials) == Counter({TrialState.COMPLETE: 4, TrialState.FAIL: 1})
    assert trials[4].params == {"lr": 0.0} and trials[4].state == TrialState.COMPLETE


# --- the SQLite storage lock: one worker at a time takes trials -----------------------------------

def other_process_can_lock(path: Path) -> bool:
    """Whether another process could take an exclusive flock on ``path`` right now (without waiting)."""
    code = ("import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n    sys.exit(3)\n")
    rc = subprocess.run([sys.executable, "-c", code, str(path)], timeout=60).returncode
    assert rc in (0, 3), rc
    return rc == 0


def test_storage_lock_excludes_other_processes_and_is_released_on_error(tmp_path):
    from fastdqn.sweep import StorageLock, storage_lock

    db = tmp_path / "s.db"
    lock = storage_lock(sqlite_url(db))
    assert isinstance(lock, StorageLock) and lock.path == tmp_path / "s.db.lock"
    with pytest.raises(RuntimeError):
        with lock:
            assert not other_process_can_lock(lock.path)
            raise RuntimeError
    assert other_process_can_lock(lock.path)  # released by the error
    with lock:  # and taken again
        assert not other_process_can_lock(lock.path)
    assert other_process_can_lock(lock.path)
    assert not db.exists()  # the lock never touches the database


def test_storage_lock_second_holder_waits_for_the_first(tmp_path):
    """A second holder takes the lock only once the first released it, also when the first
    removed the lock file meanwhile (then the second holds the new file at the path)."""
    from fastdqn.sweep import StorageLock

    db = tmp_path / "s.db"
    first, events = StorageLock(db), []
    second_waits, second_holds, second_may_go = threading.Event(), threading.Event(), threading.Event()

    def second():
        second_waits.set()
        with StorageLock(db):
            events.append("second holds")
            second_holds.set()
            assert second_may_go.wait(60)

    with first:
        worker = threading.Thread(target=second)
        worker.start()
        assert second_waits.wait(60)
        assert not second_holds.is_set()
        first.remove()
        events.append("first releases")
    assert second_holds.wait(60)
    assert events == ["first releases", "second holds"]
    assert not other_process_can_lock(first.path)  # the second holds the file now at the path
    second_may_go.set()
    worker.join(60)
    assert other_process_can_lock(first.path)


def test_two_workers_taking_waiting_trials_at_once_never_take_the_same(tmp_path, monkeypatch):
    """Four re-queued (WAITING) retry copies, two workers each taking two at the same moment. On
    SQLite, Optuna checks the copy is still WAITING and then sets it RUNNING in two statements; the
    test holds every such check until the other worker has made it too (for at most 2 s), which
    without the storage lock hands both workers the same copies. With it, each takes two others."""
    from optuna.storages._rdb import models

    from fastdqn.sweep import open_storage, storage_lock, take_trials

    url, name = sqlite_url(tmp_path / "s.db"), "handover"
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    dist = {"lr": optuna.distributions.CategoricalDistribution([0.0, 0.005])}
    for _ in range(4):
        study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, params={"lr": 0.0}, distributions=dist))
    for i in range(4):
        study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, params={"lr": 0.0}, distributions=dist,
                                                  system_attrs={"failed_trial": i, "retry_history": [i]}))
    waiting = [t.number for t in study.get_trials(states=(TrialState.WAITING,))]

    both_checked = threading.Barrier(2)
    find = models.TrialModel.find_or_raise_by_id

    def find_and_wait(cls, trial_id, session, for_update=False):
        trial = find(trial_id, session, for_update)
        if for_update and trial.state == TrialState.WAITING:  # the check before taking a waiting trial
            try:
                both_checked.wait(timeout=2)
            except threading.BrokenBarrierError:  # the other worker is not checking (it waits for the lock)
                pass
        return trial

    monkeypatch.setattr(models.TrialModel, "find_or_raise_by_id", classmethod(find_and_wait))

    def worker(_):
        study = optuna.load_study(study_name=name, storage=open_storage(url, 1.0))
        return [t.number for t in take_trials(study, n_trials=4, population=2, lock=storage_lock(url))]

    with ThreadPoolExecutor(2) as pool:
        taken = list(pool.map(worker, range(2)))
    monkeypatch.undo()
    assert [len(t) for t in taken] == [2, 2]
    assert sorted(taken[0] + taken[1]) == waiting, taken  # no copy taken twice
    assert {t.number for t in trials_of(url, name) if t.state == TrialState.RUNNING} == set(waiting)


# --- several workers, separate processes ---------------------------------------------------------

def test_two_workers_on_one_sqlite_study_finish_exactly_n_trials(tmp_path):
    two_workers(sqlite_url(tmp_path / "s.db"), "two", 12, tmp_path)


@pytest.mark.slow
def test_sigkilled_workers_trials_are_failed_and_retried(tmp_path):
    """Worker A dies mid-round (SIGKILL) with its trials RUNNING; once they are stale, worker B
    fails them, runs their retry copies (same params) and completes the study."""
    db = tmp_path / "s.db"
    url, name, n, seed = sqlite_url(db), "kill", 8, 100
    a = start("--study-name", name, "--storage", url, "--create", "--n-trials", n, "--population", 4, "--seed", seed,
              "--out", tmp_path / "a", "--heartbeat", 1, *LONG, cwd=tmp_path)
    try:
        wait_for(lambda: list((tmp_path / "a").glob("round-*/checkpoint.pt")), "A's first evaluation", a)
        wait_for(lambda: running_with_heartbeat(db) == 4, "heartbeats of A's 4 trials", a)
    finally:
        a.kill()  # SIGKILL
        a.wait()
    assert a.returncode == -signal.SIGKILL
    killed = {t.number: t for t in trials_of(url, name) if t.state == TrialState.RUNNING}
    assert sorted(killed) == [0, 1, 2, 3]
    wait_for(lambda: stale(url, name) == set(killed), "A's trials to go stale", timeout=30)

    rc, out, err = finish(start("--study-name", name, "--storage", url, "--n-trials", n, "--population", 4,
                                "--seed", seed, "--out", tmp_path / "b", "--heartbeat", 1, *TINY, cwd=tmp_path))
    assert rc == 0, err
    trials = trials_of(url, name)
    count = states(trials)
    assert count[TrialState.COMPLETE] + count[TrialState.PRUNED] == n, count
    assert count[TrialState.RUNNING] == count[TrialState.WAITING] == 0, count
    assert {t.number for t in trials if t.state == TrialState.FAIL} == set(killed)
    copies = {t.system_attrs.get("failed_trial"): t for t in trials if t.system_attrs.get("failed_trial") is not None}
    assert set(copies) == set(killed)  # each failed trial retried once
    trained_a, trained_b = rounds(tmp_path / "a"), rounds(tmp_path / "b")
    for number, dead in killed.items():
        copy = copies[number]
        assert copy.state in FINISHED and copy.params == dead.params
        assert {k: trained_a[seed + number]["config"][k] for k in dead.params} == dead.params  # what A was training
        assert {k: trained_b[seed + copy.number]["config"][k] for k in copy.params} == copy.params
    assert set(trained_b) == {seed + t.number for t in trials if t.state in FINISHED}


@pytest.mark.slow
def test_worker_killed_before_its_first_heartbeat_is_retried(tmp_path):
    url, name = sqlite_url(tmp_path / "s.db"), "early"
    a = start("--study-name", name, "--storage", url, "--create", "--n-trials", 4, "--population", 4,
              "--out", tmp_path / "a", "--heartbeat", 30, *LONG, cwd=tmp_path)
    try:
        wait_for(lambda: list((tmp_path / "a").glob("round-*/config.json")), "A's round to start", a)
    finally:
        a.kill()
        a.wait()
    running = {t.number for t in trials_of(url, name) if t.state == TrialState.RUNNING}
    assert running == {0, 1, 2, 3}
    # A later worker (grace period 2 s) must take them as stale; give Optuna's clock margin.
    deadline = time.monotonic() + 6
    while stale(url, name) != running and time.monotonic() < deadline:
        time.sleep(0.2)
    rc, out, err = finish(start("--study-name", name, "--storage", url, "--n-trials", 4, "--population", 4,
                                "--out", tmp_path / "b", "--heartbeat", 1, *TINY, cwd=tmp_path))
    assert rc == 0, err
    count = states(trials_of(url, name))
    assert count[TrialState.COMPLETE] + count[TrialState.PRUNED] == 4 and count[TrialState.RUNNING] == 0, count


@pytest.mark.slow
def test_ctrl_c_fails_the_rounds_trials_and_exits_130(tmp_path):
    url, name, seed = sqlite_url(tmp_path / "s.db"), "int", 100
    p = start("--study-name", name, "--storage", url, "--create", "--n-trials", 8, "--population", 4, "--seed", seed,
              "--out", tmp_path / "a", "--heartbeat", 1, *LONG, cwd=tmp_path)
    wait_for(lambda: list((tmp_path / "a").glob("round-*/checkpoint.pt")), "the round's first evaluation", p)
    p.send_signal(signal.SIGINT)
    rc, out, err = finish(p)
    assert rc == 130, err
    assert "Traceback" not in err and "interrupted" in err
    trials = trials_of(url, name)
    assert states(trials) == Counter({TrialState.FAIL: 4}), states(trials)
    trained = rounds(tmp_path / "a")
    assert set(trained) == {seed + t.number for t in trials}
    assert all(a["summary"] is not None for a in trained.values())  # the round wrote its summary


# --- a real PostgreSQL server ---------------------------------------------------------------------

def postgres_bin() -> Path | None:
    dirs = []
    if found := shutil.which("initdb"):
        dirs.append(Path(found).resolve().parent)
    dirs += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name, reverse=True)
    for d in dirs:
        if all(os.access(d / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def as_server_user() -> tuple[list[str] | None, str | None]:
    """How to run the server's commands: initdb and postgres refuse to run as root, so as root they
    run as the ``postgres`` user (Debian's package makes it) or ``nobody``."""
    if os.geteuid() != 0:
        return [], None
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        if shutil.which("runuser"):
            return ["runuser", "-u", user, "--"], user
        if shutil.which("su"):
            return ["su", user, "-s", "/bin/sh", "-c"], user
    return None, None


@pytest.fixture
def postgres_url():
    """A throw-away PostgreSQL server on a free loopback port (trust auth), database ``sweep``."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in "
                    "/usr/lib/postgresql/*/bin; install Debian's postgresql package (.ci/run does)")
    prefix, user = as_server_user()
    if prefix is None:
        pytest.skip("running as root and no postgres/nobody user with runuser or su to run initdb as")
    psycopg2 = pytest.importorskip("psycopg2", reason="the postgresql:// storage needs psycopg2 (the sweep extra)")

    def run(*cmd):
        argv = [str(c) for c in cmd]
        if prefix and prefix[0] == "su":
            argv = [*prefix, shlex.join(argv)]
        else:
            argv = [*prefix, *argv]
        p = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            log = (tmp / "server.log").read_text() if (tmp / "server.log").exists() else ""
            pytest.fail(f"{' '.join(argv)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}\n{log}")
        return p

    tmp = Path(tempfile.mkdtemp(prefix="fastdqn-pg-"))  # not under pytest's root-only tmp dir
    if user is not None:
        shutil.chown(tmp, user)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp / "data"
    started = False
    try:
        run(bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-locale", "-E", "UTF8")
        run(bindir / "pg_ctl", "-D", data, "-l", tmp / "server.log", "-w", "-t", "60", "-o",
            f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1", "start")
        started = True
        con = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute("CREATE DATABASE sweep")
        con.close()
        yield f"postgresql://postgres@127.0.0.1:{port}/sweep"
    finally:
        if started:
            run(bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_on_one_postgresql_study_finish_exactly_n_trials(postgres_url, tmp_path):
    two_workers(postgres_url, "pg", 8, tmp_path)


class _FakeTrial:
    """Stands in for an Optuna trial: records reports, answers should_prune as told."""

    def __init__(self, prune=False):
        self.reports, self.prune, self.asked = [], prune, 0

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        self.asked += 1
        return self.prune


def _row(agent, step, ret, solved=None):
    """An evaluation row as train() gives on_eval; ``solved``: whether the confirmation on fresh
    episodes passed too (default: the evaluation reached 475 and was confirmed)."""
    return {"agent": agent, "env_step": step, "eval_mean_return": ret, "solved": ret >= 475.0 if solved is None else solved}


def test_round_state_reports_trial_means_and_stops_what_cannot_win():
    """Two trials of two seeds each (agents 0-1, 2-3), steps objective, threshold 475, best so far
    30000 steps. Hand-worked: trial 0 reports the mean of its agents' returns (oriented: -x); at
    step 20000 agent 0 solves, so trial 0's most hopeful mean is (20000 + 20000) / 2 = 20000 < 30000
    and it continues; at step 40000 trial 1 (no solve yet) has a hopeful mean of 40000 >= 30000,
    so both its agents stop without asking the pruner; a solved agent is never stopped."""
    from fastdqn.sweep import RoundState

    t0, t1 = _FakeTrial(), _FakeTrial()
    state = RoundState([t0, t1], 2, 30000.0, "steps")
    stop = state.on_eval([_row(0, 20000, 500.0), _row(1, 20000, 100.0), _row(2, 20000, 50.0), _row(3, 20000, 70.0)],
                         sign=-1.0)
    assert stop == []
    assert t0.reports == [(20000, -300.0)] and t1.reports == [(20000, -60.0)]
    asked = t1.asked  # the pruner was consulted at 20000 (below the bound)
    stop = state.on_eval([_row(1, 40000, 200.0), _row(2, 40000, 90.0), _row(3, 40000, 80.0)], sign=-1.0)
    # trial 0: agent 0 solved at 20000, agent 1 unsolved at 40000 -> hopeful mean 30000 >= 30000: stop agent 1
    assert sorted(stop) == [1, 2, 3]
    assert asked == 1 and t1.asked == asked  # at 40000 the bound decided; the pruner was not asked


def test_round_state_bound_tightens_when_a_trial_finishes_and_pruner_decides_otherwise():
    from fastdqn.sweep import RoundState

    t0, t1 = _FakeTrial(), _FakeTrial(prune=True)
    state = RoundState([t0, t1], 1, float("inf"), "steps")
    assert state.on_eval([_row(0, 10000, 480.0), _row(1, 10000, 10.0)], sign=-1.0) == [1]  # pruner says so
    assert state.bound == 10000  # trial 0 solved with all its agents: the new bound
    t3, t4 = _FakeTrial(), _FakeTrial()
    unconfirmed = RoundState([t3, t4], 1, float("inf"), "steps")
    unconfirmed.on_eval([_row(0, 10000, 480.0, solved=False), _row(1, 10000, 10.0)], sign=-1.0)
    assert unconfirmed.bound == float("inf") and unconfirmed.solved_at == {}  # a crossing not confirmed is no solve
    t2 = _FakeTrial()
    other = RoundState([t2], 1, float("inf"), "return")  # no bound for other objectives
    assert other.on_eval([_row(0, 10**6, 10.0)], sign=1.0) == [] and t2.reports == [(10**6, 10.0)]
