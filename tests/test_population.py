"""Populations: K agents trained as one batch by ``train(cfg, population=K)`` or
``train([cfg_0, ..., cfg_K-1])``.

References: the configs given (seeds seed..seed+K-1, per-agent fields), the documented update
rule, the episodes rebuilt by hand from each agent's stored transitions, Adam's first step
(lr times the sign of the gradient, by hand), an unfrozen run of the same population (for the
parameters a solved agent must keep), an uninterrupted run (for resume), a single-agent run with
the agent's seed, and a Q-network evaluated by hand from the raw checkpoint parameters.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from reference import mlp_from_flat_row
from run_reference import check_metrics_rows_against_episodes, episodes_from_replay, expected_updates, read_csv, rows_by_agent

import fastdqn.config
import fastdqn.envs
import fastdqn.train
from fastdqn import checkpoint
from fastdqn.checkpoint import CheckpointError, load_policy
from fastdqn.config import ConfigError, preset
from fastdqn.engine import PER_AGENT_FIELDS, Engine
from fastdqn.train import resume_config, train

K = 3
# torch_threads 1: a population's default (all cores) slows these tiny runs 10-100x whenever
# another process competes for the 2 cores.
SMALL = dict(num_envs=4, hidden=(16, 16), total_steps=3000, learning_starts=400, batch_size=32, eval_every=1000,
             eval_episodes=10, stop_when_solved=False, log_every=50, buffer_size=10_000, progress=False, plot=False,
             torch_threads=1)


def small(**kw):
    return preset("fast").replace(**{**SMALL, **kw})


def engine_of(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["engine"]


@pytest.fixture(scope="module")
def pop_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pop") / "r"
    cfg = small(seed=7, plot=True)
    result = train(cfg, out=out, population=K)
    return cfg, result, out


def test_population_summary_and_config(pop_run):
    cfg, result, out = pop_run
    s = json.loads((out / "summary.json").read_text())
    assert s["population"] == K and list(s)[-1] == "agents"
    assert [a["agent"] for a in s["agents"]] == [0, 1, 2]
    assert [a["seed"] for a in s["agents"]] == [7, 8, 9]  # agent k: seed SEED + k
    for a in s["agents"]:
        for f in PER_AGENT_FIELDS:
            if f != "seed":
                assert a[f] == getattr(cfg, f), f
    assert s["env_steps"] == result.env_steps == 3000  # per agent
    assert s["updates"] == result.updates == expected_updates(cfg, 3000)  # per agent
    assert s["agents_solved"] == sum(a["solved"] for a in s["agents"]) == 0  # v1 is not solved in 3000 steps
    assert s["solved"] is False and s["solved_at_env_step"] is None
    # the mean over agents of each one's last evaluation, which is its last row of evals.csv
    evals = read_csv(out / "evals.csv")
    last = {int(r["agent"]): float(r["eval_mean_return"]) for r in evals}
    for a in s["agents"]:
        assert a["eval_mean_return"] == pytest.approx(last[a["agent"]])
    assert s["eval_mean_return"] == pytest.approx(sum(last.values()) / K)
    assert result.agents == s["agents"]

    c = json.loads((out / "config.json").read_text())
    assert c["seed"] == 7 and c["num_envs"] == 4 and c["hidden"] == [16, 16]  # the first agent's config
    assert c["population"] == K
    assert [a["seed"] for a in c["agents"]] == [7, 8, 9]
    assert all(set(a) == set(PER_AGENT_FIELDS) and a["lr"] == cfg.lr for a in c["agents"])


def test_population_metrics_one_row_per_agent_per_flush(pop_run):
    cfg, result, out = pop_run
    rows = read_csv(out / "metrics.csv")
    per_step = Counter(int(r["env_step"]) for r in rows)
    flush_every = cfg.log_every * cfg.num_envs  # 200 env steps; the evals (every 1000) fall on flushes
    assert sorted(per_step) == list(range(flush_every, 3001, flush_every))
    assert all(c == K for c in per_step.values()), per_step  # exactly one row per agent per flush
    for step in per_step:
        assert sorted(int(r["agent"]) for r in rows if int(r["env_step"]) == step) == [0, 1, 2]


def test_population_metrics_match_each_agents_transitions(pop_run):
    """Each agent's rows count and average exactly the episodes in its own replay ring."""
    cfg, result, out = pop_run
    rp = engine_of(out)["replay"]
    assert rp["data"].shape == (K, cfg.buffer_size, 12) and int(rp["size"]) == result.env_steps
    by_agent = rows_by_agent(read_csv(out / "metrics.csv"))
    assert sorted(by_agent) == [0, 1, 2]
    returns = []
    for k in range(K):
        episodes, running = episodes_from_replay(rp["data"][k], cfg.num_envs, result.env_steps)
        assert sum(r for _, r in episodes) + sum(running) == result.env_steps
        check_metrics_rows_against_episodes(by_agent[k], episodes, result.env_steps)
        returns.append(episodes)
    assert returns[0] != returns[1] != returns[2]  # three agents, three different streams


def test_population_evals_per_agent(pop_run):
    cfg, _, out = pop_run
    rows = read_csv(out / "evals.csv")
    assert [(int(r["env_step"]), int(r["agent"])) for r in rows] == [(s, k) for s in (1000, 2000, 3000)
                                                                     for k in range(K)]
    for r in rows:
        assert int(r["updates"]) == expected_updates(cfg, int(r["env_step"]))
        assert 1 <= float(r["eval_mean_return"]) <= 500 and float(r["eval_std_return"]) >= 0


def test_population_learning_curve_written(pop_run):
    with Image.open(pop_run[2] / "learning_curve.png") as im:
        assert im.format == "PNG" and im.size == (800, 450)
        counts = {c: n for n, c in im.convert("RGB").getcolors(1 << 20)}
    # beyond the legend swatches (63 pixels each): a median line, a band, evaluation markers
    assert counts.get((31, 119, 180), 0) > 1000
    assert counts.get((166, 198, 230), 0) > 300  # two 1-pixel lines
    assert counts.get((214, 39, 40), 0) > 63 + 60


def test_load_policy_of_agent(pop_run):
    """load_policy(run, agent=1) is agent 1's greedy policy: argmax of the Q-network built by hand
    from row 1 of the checkpoint's parameters (per layer W [in, out] row-major, then b [out])."""
    cfg, _, out = pop_run
    ckpt = checkpoint.load(out)
    params = ckpt["policies"]
    assert params.shape[0] == K and ckpt["alive"] == [0, 1, 2]
    assert torch.equal(params, ckpt["engine"]["learner"]["params"])  # no agent left: the engine's rows
    obs = np.random.default_rng(1).uniform(-2.0, 2.0, size=(512, 4)).astype(np.float32)
    sizes = [4, *cfg.hidden, 2]
    chosen = {}
    for k in range(K):
        policy = load_policy(out, agent=k)
        assert policy.agent == k and policy.config.seed == 7 + k
        q = mlp_from_flat_row(params[k].numpy(), sizes, obs)
        clear = np.abs(q[:, 1] - q[:, 0]) > 1e-5  # leave out float32-vs-float64 near-ties
        assert clear.sum() > 400
        a = policy(obs)
        assert np.array_equal(a[clear], q.argmax(axis=1)[clear]), k
        chosen[k] = a
    assert not np.array_equal(chosen[0], chosen[1]) or not np.array_equal(chosen[1], chosen[2])
    with pytest.raises(CheckpointError, match="agent") as ei:
        load_policy(out, agent=K)
    assert "\n" not in str(ei.value)


# --- a list of configs -------------------------------------------------------------------------
def test_list_of_configs_per_agent_lr(tmp_path):
    """Agents differing in lr: each carries its own lr, and Adam's first step moves each agent's
    parameters by its own lr (bias-corrected Adam's first step is lr * g / (|g| + eps))."""
    lrs = [1e-3, 3e-3, 1e-2]
    base = small(total_steps=400, learning_starts=400, eval_every=0, eval_episodes=2, seed=5)
    cfgs = [base.replace(lr=lr) for lr in lrs]
    init = Engine(cfgs).learner.params.clone()  # the initial parameters (before any update)
    out = tmp_path / "r"
    result = train(cfgs, out=out)
    assert result.updates == 1 == expected_updates(base, 400)
    s = json.loads((out / "summary.json").read_text())
    assert [a["lr"] for a in s["agents"]] == lrs and [a["seed"] for a in s["agents"]] == [5, 5, 5]
    assert [a["lr"] for a in json.loads((out / "config.json").read_text())["agents"]] == lrs
    delta = (engine_of(out)["learner"]["params"] - init).abs()
    support = delta > 0  # parameters with a nonzero gradient (dead ReLU units have none)
    assert support.sum(1).min() > 100
    # same seed, same data, same initial parameters: the same gradient, so the same support
    assert torch.equal(support[0], support[1]) and torch.equal(support[1], support[2])
    for k, lr in enumerate(lrs):
        moved = delta[k][support[k]]
        # |step| = lr |g| / (|g| + 1e-8): lr, unless a gradient is within a few orders of Adam's eps
        assert bool((moved <= lr * (1 + 1e-3)).all())
        assert (torch.isclose(moved, torch.full_like(moved, lr), rtol=1e-3, atol=1e-6)).float().mean() > 0.97


@pytest.mark.parametrize("field, value", [("hidden", (32, 32)), ("num_envs", 8), ("loss", "mse")])
def test_list_of_configs_structural_mismatch(tmp_path, field, value):
    base = small()
    with pytest.raises(ConfigError, match=field):
        train([base, base.replace(seed=1, **{field: value})], out=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_population_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match="population"):
        train(small(), out=tmp_path / "r", population=0)
    assert not (tmp_path / "r").exists()


# --- solved agents leave -----------------------------------------------------------------------------
THRESHOLD = 20.0  # CartPole-v1's threshold lowered to a target a few thousand steps reach


@pytest.fixture(scope="module")
def solving(tmp_path_factory):
    """With the threshold lowered to 20: a population trained with stop_when_solved (``stop``), the
    same population trained without stopping to the last solve step (``ref``, its parameters
    recorded at every checkpoint), and a run stopped by its budget at the first solve step, then
    resumed (``resumed``). Exponential epsilon: its schedule does not depend on total_steps."""
    d = tmp_path_factory.mktemp("solving")
    cfg = small(total_steps=8000, eval_every=200, log_every=30, stop_when_solved=True, eps_schedule="exp",
                eps_decay=2e-3, seed=0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(fastdqn.envs.NATIVE, "CartPole-v1",
                   dataclasses.replace(fastdqn.envs.NATIVE["CartPole-v1"], reward_threshold=THRESHOLD))
        assert cfg.solve_threshold == THRESHOLD
        stop = train(cfg, out=d / "stop", population=K)
        solve_steps = [a["solved_at_env_step"] for a in stop.agents]
        assert None not in solve_steps, "an agent did not reach the lowered threshold within the budget"

        saved, original_save = {}, checkpoint.save

        def recording_save(obj, path):
            saved[obj["engine"]["host"]["env_steps"]] = obj["policies"].clone()
            original_save(obj, path)

        mp.setattr(checkpoint, "save", recording_save)
        ref = train(cfg.replace(stop_when_solved=False, total_steps=max(solve_steps)), out=d / "ref", population=K)
        mp.setattr(checkpoint, "save", original_save)

        train(cfg.replace(total_steps=min(solve_steps)), out=d / "partial", population=K)
        first = checkpoint.load(d / "partial")
        resumed = train(resume_config(d / "partial", total_steps=8000), out=d / "partial", resume=True)
    return dict(cfg=cfg, dir=d, stop=stop, solve_steps=solve_steps, ref=ref, ref_params=saved, first=first,
                resumed=resumed)


def test_run_ends_when_every_agent_is_solved(solving):
    cfg, stop, solve_steps = solving["cfg"], solving["stop"], solving["solve_steps"]
    assert stop.solved is True and all(a["solved"] for a in stop.agents)
    assert stop.env_steps == stop.solved_at_env_step == max(solve_steps) < cfg.total_steps
    assert len(set(solve_steps)) > 1  # agents solved at different times: some left while others learned
    s = json.loads((solving["dir"] / "stop" / "summary.json").read_text())
    assert s["agents_solved"] == K and s["solved"] is True and s["solve_threshold"] == THRESHOLD
    by_agent = rows_by_agent(read_csv(solving["dir"] / "stop" / "evals.csv"))
    for k, a in enumerate(stop.agents):
        rows = by_agent[k]
        steps = [int(r["env_step"]) for r in rows]
        rets = [float(r["eval_mean_return"]) for r in rows]
        # evaluated every eval_every from learning_starts up to its solve, never after
        assert steps == list(range(cfg.learning_starts, a["solved_at_env_step"] + 1, cfg.eval_every))
        confirms = [float(r["confirm_mean_return"]) if r["confirm_mean_return"] else None for r in rows]
        # solved at its first evaluation that passed and whose confirmation on fresh episodes passed too;
        # an evaluation below the threshold is never confirmed
        stds = [float(r["confirm_std_return"]) if r["confirm_std_return"] else None for r in rows]
        assert rets[-1] >= THRESHOLD and confirmed(cfg, confirms[-1], stds[-1])
        for r, c, sd in zip(rets[:-1], confirms[:-1], stds[:-1]):
            assert (r < THRESHOLD and c is None) or (r >= THRESHOLD and not confirmed(cfg, c, sd))
        assert a["crossing_eval_mean_return"] == pytest.approx(rets[-1])
        assert a["eval_mean_return"] == pytest.approx(confirms[-1])  # what the run reports is the confirmation
        assert a["updates_at_solve"] == expected_updates(cfg, a["solved_at_env_step"])


def confirmed(cfg, mean, std):
    """The solve rule: the confirmation's mean clears the threshold by confirm_margin standard errors."""
    return mean - cfg.confirm_margin * std / cfg.confirm_episodes ** 0.5 >= THRESHOLD


def test_solved_agents_keep_the_parameters_that_passed(solving):
    """Each agent's policy in the checkpoint is what the same agent had at its solve step in the
    run that never stopped, and differs from what it would have become had it kept learning.

    Bit for bit for the agents that solved first (until then both runs hold all K agents). An agent
    that went on learning after others left ran in a smaller batch, whose kernels round differently
    in the last bits (the fused Adam kernel splits its flat [K, P] tensor into vector body and
    scalar tail by total length), so it matches to float rounding only.
    """
    policies = checkpoint.load(solving["dir"] / "stop")["policies"]
    ref = solving["ref_params"]
    steps = solving["solve_steps"]
    first, last = min(steps), max(steps)
    # the agents' trajectories are the same in both runs: they solve at the same evaluations
    assert [a["solved_at_env_step"] for a in solving["ref"].agents] == steps
    assert policies.shape[0] == K
    for k, step in enumerate(steps):
        if step == first:
            assert torch.equal(policies[k], ref[step][k]), (k, step)
        else:
            torch.testing.assert_close(policies[k], ref[step][k], rtol=1e-4, atol=1e-5)
        if step < last:  # it would have kept changing, far beyond rounding
            assert (policies[k] - ref[last][k]).abs().max() > 1e-2, k
    # load_policy serves those parameters
    obs = np.random.default_rng(2).uniform(-2.0, 2.0, size=(256, 4)).astype(np.float32)
    for k, step in enumerate(steps):
        q = mlp_from_flat_row(ref[step][k].numpy(), [4, *solving["cfg"].hidden, 2], obs)
        clear = np.abs(q[:, 1] - q[:, 0]) > 1e-3
        assert clear.sum() > 200
        assert np.array_equal(load_policy(solving["dir"] / "stop", agent=k)(obs)[clear], q.argmax(axis=1)[clear])


def test_solved_agents_metrics_end_at_their_solve(solving):
    """An agent's metrics rows are those of the run that never stopped, up to and including its
    solve step (log_every is chosen so that solve steps need not fall on a flush), and none after."""
    stop = rows_by_agent(read_csv(solving["dir"] / "stop" / "metrics.csv"))
    ref = rows_by_agent(read_csv(solving["dir"] / "ref" / "metrics.csv"))

    def fields(rows, upto):  # the loss is left out: it may differ in float rounding (see above)
        return [(r["env_step"], r["episodes"], r["mean_return"], r["epsilon"]) for r in rows
                if int(r["env_step"]) <= upto]

    for k, step in enumerate(solving["solve_steps"]):
        assert int(stop[k][-1]["env_step"]) == step, k  # the last row is at its solve step
        assert fields(stop[k], step) == fields(ref[k], step), k
        losses = [float(r["loss"]) for r in stop[k]]
        assert losses == pytest.approx([float(r["loss"]) for r in ref[k] if int(r["env_step"]) <= step], rel=1e-3)
        # every episode it finished before it was solved is counted once
        assert sum(int(r["episodes"]) for r in stop[k]) == sum(int(r["episodes"]) for r in ref[k]
                                                               if int(r["env_step"]) <= step)


def test_masked_solved_agents_keep_the_parameters_that_passed_exactly(solving, tmp_path, monkeypatch):
    """Where the iteration is captured (``--compile graph``, reduce-overhead), solved agents stay in
    the engine masked instead of leaving it. The batch never changes, so every agent -- the late
    solvers too -- follows the never-stopping run bit for bit: the same solve steps, its policy is
    that run's parameters at its solve step, and its metrics and evaluations end there. A masked
    run stopped by its budget and resumed finishes the same."""
    monkeypatch.setitem(fastdqn.envs.NATIVE, "CartPole-v1",
                        dataclasses.replace(fastdqn.envs.NATIVE["CartPole-v1"], reward_threshold=THRESHOLD))
    monkeypatch.setattr(fastdqn.train, "MASKED_MODES", ("none",))  # mask, as the captured modes do, on a CPU
    masked = train(solving["cfg"], out=tmp_path / "m", population=K)
    steps, ref = solving["solve_steps"], solving["ref_params"]
    assert [a["solved_at_env_step"] for a in masked.agents] == steps and masked.solved is True
    ck = checkpoint.load(tmp_path / "m")
    assert ck["rows"] == list(range(K)) and ck["alive"] == [] and ck["engine"]["learner"]["params"].shape[0] == K
    assert not ck["engine"]["active"].any()
    for k, step in enumerate(steps):
        assert torch.equal(ck["policies"][k], ref[step][k]), k
    for name in ("metrics.csv", "evals.csv"):
        got, want = rows_by_agent(read_csv(tmp_path / "m" / name)), rows_by_agent(read_csv(solving["dir"] / "stop" / name))
        for k, step in enumerate(steps):
            assert int(got[k][-1]["env_step"]) == step, (name, k)
            assert [r["env_step"] for r in got[k]] == [r["env_step"] for r in want[k]], (name, k)
    # stopped by its budget right after the first solve (masked agents in the checkpoint), then
    # resumed: it finishes as the uninterrupted masked run did
    train(solving["cfg"].replace(total_steps=min(steps)), out=tmp_path / "p", population=K)
    partial = checkpoint.load(tmp_path / "p")
    assert partial["rows"] == list(range(K)) and len(partial["alive"]) < K
    resumed = train(resume_config(tmp_path / "p", total_steps=solving["cfg"].total_steps), out=tmp_path / "p",
                    resume=True)
    assert [a["solved_at_env_step"] for a in resumed.agents] == steps
    assert torch.equal(checkpoint.load(tmp_path / "p")["policies"], ck["policies"])


def test_resume_after_some_agents_solved(solving):
    """A run stopped by its budget right after its first agent solved, then resumed, finishes as
    the uninterrupted run did: same solve steps, evaluations and policies."""
    first, resumed, stop = solving["first"], solving["resumed"], solving["stop"]
    solved_first = [k for k, s in enumerate(solving["solve_steps"]) if s == min(solving["solve_steps"])]
    assert sorted(set(range(K)) - set(first["alive"])) == solved_first  # they had left the engine
    assert first["engine"]["learner"]["params"].shape[0] == K - len(solved_first)
    assert resumed.solved is True and resumed.env_steps == stop.env_steps
    strip = ("eval_mean_return", "eval_std_return", "solved", "solved_at_env_step", "updates_at_solve", "seed")
    assert [{f: a[f] for f in strip} for a in resumed.agents] == [{f: a[f] for f in strip} for a in stop.agents]
    assert torch.equal(checkpoint.load(solving["dir"] / "partial")["policies"],
                       checkpoint.load(solving["dir"] / "stop")["policies"])

    def evals(run):
        return [(r["env_step"], r["agent"], r["updates"], r["eval_mean_return"], r["eval_std_return"])
                for r in read_csv(solving["dir"] / run / "evals.csv")]

    assert evals("partial") == evals("stop")


# --- resume and independence ---------------------------------------------------------------------------
def test_population_resume_continues_exactly(tmp_path):
    """T1 steps, then resumed to T2, ends in exactly the state of one uninterrupted T2-step run
    (evaluations use their own env and RNG, so they do not disturb the training stream). Epsilon
    is exponential: a linear schedule spans eps_decay * total_steps of the run as it began, so a
    run begun with T1 deliberately differs from one begun with T2."""
    cfg = small(total_steps=1600, eval_every=400, eps_schedule="exp", eps_decay=1e-3, seed=3, log_every=10)
    a, b = tmp_path / "a", tmp_path / "b"
    train(cfg, out=a, population=K)
    resumed = train(resume_config(a, total_steps=3200), out=a, resume=True)
    whole = train(cfg.replace(total_steps=3200), out=b, population=K)
    assert resumed.env_steps == whole.env_steps == 3200 and resumed.updates == whole.updates
    ea, eb = engine_of(a), engine_of(b)
    for name in ("params", "target"):
        assert torch.equal(ea["learner"][name], eb["learner"][name]), name
    for name in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(ea["learner"]["optimizer"][name], eb["learner"]["optimizer"][name]), name
    assert torch.equal(ea["replay"]["data"], eb["replay"]["data"])
    assert torch.equal(ea["obs"], eb["obs"]) and torch.equal(ea["ep_return"], eb["ep_return"])

    def evals(d):
        return [(r["env_step"], r["agent"], r["updates"], r["eval_mean_return"], r["eval_std_return"])
                for r in read_csv(d / "evals.csv")]

    assert evals(a) == evals(b) and len(evals(a)) == K * 8

    def logged(d):  # flushes that logged episodes (flush steps coincide: 1600 is a multiple of 10 * 4)
        return {(r["env_step"], r["agent"]): (r["episodes"], r["mean_return"], r["epsilon"], r["loss"])
                for r in read_csv(d / "metrics.csv") if int(r["episodes"])}

    assert logged(a) == logged(b) and len(logged(a)) > 50


def test_agent_learns_as_a_single_run_with_its_seed(tmp_path):
    """Agent k of a population draws its own env resets, exploration and replay samples: it
    collects the same transitions as a single-agent run with seed SEED + k (and its parameters
    agree up to float rounding of the batched matrix products)."""
    cfg = small(total_steps=1200, eval_every=0, eval_episodes=2, seed=0)
    train(cfg, out=tmp_path / "pop", population=3)
    train(cfg.replace(seed=2), out=tmp_path / "one")
    pop, one = engine_of(tmp_path / "pop"), engine_of(tmp_path / "one")
    assert torch.equal(pop["replay"]["data"][2], one["replay"]["data"][0])
    torch.testing.assert_close(pop["learner"]["params"][2], one["learner"]["params"][0], rtol=1e-4, atol=1e-5)
    assert not torch.equal(pop["replay"]["data"][1], one["replay"]["data"][0])


def test_resume_cannot_change_population(tmp_path):
    out = tmp_path / "r"
    train(small(total_steps=400, eval_every=0, eval_episodes=2), out=out, population=2)
    before = (out / "checkpoint.pt").read_bytes()
    cfgs = resume_config(out, total_steps=800)
    assert len(cfgs) == 2 and [c.seed for c in cfgs] == [0, 1]
    with pytest.raises(ConfigError, match="agents"):
        train(cfgs[:1], out=out, resume=True)
    with pytest.raises(ConfigError, match="lr"):
        train([cfgs[0], cfgs[1].replace(lr=1e-4)], out=out, resume=True)
    assert (out / "checkpoint.pt").read_bytes() == before
