"""The population engine: K agents as a leading tensor dimension, one sync-free iteration.

References: the same engine run with a different population around an agent (independence), a
single-agent engine (agent k of a population is the run with agent k's config), hand formulas
(epsilon schedules, the learning schedule, ring slots and sampled indices), autograd on a
from-the-formula MLP, Gymnasium's CartPoleEnv (stored transitions, evaluation returns), eager
execution (for the compiled iteration) and an uninterrupted run (for resume).
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from mlp_layout import mlp_flat, mlp_unflat
from reference import mlp_formula
from torch import nn

from fastdqn.config import ConfigError, preset
from fastdqn.engine import PER_AGENT_FIELDS, Engine, check_population, population_configs
from fastdqn.learner import MLP, AutogradQNet, Learner
from fastdqn.replay import Batch

D = 4
SIZES = [4, 16, 16, 2]
BASE = preset("fast").replace(num_envs=4, batch_size=32, learning_starts=64, hidden=(16, 16), buffer_size=2000,
                              eval_episodes=4, total_steps=2000, target_period=10, env_backend="torch", device="cpu")
LEARN_FROM = BASE.learning_starts // BASE.num_envs  # iteration (1-based) 16 is the first that learns


def configs(k=3, **per_agent):
    """``k`` agents (seeds 0..k-1); each keyword is a list of k per-agent values."""
    out = population_configs(BASE, k)
    return [c.replace(**{f: v[i] for f, v in per_agent.items()}) for i, c in enumerate(out)]


def run(engine, n):
    for _ in range(n):
        engine.step()
    return engine


def decode(rows):
    """Fields of packed replay rows ``[..., 2D+4]`` by the documented layout."""
    return (rows[..., :D], rows[..., D], rows[..., D + 1], rows[..., D + 2:2 * D + 2], rows[..., 2 * D + 2],
            rows[..., 2 * D + 3])


# --- 1. independence -------------------------------------------------------------------------
@pytest.mark.parametrize("change", [{"seed": 17}, {"lr": 2e-2}])
def test_agents_are_independent(change):
    base = run(Engine(configs(3)), 150)
    cfgs = configs(3)
    cfgs[1] = cfgs[1].replace(**change)
    other = run(Engine(cfgs), 150)
    assert base.host_updates == other.host_updates > 100
    for k in (0, 2):  # the neighbours of the changed agent: bit-identical
        assert torch.equal(base.learner.params[k], other.learner.params[k])
        assert torch.equal(base.learner.target[k], other.learner.target[k])
        assert torch.equal(base.obs[k], other.obs[k])
        assert torch.equal(base.replay.data[k], other.replay.data[k])
    assert not torch.allclose(base.learner.params[1], other.learner.params[1])  # the change did something


# --- 2. agent k of a population = a single run with its config ------------------------------
@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_population_agent_matches_single_agent_run(backend):
    cfgs = configs(3, lr=[5e-3, 1e-2, 2e-3], gamma=[0.99, 0.9, 0.95], eps_start=[1.0, 0.6, 0.8],
                   target_period=[10, 0, 5], tau=[1.0, 1.0, 0.5])
    iterations = LEARN_FROM + 99  # 100 learning iterations
    pop = Engine(cfgs, backend=backend)
    singles = [Engine([c], backend=backend) for c in cfgs]
    for _ in range(iterations):
        pop.step()
        for k, s in enumerate(singles):
            s.step()
            assert torch.equal(pop.obs[k], s.obs[0])
    for k, s in enumerate(singles):
        assert s.host_updates == pop.host_updates == 100
        torch.testing.assert_close(pop.learner.params[k], s.learner.params[0], rtol=0, atol=1e-4)
        torch.testing.assert_close(pop.learner.target[k], s.learner.target[0], rtol=0, atol=1e-4)
        torch.testing.assert_close(pop.replay.data[k], s.replay.data[0], rtol=0, atol=1e-4)


# --- 3. per-agent hyperparameters --------------------------------------------------------------
def random_batch(k, b=32, seed=0, terminated=0.0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(k, b, D, generator=g), torch.randint(0, 2, (k, b), generator=g),
                 torch.randn(k, b, generator=g), torch.randn(k, b, D, generator=g),
                 torch.full((k, b), terminated), torch.zeros(k, b))


def test_lr_zero_agent_keeps_its_weights_exactly():
    net = MLP(4, 2, hidden=(16, 16))
    params = torch.stack([net.init(torch.Generator().manual_seed(s)) for s in (0, 1)])
    start = params.clone()
    learner = Learner(net, params, lr=[0.0, 1e-2], gamma=0.99, target_period=1)
    for s in range(5):
        learner.update(random_batch(2, seed=s))
    assert torch.equal(learner.params[0], start[0]) and torch.equal(learner.target[0], start[0])
    assert not torch.allclose(learner.params[1], start[1])


def reference_huber_loss(flat, b: Batch, gamma, target_flat=None):
    """One agent's double-DQN Huber loss from the formulas (``b`` is that agent's [B] slice)."""
    online = [x.detach().clone().requires_grad_(True) for x in mlp_unflat(flat, SIZES)]
    target = mlp_unflat(target_flat if target_flat is not None else flat, SIZES)
    q_sa = mlp_formula(online, b.obs)[torch.arange(len(b.actions)), b.actions]
    with torch.no_grad():
        a_star = mlp_formula(online, b.next_obs).argmax(dim=1)
        v = mlp_formula(target, b.next_obs)[torch.arange(len(a_star)), a_star]
        y = b.rewards + gamma * (1.0 - b.terminated) * v
    d = q_sa - y
    loss = torch.where(d.abs() < 1.0, 0.5 * d * d, d.abs() - 0.5).mean()
    loss.backward()
    return loss.detach(), mlp_flat([x.grad for x in online]), y


def test_gamma_zero_agent_targets_are_the_rewards():
    engine = run(Engine(configs(2, gamma=[0.0, 0.9])), LEARN_FROM + 5)
    batch = random_batch(2, seed=3)  # no terminal rows: only gamma can cut the bootstrap
    loss, grads = engine.learner.loss_and_grads(batch)
    for k, gamma in enumerate([0.0, 0.9]):
        b = Batch(*(x[k] for x in batch))
        ref_loss, ref_grads, y = reference_huber_loss(engine.learner.params[k], b, gamma, engine.learner.target[k])
        torch.testing.assert_close(loss[k], ref_loss, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grads[k], ref_grads, rtol=1e-5, atol=1e-6)
        if gamma == 0.0:
            assert torch.equal(y, b.rewards)
            # by hand: Huber of Q(s, a) - r, i.e. the loss does not see next_obs at all
            q_sa = mlp_formula(mlp_unflat(engine.learner.params[k], SIZES), b.obs)[torch.arange(32), b.actions]
            d = (q_sa - b.rewards).tolist()
            hand = sum(0.5 * x * x if abs(x) < 1 else abs(x) - 0.5 for x in d) / 32
            assert loss[k].item() == pytest.approx(hand, rel=1e-5)
        else:
            assert not torch.allclose(y, b.rewards)


def linear_eps(c, t):
    span = c.eps_decay * c.total_steps
    if span <= 0:
        return c.eps_end
    return c.eps_start + min(1.0, t / span) * (c.eps_end - c.eps_start)


def exp_eps(c, t):
    return c.eps_end + (c.eps_start - c.eps_end) * math.exp(-c.eps_decay * t)


@pytest.mark.parametrize("schedule,decays,formula", [
    ("linear", [0.5, 0.1, 0.0], linear_eps),  # spans 200, 40, 0 env steps (0: eps_end from the start)
    ("exp", [1e-2, 3e-2, 0.0], exp_eps),
])
def test_per_agent_epsilon_schedules(schedule, decays, formula):
    cfgs = [c.replace(eps_schedule=schedule, total_steps=400, learning_starts=10**6)
            for c in configs(3, eps_start=[1.0, 0.5, 0.8], eps_end=[0.02, 0.1, 0.3], eps_decay=decays)]
    engine = Engine(cfgs)
    for it in range(61):
        t = it * BASE.num_envs
        expected = [formula(c, t) for c in cfgs]
        eps = engine.epsilon()
        assert eps.shape == (3, 1)
        assert eps[:, 0].tolist() == pytest.approx(expected, rel=1e-5, abs=1e-6), t
        engine.step()


def test_actions_are_epsilon_greedy_per_agent():
    # no learning: the greedy action of each agent is argmax Q with its initial parameters
    cfgs = [c.replace(learning_starts=10**6) for c in configs(3, eps_start=[0.0, 1.0, 0.5], eps_end=[0.0, 1.0, 0.5])]
    engine = run(Engine(cfgs), 100)  # 400 transitions per agent, all in the buffer
    obs, action, *_ = decode(engine.replay.data[:, :400])
    for k, (lo, hi) in enumerate([(1.0, 1.0), (0.4, 0.6), (0.65, 0.85)]):
        greedy = mlp_formula(mlp_unflat(engine.learner.params[k], SIZES), obs[k]).argmax(dim=1)
        agree = (action[k] == greedy.float()).float().mean().item()
        # eps 0: always greedy; eps 1: a fair coin (half agrees); eps 0.5: 0.5 + 0.5 * 0.5 = 0.75
        assert lo <= agree <= hi, (k, agree)


def test_greedy_actions_come_from_the_current_online_network():
    cfgs = configs(2, eps_start=[0.0, 0.0], eps_end=[0.0, 0.0], target_period=[1000, 1000])  # the target stays put
    engine = run(Engine(cfgs), LEARN_FROM + 20)
    for k in range(2):  # a target net that prefers the other action everywhere: output units swapped
        tensors = mlp_unflat(engine.learner.params[k].clone(), SIZES)
        tensors[-2], tensors[-1] = tensors[-2].flip(0), tensors[-1].flip(0)
        engine.learner.target[k].copy_(mlp_flat(tensors))
    for it in range(LEARN_FROM + 20, LEARN_FROM + 30):
        params, obs = engine.learner.params.clone(), engine.obs.clone()
        engine.step()
        _, action, *_ = decode(engine.replay.data[:, 4 * it:4 * it + 4])  # this iteration's slots (no wrap yet)
        for k in range(2):
            greedy = mlp_formula(mlp_unflat(params[k], SIZES), obs[k]).argmax(dim=1)  # acted before this update
            assert action[k].tolist() == greedy.float().tolist(), (it, k)


def test_per_agent_target_settings_reach_the_learner():
    engine = Engine(configs(3, target_period=[3, 0, 5], tau=[1.0, 1.0, 0.5]))
    run(engine, LEARN_FROM - 1)
    prev_target = engine.learner.target.clone()
    for u in range(1, 13):
        engine.step()
        assert engine.host_updates == u
        p, tgt = engine.learner.params, engine.learner.target
        # agent 0: hard copy every 3 updates; agent 1: no target network (a copy after every update)
        assert torch.equal(tgt[0], p[0] if u % 3 == 0 else prev_target[0]), u
        assert torch.equal(tgt[1], p[1]), u
        # agent 2: Polyak 0.5 every update
        torch.testing.assert_close(tgt[2], 0.5 * prev_target[2] + 0.5 * p[2], rtol=1e-6, atol=1e-7)
        prev_target = tgt.clone()


# --- the learning schedule and the host mirrors -----------------------------------------------
def test_step_learns_on_the_hand_computed_schedule():
    cfg = BASE.replace(learning_starts=50, train_frequency=3, gradient_steps=2)
    engine = Engine([cfg, cfg.replace(seed=1)])
    start = engine.learner.params.clone()
    updates = 0
    for i in range(1, 31):
        engine.step()
        # iteration i has collected 4 i env steps; it learns when 4 i >= 50 (i >= 13) and i % 3 == 0
        if i >= 13 and i % 3 == 0:
            updates += 2
        assert engine.host_updates == int(engine.learner.updates) == updates, i
        assert engine.host_env_steps == int(engine.env_steps) == 4 * i
        if i < 15:  # the first learning iteration is 15
            assert torch.equal(engine.learner.params, start), i
    assert updates == 12 and not torch.allclose(engine.learner.params, start)


# --- 4. inactive agents stop changing -----------------------------------------------------------
def test_inactive_agent_stops_changing():
    engine = run(Engine(configs(2)), LEARN_FROM + 20)
    engine.set_active([False, True])
    p, tgt, obs = engine.learner.params.clone(), engine.learner.target.clone(), engine.obs.clone()
    run(engine, 40)  # 4 target copies (period 10)
    assert torch.equal(engine.learner.params[0], p[0]) and torch.equal(engine.learner.target[0], tgt[0])
    assert not torch.allclose(engine.learner.params[1], p[1]) and not torch.allclose(engine.learner.target[1], tgt[1])
    assert not torch.equal(engine.obs[0], obs[0])  # its envs still run
    engine.set_active([True, True])
    run(engine, 10)
    assert not torch.allclose(engine.learner.params[0], p[0])


# --- 5. the compiled iteration -----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1"])
def test_fullgraph_compiled_iteration_matches_eager(env_id):
    """The generic env path too (Acrobot: VectorEnv's pure step, dense resets): one graph, no host sync."""
    torch._dynamo.reset()
    cfgs = configs(2, lr=[5e-3, 1e-2], target_period=[3, 0], tau=[1.0, 0.5])
    cfgs = [c.replace(grad_clip=1.0, env_id=env_id) for c in cfgs]
    eager, comp = Engine(cfgs, backend="torch"), Engine(cfgs, backend="torch")
    fn = torch.compile(comp.iteration, fullgraph=True)
    for learn in [False] * 12 + [True] * 8:
        le, lc = eager.iteration(learn), fn(learn)
        torch.testing.assert_close(lc, le, rtol=1e-5, atol=1e-5)
    assert int(eager.learner.updates) == int(comp.learner.updates) == 8
    for a, b in [(comp.obs, eager.obs), (comp.learner.params, eager.learner.params), (comp.learner.target, eager.learner.target),
                 (comp.replay.data, eager.replay.data), (comp.learner.optimizer.exp_avg, eager.learner.optimizer.exp_avg),
                 (comp.ep_return, eager.ep_return)]:
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for name in ("env_steps", "draws"):
        assert int(getattr(comp, name)) == int(getattr(eager, name))
    assert int(comp.replay.pos) == int(eager.replay.pos) and int(comp.replay.size) == int(eager.replay.size)
    assert not torch.allclose(comp.learner.params[0], Engine(cfgs).learner.params[0])  # it did learn


# --- 5b. the captured iteration (compile graph) -------------------------------------------------
CAPTURE_CASES = {
    "CartPole-v1": {},
    "Acrobot-v1": {"target_period": [3, 0], "tau": [1.0, 0.5]},
    # frames [N, 4, 10, 10] bool, the CNN, replay rows apart from the frames, per-step draws of the game
    "MinAtar/Breakout-v1": {"network": "cnn", "num_envs": 4, "batch_size": 16, "learning_starts": 64},
}


@pytest.mark.parametrize("env_id", list(CAPTURE_CASES))
def test_captured_iteration_equals_eager(env_id):
    """The logic of ``--compile graph`` on the CPU: the iteration recorded once per pattern of
    learn flags (after two eager warm-up runs each) and replayed, single iterations and 4 per replay,
    gives exactly the eager engine's state; every engine tensor stays where it was at capture (the
    stand-in recorder checks that after every replay: a moved tensor would leave a CUDA graph
    reading stale memory)."""
    from fastdqn.graphs import AddressCheckRecorder

    extra = dict(CAPTURE_CASES[env_id])
    per_agent = {f: extra.pop(f) for f in ("target_period", "tau") if f in extra}
    cfgs = [c.replace(env_id=env_id, grad_clip=1.0, **extra) for c in configs(2, lr=[5e-3, 1e-2], **per_agent)]
    eager, captured = Engine(cfgs, backend="torch"), Engine(cfgs, backend="torch")
    recorder = AddressCheckRecorder(captured)
    captured.capture(recorder)
    run(eager, 30)
    run(captured, 30)  # 15 not learning, then learning: two warm-ups, one capture, replays of each
    assert set(captured.iteration_fn.graphs) == {(False,), (True,)} and recorder.replays == 30 - 4
    _assert_same_training_state(captured, eager)
    updates = captured.advance(4)  # one replay of a 4-iteration graph (warm-ups first: run it three times)
    captured.advance(4)
    captured.advance(4)
    run(eager, 12)
    assert updates == 4 and (True,) * 4 in captured.iteration_fn.graphs and recorder.replays == 30 - 4 + 1
    _assert_same_training_state(captured, eager)
    assert torch.equal(captured.learner.target, eager.learner.target)
    assert torch.equal(captured.learner.optimizer.exp_avg_sq, eager.learner.optimizer.exp_avg_sq)
    assert captured.host_updates == eager.host_updates == int(eager.learner.updates) == 42 - LEARN_FROM + 1
    for confirm in (False, False, True, False, True, True):  # evaluation chunks: warm-ups, then recorded
        assert torch.equal(captured.evaluate(confirm), eager.evaluate(confirm))
    assert ("evaluate", False, 50) in captured.iteration_fn.graphs
    run(eager, 3)
    run(captured, 3)
    _assert_same_training_state(captured, eager)


def test_address_check_recorder_catches_a_moved_tensor():
    """The stand-in recorder's check fails when the iteration rebinds a state tensor instead of
    writing into it (what would break a real capture)."""
    from fastdqn.graphs import AddressCheckRecorder

    e = Engine(configs(1))
    e.capture(AddressCheckRecorder(e), warmup=0)
    e.step()
    bound = e.iteration

    def rebinding(learn):
        e.ep_return = e.ep_return.clone()
        return bound(learn)

    e.iteration = rebinding
    e.iteration_fn.graphs.clear()
    with pytest.raises(AssertionError, match="engine.ep_return"):
        e.step()


# --- 6. resume ---------------------------------------------------------------------------------
def test_resume_from_state_dict_continues_exactly():
    cfgs = configs(2, lr=[5e-3, 1e-2], tau=[1.0, 0.5])
    a = run(Engine(cfgs), 100)
    a.set_active([True, False])
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    b = run(Engine(cfgs), 7)  # a different state everywhere before loading
    b.load_state_dict(state)
    assert (b.host_env_steps, b.host_updates) == (a.host_env_steps, a.host_updates)
    run(a, 50)
    run(b, 50)
    assert a.host_updates == b.host_updates
    for x, y in [(a.learner.params, b.learner.params), (a.learner.target, b.learner.target), (a.obs, b.obs),
                 (a.replay.data, b.replay.data), (a.epsilon(), b.epsilon())]:
        assert torch.equal(x, y)
    assert a.read_metrics() == b.read_metrics()
    assert torch.equal(a.evaluate(), b.evaluate())


def test_select_keeps_chosen_agents_continuing_as_in_the_full_population():
    cfgs = configs(3, lr=[5e-3, 1e-2, 2e-3], tau=[1.0, 0.5, 1.0])
    full = run(Engine(cfgs), LEARN_FROM + 30)
    full.set_active([True, True, False])
    part = full.select([2, 0])
    assert part.agents == 2 and [c.seed for c in part.configs] == [2, 0]
    p2 = full.learner.params[2].clone()
    for _ in range(40):
        full.step()
        part.step()
        for new, old in ((0, 2), (1, 0)):
            assert torch.equal(part.obs[new], full.obs[old])
    assert part.host_updates == full.host_updates
    for new, old in ((0, 2), (1, 0)):
        torch.testing.assert_close(part.learner.params[new], full.learner.params[old], rtol=0, atol=1e-5)
        torch.testing.assert_close(part.learner.target[new], full.learner.target[old], rtol=0, atol=1e-5)
        torch.testing.assert_close(part.replay.data[new], full.replay.data[old], rtol=0, atol=1e-5)
        assert part.epsilon()[new].item() == full.epsilon()[old].item()
    assert torch.equal(part.learner.params[0], p2)  # still inactive


# --- 7. structural mismatches ---------------------------------------------------------------------
@pytest.mark.parametrize("field,value", [("hidden", (32, 16)), ("num_envs", 8), ("batch_size", 64),
                                         ("buffer_size", 3000), ("loss", "mse")])
def test_structural_mismatch_names_the_field(field, value):
    cfgs = population_configs(BASE, 3)
    cfgs[2] = cfgs[2].replace(**{field: value})
    with pytest.raises(ConfigError, match=f"^{field} differs"):
        check_population(cfgs)
    with pytest.raises(ConfigError, match=f"^{field} differs"):
        Engine(cfgs)


def test_first_differing_field_is_named_and_per_agent_fields_may_differ():
    cfgs = population_configs(BASE, 2)
    cfgs[1] = cfgs[1].replace(batch_size=64, num_envs=8)  # num_envs comes first in DQNConfig
    with pytest.raises(ConfigError, match="^num_envs differs"):
        check_population(cfgs)
    per = dict(seed=5, lr=1e-2, gamma=0.5, eps_start=0.5, eps_end=0.1, eps_decay=0.2, tau=0.5, target_period=3,
               grad_clip=1.0)
    assert set(per) == set(PER_AGENT_FIELDS)
    ok = [BASE, BASE.replace(**per)]
    assert check_population(ok) == ok
    with pytest.raises(ConfigError, match="lr"):  # each config is validated too
        check_population([BASE, BASE.replace(lr=-1e-3)])


def test_population_configs_seeds():
    cfgs = population_configs(BASE.replace(seed=7), 3)
    assert [c.seed for c in cfgs] == [7, 8, 9]
    assert all(c.replace(seed=7) == BASE.replace(seed=7) for c in cfgs)
    for bad in (0, True, 2.0):
        with pytest.raises(ConfigError):
            population_configs(BASE, bad)


# --- 8. a network without a hand-written backward ------------------------------------------------
def sequential():
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))


def to_module_layout(flat):
    """MLP flat rows [K, P] -> nn.Sequential's flat parameters (weight [out, in] then bias, per layer)."""
    return torch.stack([torch.cat([x.reshape(-1) for x in mlp_unflat(row, SIZES)]) for row in flat])


def to_mlp_layout(flat):
    """Inverse of :func:`to_module_layout`."""
    rows = []
    for row in flat:
        tensors, off = [], 0
        for i, o in zip(SIZES[:-1], SIZES[1:]):
            tensors += [row[off:off + o * i].reshape(o, i), row[off + o * i:off + o * i + o]]
            off += o * i + o
        rows.append(mlp_flat(tensors))
    return torch.stack(rows)


@pytest.mark.parametrize("loss,double_dqn", [("huber", True), ("mse", False)])
def test_autograd_net_gradients_match_hand_written_backward(loss, double_dqn):
    mlp, auto = MLP(4, 2, hidden=(16, 16)), AutogradQNet(sequential(), 4, 2)
    assert auto.num_params == mlp.num_params
    params = torch.stack([mlp.init(torch.Generator().manual_seed(s)) for s in (0, 1)])
    target = torch.stack([mlp.init(torch.Generator().manual_seed(s)) for s in (2, 3)])
    kw = dict(lr=1e-2, gamma=[0.99, 0.9], loss=loss, double_dqn=double_dqn, target_period=5)
    lm, la = Learner(mlp, params.clone(), **kw), Learner(auto, to_module_layout(params), **kw)
    lm.target.copy_(target)
    la.target.copy_(to_module_layout(target))
    # the layout mapping itself: the module computes what the formula computes
    q, _ = auto.forward(auto.views(la.params), torch.ones(2, 3, 4))
    torch.testing.assert_close(q[1], mlp_formula(mlp_unflat(params[1], SIZES), torch.ones(3, 4)))
    batch = random_batch(2, seed=5)
    batch = batch._replace(terminated=(torch.rand(2, 32, generator=torch.Generator().manual_seed(6)) < 0.3).float())
    loss_m, grads_m = lm.loss_and_grads(batch)
    loss_a, grads_a = la.loss_and_grads(batch)
    torch.testing.assert_close(loss_a, loss_m, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(to_mlp_layout(grads_a), grads_m, rtol=1e-5, atol=1e-6)
    assert grads_m.abs().sum() > 0


def test_engine_runs_an_autograd_net_like_the_mlp():
    cfgs = configs(2, lr=[5e-3, 1e-2])
    auto = AutogradQNet(sequential(), 4, 2)
    a, m = Engine(cfgs, net=auto), Engine(cfgs)
    assert a.learner.params.shape == m.learner.params.shape
    # start from the same weights (mapped to the module's layout); the rest of the state is seed-given
    a.learner.params.copy_(to_module_layout(m.learner.params))
    a.learner.target.copy_(a.learner.params)
    for _ in range(LEARN_FROM + 30):
        a.step()
        m.step()
        assert torch.equal(a.obs, m.obs)
    assert a.host_updates == 31
    torch.testing.assert_close(to_mlp_layout(a.learner.params), m.learner.params, rtol=0, atol=1e-5)
    assert a.evaluate().shape == (2, BASE.eval_episodes)


# --- 9. what the replay stores and samples inside the engine ---------------------------------------
def test_stored_transitions_and_sampled_indices(gym_single_reference):
    cfgs = [c.replace(buffer_size=40) for c in configs(2)]  # 4 envs: the ring wraps after 10 iterations
    engine = Engine(cfgs)
    before, after = [], []
    for _ in range(13):  # 52 transitions per agent: pos 52 % 40 = 12, size 40
        before.append(engine.obs.clone())
        engine.step()
        after.append(engine.obs.clone())
    assert (int(engine.replay.pos), int(engine.replay.size)) == (12, 40)
    # transition (iteration t, env i) sits in slot (4 t + i) % 40; iterations 0..2 were overwritten
    slot_of = {(4 * t + i) % 40: (t, i) for t in range(3, 13) for i in range(4)}
    assert sorted(slot_of) == list(range(40))
    for k in range(2):
        obs, action, reward, next_obs, term, trunc = decode(engine.replay.data[k])
        for slot, (t, i) in slot_of.items():
            assert torch.equal(obs[slot], before[t][k, i]), (k, slot)
            if not term[slot] and not trunc[slot]:
                assert torch.equal(next_obs[slot], after[t][k, i]), (k, slot)  # no reset in between
        assert torch.equal(reward, torch.ones(40))
        # each stored (obs, action) steps by Gymnasium's physics to the stored next_obs and flag
        ref_next, ref_term, _ = gym_single_reference(obs.double().numpy(), action.long().numpy())
        np.testing.assert_allclose(next_obs.numpy(), ref_next, rtol=0, atol=1e-5)
        assert term.bool().tolist() == ref_term.tolist()

    # index = floor(bits * 40 / 2**32) by hand: 107374182 * 40 = 4294967280 < 2**32 -> 0,
    # 107374183 * 40 = 4294967320 -> 1, 2**31 - 1 -> 19, 2**31 -> 20, 2**32 - 1 -> 39
    bits = torch.tensor([[0, 107374182, 107374183, 2**31 - 1, 2**31, 2**32 - 1],
                         [2**32 - 1, 2**31, 0, 107374183, 2**31 - 1, 107374182]], dtype=torch.int64)
    slots = [[0, 0, 1, 19, 20, 39], [39, 20, 0, 1, 19, 0]]
    b = engine.replay.sample(bits)
    for k in range(2):
        for j, slot in enumerate(slots[k]):
            t, i = slot_of[slot]
            assert torch.equal(b.obs[k, j], before[t][k, i]), (k, j)


# --- metrics and evaluation ---------------------------------------------------------------------
def test_read_metrics_counts_finished_episodes():
    engine = run(Engine(configs(2)), 60)  # 240 transitions per agent, all in the buffer
    m = engine.read_metrics()
    _, _, _, _, term, trunc = decode(engine.replay.data[:, :240])
    done = (term + trunc).view(2, 60, 4) > 0  # [agent, iteration, env]
    for k in range(2):
        episodes = int(done[k].sum())
        # every reward is 1 and every env starts at iteration 0: the finished episodes of env i
        # returned, together, (its last finishing iteration + 1)
        last = [max((t for t in range(60) if done[k, t, i]), default=-1) + 1 for i in range(4)]
        assert m["episodes"][k] == episodes > 0
        assert m["return_sum"][k] == sum(last)
        assert m["epsilon"][k] == pytest.approx(linear_eps(engine.configs[k], 240), abs=1e-6)
    assert engine.read_metrics()["episodes"] == [0, 0]  # cleared by the read


def test_evaluate_is_greedy_per_agent():
    engine = Engine([c.replace(eval_episodes=6) for c in configs(2)])
    w = torch.tensor([0.1, 0.3, 1.0, 0.3])  # conftest's balancing controller: push right iff s @ w > 0
    left = [torch.zeros(16, 4), torch.zeros(16), torch.zeros(16, 16), torch.zeros(16), torch.zeros(2, 16),
            torch.tensor([1.0, 0.0])]  # Q = (1, 0): always push left
    w0 = torch.zeros(16, 4)
    w0[0], w0[1] = w, -w  # h = (relu(s.w), relu(-s.w), 0, ...)
    w1 = torch.zeros(16, 16)
    w1[0, 0] = w1[1, 1] = 1.0
    w2 = torch.zeros(2, 16)
    w2[1, 0], w2[1, 1] = 1.0, -1.0  # Q = (0, s.w)
    balance = [w0, torch.zeros(16), w1, torch.zeros(16), w2, torch.zeros(2)]
    engine.learner.params.copy_(torch.stack([mlp_flat(left), mlp_flat(balance)]))
    obs = engine.obs.clone()
    returns = engine.evaluate()
    assert returns.shape == (2, 6)
    assert returns[1].tolist() == [500.0] * 6  # CartPole-v1 truncates at 500
    # always-left episode lengths from Gymnasium's own resets (same U(-0.05, 0.05) start distribution)
    env, lengths = CartPoleEnv(), set()
    for seed in range(300):
        env.reset(seed=seed)
        n, done = 0, False
        while not done:
            _, _, done, _, _ = env.step(0)
            n += 1
        lengths.add(n)
    assert all(min(lengths) <= r <= max(lengths) for r in returns[0].tolist()), (returns[0], lengths)
    assert torch.equal(engine.obs, obs)  # evaluation leaves the training envs alone


def _assert_same_training_state(fused, plain):
    """Observations, running returns, counters, parameters and replay rings equal bit for bit."""
    for name in ("obs", "ep_return", "finished", "finished_return", "env_steps", "draws"):
        assert torch.equal(getattr(fused, name), getattr(plain, name)), name
    assert torch.equal(fused.learner.params, plain.learner.params)
    assert torch.equal(fused.replay.data, plain.replay.data)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "MountainCar-v0"])
@pytest.mark.parametrize("agents", [1, 3])
def test_fused_numba_collect_equals_the_tensor_program(agents, env_id):
    """The CPU fast path (one numba kernel for act, step, store, bookkeeping and the sample
    indices: CartPole's own, and the generic one around Acrobot's and MountainCar's step kernels)
    computes exactly what the engine's tensor program computes with the same numba env:
    parameters, replay rings, observations, running returns and counters bit for bit."""
    cfg = preset("fast").replace(env_id=env_id, num_envs=4, batch_size=32, learning_starts=64, buffer_size=500,
                                 hidden=(16, 16), eps_decay=0.2, total_steps=4000, torch_threads=1)
    configs = [cfg.replace(seed=7 + k, eps_start=1.0 - 0.2 * k) for k in range(agents)]
    fused = Engine(configs, backend="numba", fuse=True)
    plain = Engine(configs, backend="numba", fuse=True)
    plain._collect_kernel = None  # the tensor program; both act through the numba MLP loop (tested below)
    assert fused._collect_kernel is not None and fused._act_kernel is not None
    for _ in range(520):  # wraps the 500-row rings; episode ends and resets (truncations at 200, 400 or 500)
        fused.step()
        plain.step()
    _assert_same_training_state(fused, plain)
    assert int(fused.replay.pos) == int(plain.replay.pos) == 520 * 4 % 500
    assert torch.equal(fused.env.state, plain.env.state) and torch.equal(fused.env.elapsed_steps, plain.env.elapsed_steps)
    assert float(fused.finished.sum()) >= 4 * agents  # episodes really ended


def test_threaded_fused_collect_keeps_torchs_thread_count():
    """numba's OpenMP layer sets the process's thread count when a threaded kernel runs, and torch's
    intra-op pool shares it: after CartPole's threaded collect (4,096 envs) the trainer's single
    torch thread must still be one."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        e = Engine([preset("fast").replace(num_envs=4096, batch_size=64, learning_starts=10**9)], backend="numba")
        assert e.env.num_envs >= e.env._kernels.PARALLEL_MIN_ENVS  # the threaded kernel
        run(e, 2)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_threaded_fused_collect_equals_the_tensor_program(monkeypatch):
    """The threaded variant of the generic fused collect (batches at or above the calibrated
    switch: here forced to 256 envs) computes what the tensor program computes, bit for bit."""
    monkeypatch.setenv("FASTDQN_PARALLEL_MIN_ENVS", "256")
    cfg = preset("mountaincar").replace(num_envs=256, batch_size=16, learning_starts=512, buffer_size=3000,
                                        hidden=(256,), train_frequency=2, gradient_steps=1, torch_threads=1)
    configs = [cfg.replace(seed=3 + k) for k in range(2)]
    fused = Engine(configs, backend="numba", fuse=True)
    plain = Engine(configs, backend="numba", fuse=False)
    assert fused.env.parallel and fused._collect_kernel is not None and fused._act_kernel is None  # 512 x 1280 MACs
    for _ in range(210):  # every env truncates at 200
        fused.step()
        plain.step()
    _assert_same_training_state(fused, plain)
    assert float(fused.finished.sum()) == 2 * 256


@pytest.mark.parametrize("hidden", [(16, 16), (64, 64), (256,)])
def test_numba_act_picks_the_argmax_of_the_tensor_forward(hidden):
    """The act step's numba MLP loop returns the argmax of the network's tensor forward (where
    the two best action values are not within rounding of each other), for several agents."""
    from fastdqn.kernels.mlp_numba import greedy

    net = MLP(6, 3, hidden)
    params = torch.stack([net.init(torch.Generator().manual_seed(s)) for s in range(3)])
    obs = torch.randn(3, 500, 6, generator=torch.Generator().manual_seed(1)) * 3
    q = net.forward(net.views(params), obs)[0]
    out = torch.full((3, 500), -1, dtype=torch.int64)
    greedy(params.numpy(), np.array(net.sizes, dtype=np.int64), obs.numpy(), out.numpy())
    top2 = q.topk(2, dim=2).values
    clear = (top2[..., 0] - top2[..., 1]) > 1e-4 * top2[..., 0].abs().clamp(min=1)
    assert clear.float().mean() > 0.95
    assert torch.equal(out[clear], q.argmax(dim=2)[clear])
    engine = Engine([preset("mountaincar").replace(hidden=hidden, torch_threads=1)], backend="numba")
    assert engine._act_kernel is not None  # one env per agent: the act step takes this loop
    assert torch.equal(engine.greedy_actions(), engine.net.forward(engine.learner.param_views, engine.obs)[0].argmax(2))
