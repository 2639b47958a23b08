"""The training loop end to end for one agent: epsilon schedules, run-directory outputs,
checkpoint/resume, ``load_policy``, ``fastdqn play``/``eval`` and two learning tests (marked slow;
they still run in CI). Population behaviour is in test_population.py.

References: epsilon from its formula; the replay buffer saved in the checkpoint is the record of
every transition the loop stored -- it is checked against Gymnasium's own CartPole physics, and
the episodes rebuilt from it by hand are compared with metrics.csv; the policy is compared with a
Q-network evaluated by hand from the raw checkpoint parameters; learning is judged on
Gymnasium's own CartPole.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal

import numpy as np
import pytest
import torch
from reference import mlp_from_flat_row
from run_reference import (
    ACTION,
    NEXT_OBS,
    OBS,
    REWARD,
    TERMINATED,
    TRUNCATED,
    check_metrics_rows_against_episodes,
    episodes_from_replay,
    expected_updates,
    linear_epsilon,
    read_csv,
)

import fastdqn
from fastdqn import checkpoint
from fastdqn.checkpoint import CheckpointError, load_policy
from fastdqn.cli import main
from fastdqn.config import preset
from fastdqn.engine import Engine
from fastdqn.evaluate import gymnasium_returns
from fastdqn.train import resume_config, train

X_THRESHOLD = 2.4
THETA_THRESHOLD = 12 * 2 * math.pi / 360
EPS_TOL = dict(rel=1e-6, abs=1e-7)  # epsilon is computed in float32 on the device


# --- epsilon schedules (Engine.epsilon, from the env-step counter) ------------------------------
def epsilons(configs, step):
    """Each agent's epsilon [K] when the engine's env-step counter reads ``step``."""
    engine = Engine(configs if isinstance(configs, list) else [configs], device="cpu", backend="torch")
    engine.env_steps.fill_(step)
    eps = engine.epsilon()
    assert eps.shape == (len(engine.configs), 1)
    return eps[:, 0].tolist()


def epsilon(cfg, step):
    return epsilons(cfg, step)[0]


@pytest.mark.parametrize("step", [0, 1, 100, 5_000, 10_000, 46_052, 200_000])
def test_epsilon_exp_notebook(step):
    cfg = preset("notebook")
    assert epsilon(cfg, step) == pytest.approx(0.01 + 0.99 * math.exp(-1e-4 * step), **EPS_TOL)


def test_epsilon_exp_hand_values():
    cfg = preset("notebook")
    assert epsilon(cfg, 0) == pytest.approx(1.0, **EPS_TOL)
    assert epsilon(cfg, 10_000) == pytest.approx(0.374200646759, **EPS_TOL)  # 0.01 + 0.99 / e
    assert epsilon(cfg, 1_000_000) == pytest.approx(0.01, **EPS_TOL)


def test_epsilon_linear():
    cfg = preset("fast").replace(eps_schedule="linear", eps_start=1.0, eps_end=0.05, eps_decay=0.5, total_steps=1000)
    # decays over eps_decay * total_steps = 500 env steps, then holds eps_end
    assert epsilon(cfg, 0) == pytest.approx(1.0, **EPS_TOL)
    assert epsilon(cfg, 250) == pytest.approx(0.525, **EPS_TOL)  # midpoint
    assert epsilon(cfg, 100) == pytest.approx(1.0 - 0.95 * 0.2, **EPS_TOL)
    assert epsilon(cfg, 500) == pytest.approx(0.05, **EPS_TOL)
    assert epsilon(cfg, 501) == pytest.approx(0.05, **EPS_TOL)
    assert epsilon(cfg, 1000) == pytest.approx(0.05, **EPS_TOL)
    assert epsilon(cfg, 10**7) == pytest.approx(0.05, **EPS_TOL)


def test_epsilon_linear_cleanrl_preset():
    cfg = preset("cleanrl")  # start_e 1 -> end_e 0.05 over half of 500000 steps
    assert epsilon(cfg, 0) == pytest.approx(1.0, **EPS_TOL)
    assert epsilon(cfg, 125_000) == pytest.approx(0.525, **EPS_TOL)
    assert epsilon(cfg, 250_000) == pytest.approx(0.05, **EPS_TOL)
    assert epsilon(cfg, 400_000) == pytest.approx(0.05, **EPS_TOL)


def test_epsilon_linear_zero_decay_is_end_immediately():
    cfg = preset("fast").replace(eps_schedule="linear", eps_start=1.0, eps_end=0.1, eps_decay=0.0)
    assert epsilon(cfg, 0) == pytest.approx(0.1, **EPS_TOL)
    assert epsilon(cfg, 1) == pytest.approx(0.1, **EPS_TOL)
    assert epsilon(cfg, 50_000) == pytest.approx(0.1, **EPS_TOL)


def test_epsilon_per_agent():
    """Each agent of a population follows its own eps_start/eps_end/eps_decay."""
    base = preset("fast").replace(eps_schedule="linear", total_steps=1000, num_envs=2, buffer_size=100,
                                  batch_size=8, eval_episodes=2, hidden=(8,))
    cfgs = [base.replace(seed=0, eps_start=1.0, eps_end=0.05, eps_decay=0.5),
            base.replace(seed=1, eps_start=0.5, eps_end=0.1, eps_decay=0.2),
            base.replace(seed=2, eps_start=0.9, eps_end=0.0, eps_decay=0.0)]
    for step in [0, 100, 150, 200, 499, 500, 10_000]:
        got = epsilons(cfgs, step)
        want = [linear_epsilon(c.eps_start, c.eps_end, c.eps_decay * c.total_steps, step) for c in cfgs]
        assert got == pytest.approx(want, **EPS_TOL), step
    exp = [c.replace(eps_schedule="exp", eps_decay=d) for c, d in zip(cfgs, [1e-3, 1e-2, 0.0])]
    for step in [0, 10, 1000]:
        want = [c.eps_end + (c.eps_start - c.eps_end) * math.exp(-c.eps_decay * step) for c in exp]
        assert epsilons(exp, step) == pytest.approx(want, **EPS_TOL), step


@pytest.mark.parametrize("eps_decay", [0.5, 2.0])  # the decay has ended / is still running when the run stops
def test_resume_does_not_restretch_linear_epsilon(tmp_path, eps_decay):
    """The linear schedule spans eps_decay * total_steps of the run as it began: resuming with a
    larger budget continues that schedule (the metrics' epsilon column says so)."""
    first_total, resumed_total = 1000, 3000
    cfg = preset("fast").replace(num_envs=4, hidden=(16, 16), total_steps=first_total, learning_starts=200,
                                 batch_size=32, eval_every=0, eval_episodes=2, stop_when_solved=False, log_every=10,
                                 eps_schedule="linear", eps_start=1.0, eps_end=0.05, eps_decay=eps_decay,
                                 progress=False, plot=False, buffer_size=4000)
    out = tmp_path / "r"
    train(cfg, out=out)
    train(resume_config(out, total_steps=resumed_total), out=out, resume=True)
    rows = read_csv(out / "metrics.csv")
    span = eps_decay * first_total
    resumed_rows = [r for r in rows if int(r["env_step"]) > first_total]
    assert len(resumed_rows) >= 10 and int(rows[-1]["env_step"]) == resumed_total
    for r in rows:
        s = int(r["env_step"])
        assert float(r["epsilon"]) == pytest.approx(linear_epsilon(1.0, 0.05, span, s), abs=5e-5 + 1e-7), r
    # a re-stretched schedule (span eps_decay * 3000) would have differed on the resumed rows
    stretched = eps_decay * resumed_total
    assert max(abs(linear_epsilon(1.0, 0.05, stretched, int(r["env_step"]))
                   - linear_epsilon(1.0, 0.05, span, int(r["env_step"]))) for r in resumed_rows) > 0.1


# --- a tiny training run, shared by the run-directory tests ---------------------------------------
TINY = dict(total_steps=3000, learning_starts=500, eval_every=1000, eval_episodes=10, stop_when_solved=False,
            progress=False, plot=False, buffer_size=10_000, seed=0)  # buffer holds every transition of both runs

SUMMARY_KEYS = {"solved", "solved_at_env_step", "wall_time_s", "env_steps", "updates", "eval_mean_return",
                "eval_std_return", "env_steps_per_s", "updates_per_s", "device", "versions", "seed", "interrupted",
                "run_dir", "population", "agents_solved", "agents"}
AGENT_KEYS = {"agent", "seed", "solved", "solved_at_env_step", "updates_at_solve", "eval_mean_return",
              "eval_std_return", "lr", "gamma", "eps_start", "eps_end", "eps_decay", "tau", "target_period", "grad_clip"}


def replay_of(run_dir, agent=0):
    """(data [C, 12], size) of one agent's ring in the run's checkpoint."""
    rp = torch.load(run_dir / "checkpoint.pt", weights_only=True)["engine"]["replay"]
    return rp["data"][agent], int(rp["size"])


@pytest.fixture(scope="module")
def run3000(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    cfg = preset("fast").replace(**TINY)
    result = train(cfg, out=out)
    return cfg, result, out


def test_run_dir_files(run3000):
    _, result, out = run3000
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "metrics.csv", "evals.csv", "checkpoint.pt", "summary.json"} <= names
    assert "learning_curve.png" not in names  # plot=False
    assert not [n for n in names if n.endswith(".tmp")]  # atomic checkpoint writes left nothing behind
    assert result.run_dir == str(out)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)  # loads with weights_only: plain data
    assert {"format", "configs", "engine", "agents", "evals", "wall_time_s", "net"} <= set(ckpt)
    assert ckpt["format"] == 3
    assert ckpt["net"] == {"name": "mlp", "obs_shape": [4], "n_actions": 2, "hidden": [64, 64]}
    assert ckpt["configs"] == [preset("fast").replace(**TINY).to_dict()]
    assert len(ckpt["evals"]) == 3 and ckpt["agents"] == result.agents


def test_summary(run3000):
    cfg, result, out = run3000
    s = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(s)
    assert list(s)[-1] == "agents"
    n = cfg.num_envs
    assert s["env_steps"] == math.ceil(cfg.total_steps / n) * n == result.env_steps
    assert s["updates"] == expected_updates(cfg, s["env_steps"]) == result.updates
    assert s["seed"] == 0 and s["population"] == 1
    assert s["device"] == "cpu"
    assert s["versions"]["torch"] == torch.__version__
    assert s["interrupted"] is False and s["run_dir"] == str(out)
    assert s["solved"] is False or s["solved_at_env_step"] is not None
    assert s["wall_time_s"] > 0 and s["env_steps_per_s"] > 0 and s["updates_per_s"] > 0
    assert 1 <= s["eval_mean_return"] <= 500
    assert len(s["agents"]) == 1 and AGENT_KEYS <= set(s["agents"][0])
    a = s["agents"][0]
    assert a["agent"] == 0 and a["seed"] == 0 and a["lr"] == cfg.lr and a["gamma"] == cfg.gamma
    assert a["solved"] is s["solved"] and s["agents_solved"] == int(a["solved"])
    assert a["eval_mean_return"] == s["eval_mean_return"]  # one agent: the mean over agents is its own
    cfg_json = json.loads((out / "config.json").read_text())
    assert cfg_json["total_steps"] == 3000 and cfg_json["seed"] == 0 and cfg_json["buffer_size"] == 10_000
    assert "population" not in cfg_json and "agents" not in cfg_json  # a single agent's config.json is its config


def test_evals_csv(run3000):
    cfg, result, out = run3000
    rows = read_csv(out / "evals.csv")
    assert list(rows[0]) == ["env_step", "agent", "updates", "wall_time_s", "eval_mean_return", "eval_std_return",
                             "confirm_mean_return", "confirm_std_return"]
    assert [int(r["env_step"]) for r in rows] == [1000, 2000, 3000]  # every eval_every env steps
    for r in rows:
        assert int(r["agent"]) == 0
        assert int(r["updates"]) == expected_updates(cfg, int(r["env_step"]))
        assert 1 <= float(r["eval_mean_return"]) <= 500
        assert float(r["eval_std_return"]) >= 0
    assert float(rows[-1]["eval_mean_return"]) == pytest.approx(result.eval_mean_return)


def test_metrics_csv_matches_stored_transitions(run3000):
    """metrics.csv: one row per flush (every log_every vector steps, and at each checkpoint); its
    episode counts and mean returns are those of the episodes the stored transitions contain."""
    cfg, result, out = run3000
    rows = read_csv(out / "metrics.csv")
    assert list(rows[0]) == ["env_step", "agent", "wall_time_s", "episodes", "mean_return", "epsilon", "loss",
                             "env_steps_per_s"]
    assert all(int(r["agent"]) == 0 for r in rows)
    # O(1) rows per flush: flushes every log_every vector steps (800 env steps) and at the evals
    assert len(rows) <= result.env_steps // (cfg.log_every * cfg.num_envs) + 3 + 1
    span = cfg.eps_decay * cfg.total_steps
    for r in rows:
        assert float(r["epsilon"]) == pytest.approx(linear_epsilon(cfg.eps_start, cfg.eps_end, span,
                                                                   int(r["env_step"])), abs=5e-5 + 1e-7)
        assert float(r["loss"]) >= 0 and float(r["wall_time_s"]) >= 0

    data, size = replay_of(out)
    assert size == result.env_steps  # nothing lost, nothing wrapped
    assert torch.all(data[:size, REWARD] == 1.0)
    episodes, running = episodes_from_replay(data, cfg.num_envs, size)
    assert len(episodes) > 50 and all(1 <= r <= 500 for _, r in episodes)
    check_metrics_rows_against_episodes(rows, episodes, result.env_steps)
    # the finished episodes and those still running make up every env step
    assert sum(r for _, r in episodes) + sum(running) == result.env_steps


def test_replay_holds_true_transitions(run3000, gym_single_reference, near_threshold_mask):
    """Every stored transition is one step of Gymnasium's CartPoleEnv from its stored obs and
    action; next_obs is the true last observation at episode ends; truncation only at the time
    limit; the next transition of an env continues from next_obs (or from a reset)."""
    cfg, result, out = run3000
    data, rows = replay_of(out)
    n = cfg.num_envs
    obs, nxt = data[:rows, OBS], data[:rows, NEXT_OBS]
    actions = data[:rows, ACTION]
    term, trunc = data[:rows, TERMINATED].bool(), data[:rows, TRUNCATED].bool()
    assert torch.all((actions == 0) | (actions == 1))
    assert torch.all((data[:rows, TERMINATED] == 0) | (data[:rows, TERMINATED] == 1))
    assert term.any()
    assert rows // n < cfg.max_episode_steps  # no env stepped long enough to reach the time limit
    assert not trunc.any()

    ref_next, ref_term, ref_rew = gym_single_reference(obs.double().numpy(), actions.long().numpy())
    np.testing.assert_allclose(nxt.double().numpy(), ref_next, rtol=1e-5, atol=1e-5)
    assert np.all(ref_rew == data[:rows, REWARD].numpy())
    near = near_threshold_mask(ref_next, 1e-5, 1e-6)
    assert np.array_equal(term.numpy()[~near], ref_term[~near])
    assert near.sum() < 5  # the exclusion is for rounding at the threshold, not a loophole

    x, theta = nxt[:, 0].double(), nxt[:, 2].double()
    out_of_bounds = (x.abs() > X_THRESHOLD) | (theta.abs() > THETA_THRESHOLD)
    assert torch.equal(out_of_bounds, term)
    cont = ~(term | trunc)[:-n]
    assert torch.equal(nxt[:-n][cont], obs[n:][cont])  # s' of step t is s of step t+1 for the same env
    assert torch.all(obs[n:][~cont].abs() <= 0.05)  # after an episode end, a reset observation
    assert torch.all(obs[:n].abs() <= 0.05)  # the first observations are resets too


@pytest.fixture(scope="module")
def resumed(run3000, tmp_path_factory):
    """A copy of the 3000-step run, resumed to 6000 env steps (the original stays as it was)."""
    cfg, first, src = run3000
    out = tmp_path_factory.mktemp("resumed") / "r"
    shutil.copytree(src, out)
    result = train(resume_config(out, total_steps=6000), out=out, resume=True)
    return cfg, first, src, result, out


def test_resume_continues(resumed):
    cfg, first, src, result, out = resumed
    n = cfg.num_envs
    assert result.env_steps == math.ceil(6000 / n) * n
    assert result.updates == expected_updates(cfg, result.env_steps) > first.updates
    s = json.loads((out / "summary.json").read_text())
    assert s["env_steps"] == result.env_steps and s["updates"] == result.updates
    assert json.loads((out / "config.json").read_text())["total_steps"] == 6000

    old_metrics = (src / "metrics.csv").read_bytes()
    new_metrics = (out / "metrics.csv").read_bytes()
    assert new_metrics.startswith(old_metrics) and len(new_metrics) > len(old_metrics)  # old rows kept
    assert new_metrics.count(b"env_step,") == 1  # no second header
    added = read_csv(out / "metrics.csv")[len(read_csv(src / "metrics.csv")):]
    assert added and all(first.env_steps < int(r["env_step"]) <= result.env_steps for r in added)

    evals = read_csv(out / "evals.csv")
    assert [int(r["env_step"]) for r in evals] == [1000, 2000, 3000, 4000, 5000, 6000]
    assert evals[:3] == read_csv(src / "evals.csv")

    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["format"] == 3
    assert int(ckpt["engine"]["env_steps"]) == ckpt["engine"]["host"]["env_steps"] == result.env_steps
    assert int(ckpt["engine"]["learner"]["updates"]) == result.updates
    assert int(ckpt["engine"]["replay"]["size"]) == result.env_steps  # the buffer was restored, then extended
    # the first run's transitions are still there, unchanged
    old, _ = replay_of(src)
    new, _ = replay_of(out)
    k = first.env_steps
    assert torch.equal(new[:k], old[:k])


def test_resume_continues_running_episodes(resumed):
    """Resuming restores the training envs and the running returns mid-episode, as if the run had
    never stopped."""
    cfg, first, _, result, out = resumed
    data, size = replay_of(out)
    n, k = cfg.num_envs, first.env_steps
    assert size == result.env_steps
    last_done = (data[k - n:k, TERMINATED] + data[k - n:k, TRUNCATED]) > 0
    assert (~last_done).any()
    # envs still mid-episode at the checkpoint continue from their last next_obs (not a fresh reset)
    assert torch.equal(data[k:k + n, OBS][~last_done], data[k - n:k, NEXT_OBS][~last_done])
    # so the stored transitions of both runs form one unbroken stream, and every logged episode
    # (including those that straddle the checkpoint) is counted with its full return
    episodes, _ = episodes_from_replay(data, n, size)
    assert any(e // n - r < k // n < e // n for e, r in episodes)  # some episode straddles the checkpoint
    check_metrics_rows_against_episodes(read_csv(out / "metrics.csv"), episodes, result.env_steps)


def test_resume_without_checkpoint_fails(tmp_path):
    with pytest.raises(CheckpointError):
        train(preset("fast").replace(**TINY), out=tmp_path / "nothing", resume=True)


def test_resume_config_refuses_other_fields(run3000):
    with pytest.raises(ValueError, match="num_envs"):
        resume_config(run3000[2], num_envs=4)


def test_env_steps_round_up_to_num_envs(tmp_path):
    cfg = preset("fast").replace(num_envs=8, total_steps=1001, learning_starts=200, eval_every=0, eval_episodes=5,
                                 batch_size=32, progress=False, plot=False)
    result = train(cfg, out=tmp_path / "r")
    assert result.env_steps == 1008  # 126 vector steps of 8
    assert [int(r["env_step"]) for r in read_csv(tmp_path / "r" / "evals.csv")] == [1008]  # eval_every 0: at the end


def test_train_refuses_non_empty_out(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(ValueError, match="not empty"):
        train(preset("fast").replace(**TINY), out=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_interrupt_mid_iteration_leaves_a_consistent_checkpoint(tmp_path, monkeypatch):
    """Ctrl-C may arrive anywhere in the loop, including inside an iteration (here: in the middle
    of an update). The checkpoint must then describe one consistent state -- the host counters,
    the device counters and the replay agree -- and the resumed run continues it as one stream."""
    from fastdqn.learner import Learner

    original, calls = Learner.gradient_step, [0]

    def update(self, batch):
        calls[0] += 1
        if calls[0] == 40:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered in the middle of the iteration
        return original(self, batch)

    monkeypatch.setattr(Learner, "gradient_step", update)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    cfg = preset("fast").replace(num_envs=4, hidden=(16, 16), total_steps=2000, learning_starts=200, batch_size=32,
                                 eval_every=0, eval_episodes=2, stop_when_solved=False, progress=False, plot=False,
                                 buffer_size=4000)
    out = tmp_path / "r"
    try:
        result = train(cfg, out=out)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.interrupted is True and result.env_steps < 2000
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    e = ckpt["engine"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] == e["host"]["env_steps"] == int(e["env_steps"]) == int(e["replay"]["size"])
    assert e["host"]["iterations"] == int(e["draws"]) == int(e["env_steps"]) // cfg.num_envs
    assert summary["updates"] == e["host"]["updates"] == int(e["learner"]["updates"])

    monkeypatch.setattr(Learner, "gradient_step", original)
    resumed = train(resume_config(out), out=out, resume=True)
    assert resumed.env_steps == 2000 and resumed.updates == expected_updates(cfg, 2000)
    data, size = replay_of(out)
    assert size == 2000
    n = cfg.num_envs
    cont = ~((data[:size, TERMINATED] + data[:size, TRUNCATED]) > 0)[:-n]
    assert torch.equal(data[:size - n, NEXT_OBS][cont], data[n:size, OBS][cont])  # one unbroken stream


# --- load_policy --------------------------------------------------------------------------------
def test_load_policy(run3000):
    cfg, _, out = run3000
    policy = load_policy(out)
    obs = np.random.default_rng(0).uniform(-2.0, 2.0, size=(256, 4)).astype(np.float32)

    a = policy(obs)
    assert isinstance(a, np.ndarray) and a.shape == (256,)
    assert np.issubdtype(a.dtype, np.integer)
    assert set(np.unique(a).tolist()) <= {0, 1}

    at = policy(torch.from_numpy(obs))
    assert isinstance(at, torch.Tensor) and at.shape == (256,)
    assert at.dtype in (torch.int64, torch.int32)
    assert np.array_equal(at.numpy(), a)

    # by hand from the raw checkpoint row: per layer W [in, out] row-major, then b [out]
    row = torch.load(out / "checkpoint.pt", weights_only=True)["engine"]["learner"]["params"][0]
    hidden = json.loads((out / "config.json").read_text())["hidden"]
    q = mlp_from_flat_row(row.numpy(), [4, *hidden, 2], obs)
    clear = np.abs(q[:, 1] - q[:, 0]) > 1e-5  # leave out float32-vs-float64 near-ties
    assert clear.sum() > 200
    assert np.array_equal(a[clear], q.argmax(axis=1)[clear])

    # the checkpoint file itself works too, and so does the package-level alias
    assert np.array_equal(load_policy(out / "checkpoint.pt")(obs), a)
    assert np.array_equal(fastdqn.load_policy(out)(obs), a)
    assert np.array_equal(load_policy(out, agent=0)(obs), a)
    assert policy.config.env_id == cfg.env_id and policy.agent == 0


def test_load_policy_rejects_bad_shape(run3000):
    policy = load_policy(run3000[2])
    with pytest.raises(ValueError, match="shape"):
        policy(np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        policy(np.zeros(4, dtype=np.float32))


@pytest.mark.parametrize("agent", [1, -1, True, 0.0])
def test_load_policy_agent_out_of_range(run3000, agent):
    with pytest.raises(CheckpointError) as ei:
        load_policy(run3000[2], agent=agent)
    msg = str(ei.value)
    assert "agent" in msg and "\n" not in msg
    assert isinstance(ei.value, ValueError)


def test_load_policy_missing_and_corrupt(tmp_path):
    with pytest.raises(CheckpointError):
        load_policy(tmp_path / "missing")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage, not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_policy(bad)
    not_ours = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, not_ours)
    with pytest.raises(CheckpointError, match="not a readable fastdqn checkpoint"):
        load_policy(not_ours)


def test_load_policy_old_format(tmp_path):
    """A checkpoint from before populations (format 1: config + learner) is refused by name."""
    old = tmp_path / "checkpoint.pt"
    torch.save({"config": preset("fast").to_dict(), "learner": {"q": {"0.weight": torch.zeros(64, 4)}},
                "replay": {}, "env_steps": 100}, old)
    with pytest.raises(CheckpointError, match="format 1") as ei:
        load_policy(tmp_path)
    assert "\n" not in str(ei.value)
    with pytest.raises(CheckpointError, match="format 1"):
        checkpoint.load(old)


# --- atomic checkpoint writes ----------------------------------------------------------------------
def test_checkpoint_save_is_atomic(tmp_path):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save({"x": torch.arange(5)}, path)
    checkpoint.save({"x": torch.arange(6)}, path)  # overwrite
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.arange(6))

    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - whatever pickling raises for a local function
        checkpoint.save({"x": torch.arange(7), "f": lambda: None}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left behind
    assert path.read_bytes() == before  # the previous checkpoint is intact


# --- fastdqn play / eval on the trained run ------------------------------------------------------------
def test_play_writes_gif(run3000, tmp_path, capsys):
    from PIL import Image

    gif = tmp_path / "out.gif"
    assert main(["play", str(run3000[2]), "--gif", str(gif), "--steps", "60"]) == 0
    assert "wrote" in capsys.readouterr().out
    with Image.open(gif) as im:
        assert im.format == "GIF"
        assert im.size == (600, 400)
        assert im.n_frames > 1


def test_eval_command_on_run(run3000, capsys):
    assert main(["eval", str(run3000[2]), "--episodes", "5", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "mean return" in out and "CartPole-v1" in out
    # the printed mean is that of Gymnasium's own env under the run's policy
    expected = gymnasium_returns(load_policy(run3000[2]), "CartPole-v1", 5, seed=3).mean()
    assert f"mean return {expected:.2f}" in out


# --- learning ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_fast_preset_solves_cartpole_v1(tmp_path):
    # The default preset as shipped, seed 0. Seeds 0, 1, 2, 4 and 5 solve within the budget with
    # the engine as written; seed 3 does not (DQN on CartPole is seed-sensitive).
    cfg = fastdqn.preset("fast").replace(progress=False, plot=False)
    assert cfg.seed == 0 and cfg.env_id == "CartPole-v1"
    result = train(cfg, out=tmp_path / "fast")
    assert result.solved is True
    assert result.env_steps == result.solved_at_env_step < cfg.total_steps  # stops as soon as an eval reaches 475
    assert result.eval_mean_return >= 475
    policy = load_policy(tmp_path / "fast")
    rets = gymnasium_returns(policy, "CartPole-v1", 100, seed=2024)  # Gymnasium's own env
    assert len(rets) == 100
    assert rets.mean() >= 475, rets.mean()


# Notebook preset (the TF1 tutorial's algorithm) on CartPole-v0 for 15000 env steps (~7-11 s on
# the shared 2-core CPU box). Observed with the population engine (eval = greedy mean over 100
# episodes at the end; last50 = mean of the last >= 50 training episodes, from metrics.csv):
#   seed 0: eval 153.0    seed 1: eval 146.1    seed 2: eval 199.9    seed 3: eval 114.2
# (earlier engine: eval 88-172, last50 75-91). A random policy averages ~22. Bars: eval >= 50 and
# last50 >= 40 -- well below every observed value, well above random.
NOTEBOOK_STEPS = 15_000


@pytest.mark.slow
def test_notebook_preset_learns_cartpole_v0(tmp_path):
    cfg = preset("notebook").replace(total_steps=NOTEBOOK_STEPS, eval_every=NOTEBOOK_STEPS, progress=False,
                                     plot=False)
    result = train(cfg, out=tmp_path / "nb")
    assert result.env_steps == NOTEBOOK_STEPS
    rows = [r for r in read_csv(tmp_path / "nb" / "metrics.csv") if int(r["episodes"])]
    assert all(1 <= float(r["mean_return"]) <= 200 for r in rows)  # CartPole-v0 truncates at 200
    count = total = 0
    for r in reversed(rows):  # the last flushes holding at least 50 episodes
        count += int(r["episodes"])
        total += int(r["episodes"]) * float(r["mean_return"])
        if count >= 50:
            break
    assert count >= 50
    last50 = total / count
    assert result.eval_mean_return >= 50, result.eval_mean_return
    assert last50 >= 40, last50
