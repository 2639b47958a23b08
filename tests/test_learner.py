"""Bellman targets, TD loss, gradients, Adam and the update step of :class:`fastdqn.learner.Learner`,
for a population of K agents (the leading dimension).

References: hand-computed targets and losses on tiny batches (Q values made known by setting the
network's weights), autograd on a from-the-formula MLP (``reference.mlp_formula``), and a
from-the-formula re-implementation of the DQN update in this file (that MLP + ``torch.optim.Adam``
per agent), never fastdqn's own output. Flat parameters are built and read through the documented
layout (``mlp_layout.mlp_flat`` / ``mlp_unflat``).
"""

from __future__ import annotations

import io
import math

import pytest
import torch
from mlp_layout import mlp_flat, mlp_unflat
from reference import mlp_formula

from fastdqn.learner import MLP, Adam, Learner, td_target
from fastdqn.replay import Batch

F32 = torch.float32


def t(x, dtype=F32):
    return torch.tensor(x, dtype=dtype)


# --- td_target ------------------------------------------------------------------------------
# four transitions; target and online next-Q tables chosen so their argmaxes differ in every row
REWARDS = [1.0, 0.5, -1.0, 2.0]
NEXT_Q_TARGET = [[1.0, 3.0], [4.0, 2.0], [5.0, 6.0], [0.5, -1.0]]  # argmax 1, 0, 1, 0
NEXT_Q_ONLINE = [[2.0, 1.0], [1.0, 3.0], [7.0, 0.0], [0.0, 1.0]]  # argmax 0, 1, 0, 1
TERMINATED = [False, False, True, False]
GAMMA = 0.9


@pytest.mark.parametrize("float_flags", [False, True])
def test_td_target_plain_dqn_by_hand(float_flags):
    term = t(TERMINATED) if float_flags else t(TERMINATED, torch.bool)
    y = td_target(t(REWARDS), t(NEXT_Q_TARGET), term, GAMMA)
    # r + 0.9 * max_a Q_target(s', a); row 2 terminated -> r exactly
    expected = [1.0 + 0.9 * 3.0, 0.5 + 0.9 * 4.0, -1.0, 2.0 + 0.9 * 0.5]  # 3.7, 4.1, -1, 2.45
    torch.testing.assert_close(y, t(expected))
    assert y[2].item() == -1.0


def test_td_target_double_dqn_by_hand():
    y = td_target(t(REWARDS), t(NEXT_Q_TARGET), t(TERMINATED, torch.bool), GAMMA, next_q_online=t(NEXT_Q_ONLINE))
    # a* = argmax online = 0, 1, 0, 1; value from the target table: 1, 2, (5, terminated), -1
    expected = [1.0 + 0.9 * 1.0, 0.5 + 0.9 * 2.0, -1.0, 2.0 + 0.9 * -1.0]  # 1.9, 2.3, -1, 1.1
    torch.testing.assert_close(y, t(expected))
    assert y[2].item() == -1.0


def test_td_target_terminated_is_reward_exactly_even_with_huge_next_q():
    y = td_target(t([0.25, 3.0]), t([[1e30, 5.0], [-1e30, 2.0]]), t([True, True], torch.bool), 0.99)
    assert y.tolist() == [0.25, 3.0]
    y = td_target(t([0.25, 3.0]), t([[1e30, 5.0], [-1e30, 2.0]]), t([1.0, 1.0]), 0.99)  # 0/1 float flags
    assert y.tolist() == [0.25, 3.0]


def test_td_target_gamma_zero_and_one():
    r, nq, term = t([1.0, 2.0]), t([[3.0, 4.0], [5.0, -6.0]]), t([False, False], torch.bool)
    torch.testing.assert_close(td_target(r, nq, term, 0.0), t([1.0, 2.0]))
    torch.testing.assert_close(td_target(r, nq, term, 1.0), t([5.0, 7.0]))


def test_td_target_per_agent_gamma_over_the_last_dim():
    # K = 3 agents, the same 4 transitions, gamma [K, 1] = 0.9, 0, 1
    k = 3
    r, term = t([REWARDS] * k), t([TERMINATED] * k)
    nq_t, nq_o = t([NEXT_Q_TARGET] * k), t([NEXT_Q_ONLINE] * k)
    gamma = t([[0.9], [0.0], [1.0]])
    y = td_target(r, nq_t, term, gamma)
    expected = [[3.7, 4.1, -1.0, 2.45],  # as in the plain test
                REWARDS,  # gamma 0: the rewards
                [1.0 + 3.0, 0.5 + 4.0, -1.0, 2.0 + 0.5]]
    torch.testing.assert_close(y, t(expected))
    y = td_target(r, nq_t, term, gamma, next_q_online=nq_o)
    torch.testing.assert_close(y, t([[1.9, 2.3, -1.0, 1.1], REWARDS, [2.0, 2.5, -1.0, 1.0]]))


# --- the MLP: layout, forward, hand-written backward --------------------------------------------
def random_mlp_params(sizes, k, seed):
    """K agents' flat parameters made from random ``[out, in]`` weights through the layout helper."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(k):
        tensors = []
        for i, o in zip(sizes[:-1], sizes[1:]):
            tensors += [torch.randn(o, i, generator=g) / math.sqrt(i), torch.randn(o, generator=g) * 0.1]
        rows.append(mlp_flat(tensors))
    return torch.stack(rows)


def test_mlp_num_params_and_views_follow_the_layout():
    net = MLP(4, 2, hidden=(16, 8))
    assert net.num_params == 4 * 16 + 16 + 16 * 8 + 8 + 8 * 2 + 2
    params = random_mlp_params(net.sizes, 2, seed=0)
    views = net.views(params)
    assert [tuple(w.shape) for w, _ in views] == [(2, 4, 16), (2, 16, 8), (2, 8, 2)]
    assert [tuple(b.shape) for _, b in views] == [(2, 1, 16), (2, 1, 8), (2, 1, 2)]
    for k in range(2):
        tensors = mlp_unflat(params[k], net.sizes)
        for (w, b), (w_ref, b_ref) in zip(views, zip(tensors[0::2], tensors[1::2])):
            assert torch.equal(w[k], w_ref.T) and torch.equal(b[k, 0], b_ref)
    params.add_(1.0)  # views follow in-place updates of the parameter tensor
    assert torch.equal(views[0][1][1, 0], mlp_unflat(params[1], net.sizes)[1])


def test_mlp_init_is_nn_linear_default_init():
    net = MLP(4, 2, hidden=(64, 32))
    p = net.init(torch.Generator().manual_seed(0))
    assert p.shape == (net.num_params,) and p.dtype == F32
    assert torch.equal(p, net.init(torch.Generator().manual_seed(0)))
    assert not torch.equal(p, net.init(torch.Generator().manual_seed(1)))
    tensors = mlp_unflat(p, net.sizes)
    for w, b in zip(tensors[0::2], tensors[1::2]):
        bound = 1.0 / math.sqrt(w.shape[1])  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias
        for x in (w, b):
            assert x.abs().max() <= bound
        assert w.abs().max() > 0.9 * bound and w.min() < 0 < w.max()  # spans the range
        assert abs(w.mean().item()) < 0.1 * bound


def test_mlp_forward_and_backward_match_autograd():
    net = MLP(4, 3, hidden=(16, 8))
    k, b, rows = 3, 10, 6
    params = random_mlp_params(net.sizes, k, seed=1)
    obs = torch.randn(k, b, 4, generator=torch.Generator().manual_seed(2))
    q, inputs = net.forward(net.views(params), obs, need_grad=True)
    g = torch.randn(k, rows, 3, generator=torch.Generator().manual_seed(3))  # dL/dQ for the first 6 rows only
    grads = net.backward(net.views(params), inputs, g)
    assert grads.shape == (k, net.num_params)
    for a in range(k):
        tensors = [x.detach().clone().requires_grad_(True) for x in mlp_unflat(params[a], net.sizes)]
        q_ref = mlp_formula(tensors, obs[a])
        torch.testing.assert_close(q[a], q_ref.detach(), rtol=1e-5, atol=1e-6)
        (q_ref[:rows] * g[a]).sum().backward()
        torch.testing.assert_close(grads[a], mlp_flat([x.grad for x in tensors]), rtol=1e-5, atol=1e-6)


# --- Learner loss with known Q values ---------------------------------------------------------
KNOWN = MLP(4, 2, hidden=(4,))
ONLINE_ROWS = [[1, 0, 0, 0], [0, 1, 0, 0]]  # Q_online(s) = (s0, s1)
TARGET_ROWS = [[0, 0, 1, 0], [0, 0, 0, 1]]  # Q_target(s) = (s2, s3)


def readout(rows) -> torch.Tensor:
    """Flat parameters of MLP(4, 2, hidden=(4,)) computing Q(s) = rows @ s for non-negative s:
    identity hidden layer (ReLU passes s >= 0 unchanged), zero biases, output weights ``rows``."""
    return mlp_flat([torch.eye(4), torch.zeros(4), t(rows), torch.zeros(2)])


def stack(batch: Batch, k: int) -> Batch:
    return Batch(*(x.expand(k, *x.shape).clone() for x in batch))


BATCH = Batch(
    obs=t([[1, 2, 0, 0], [3, 1, 0, 0], [0.5, 0.5, 0, 0], [2, 4, 0, 0]]),
    actions=t([0, 1, 1, 0], torch.int64),  # Q_online(s, a) = 1, 1, 0.5, 2
    rewards=t([1.0, 0.5, -1.0, 2.0]),
    # Q_online(s') = (1,3) (4,2) (5,6) (0.5,0): argmax 1, 0, 1, 0
    # Q_target(s') = (2,1) (1,3) (7,0) (0,1):   argmax 0, 1, 0, 1
    next_obs=t([[1, 3, 2, 1], [4, 2, 1, 3], [5, 6, 7, 0], [0.5, 0, 0, 1]]),
    terminated=t([0, 0, 1, 0]),
    truncated=t([0, 1, 0, 1]),  # truncated rows still bootstrap
)


def known_learner(double_dqn: bool, loss: str) -> Learner:
    """Two agents with the online net ONLINE_ROWS: agent 0 without a target network
    (target_period 0), agent 1 with the target net TARGET_ROWS."""
    params = torch.stack([readout(ONLINE_ROWS)] * 2)
    learner = Learner(KNOWN, params, lr=1e-3, gamma=0.9, loss=loss, double_dqn=double_dqn, target_period=[0, 5])
    learner.target[1].copy_(readout(TARGET_ROWS))
    return learner


def test_known_network_outputs():
    params = torch.stack([readout(ONLINE_ROWS), readout(TARGET_ROWS)])
    q, _ = KNOWN.forward(KNOWN.views(params), stack(BATCH, 2).next_obs)
    torch.testing.assert_close(q, t([[[1, 3], [4, 2], [5, 6], [0.5, 0]], [[2, 1], [1, 3], [7, 0], [0, 1]]]))


# Agent 0 (no target network): y = r + 0.9 * max Q_online(s') = 3.7, 4.1, -1 (terminated), 2.45
# (double DQN without a target net values the online argmax with the online net: the same max);
# errors q - y = -2.7, -3.1, 1.5, -0.45 -> MSE = (7.29 + 9.61 + 2.25 + 0.2025) / 4 = 4.838125,
# Huber (smooth L1, beta 1) = (2.2 + 2.6 + 1.0 + 0.10125) / 4 = 1.4753125.
# Agent 1, plain DQN: y = r + 0.9 * max Q_target(s') = 2.8, 3.2, -1, 2.9; errors -1.8, -2.2, 1.5, -0.9
# -> MSE = (3.24 + 4.84 + 2.25 + 0.81) / 4 = 2.785; Huber = (1.3 + 1.7 + 1.0 + 0.405) / 4 = 1.10125.
# Agent 1, double DQN: a* = argmax Q_online(s') = 1, 0, 1, 0 -> Q_target(s', a*) = 1, 1, (0), 0;
# y = 1.9, 1.4, -1, 2.0; errors -0.9, -0.4, 1.5, 0 -> MSE = (0.81 + 0.16 + 2.25) / 4 = 0.805;
# Huber = (0.405 + 0.08 + 1.0 + 0) / 4 = 0.37125.
@pytest.mark.parametrize("double_dqn,loss,expected", [
    (False, "mse", [4.838125, 2.785]),
    (False, "huber", [1.4753125, 1.10125]),
    (True, "mse", [4.838125, 0.805]),
    (True, "huber", [1.4753125, 0.37125]),
])
def test_loss_with_known_networks(double_dqn, loss, expected):
    got, grads = known_learner(double_dqn, loss).loss_and_grads(stack(BATCH, 2))
    assert got.shape == (2,) and grads.shape == (2, KNOWN.num_params)
    assert got.tolist() == pytest.approx(expected, rel=1e-6)


def test_truncated_flag_does_not_stop_bootstrap():
    learner = known_learner(False, "mse")
    no_trunc = stack(BATCH._replace(truncated=torch.zeros(4)), 2)
    all_trunc = stack(BATCH._replace(truncated=torch.ones(4)), 2)
    assert learner.loss_and_grads(no_trunc)[0].tolist() == learner.loss_and_grads(all_trunc)[0].tolist()
    assert learner.loss_and_grads(all_trunc)[0].tolist() == pytest.approx([4.838125, 2.785], rel=1e-6)
    # whereas terminating every row removes the bootstrap: y = r
    # errors 1-1, 1-0.5, 0.5+1, 2-2 -> (0 + 0.25 + 2.25 + 0) / 4 = 0.625 for both agents
    all_term = stack(BATCH._replace(terminated=torch.ones(4)), 2)
    assert learner.loss_and_grads(all_term)[0].tolist() == pytest.approx([0.625, 0.625], rel=1e-6)


# --- the update step against a from-the-formula reference ----------------------------------------
SIZES = [4, 16, 8, 2]


def ref_loss(online, target, b: Batch, gamma, double_dqn, kind):
    """One agent's DQN loss (``b`` is that agent's [B] slice), written from the formulas."""
    q_sa = mlp_formula(online, b.obs)[torch.arange(len(b.actions)), b.actions]
    with torch.no_grad():
        boot = target if target is not None else online
        nq = mlp_formula(boot, b.next_obs)
        if double_dqn and target is not None:
            v = nq[torch.arange(len(nq)), mlp_formula(online, b.next_obs).argmax(dim=1)]
        else:
            v = nq.max(dim=1).values
        y = b.rewards + gamma * (1.0 - b.terminated) * v
    d = q_sa - y
    if kind == "mse":
        return (d * d).mean()
    return torch.where(d.abs() < 1.0, 0.5 * d * d, d.abs() - 0.5).mean()


def random_batches(n_batches, k=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [Batch(torch.randn(k, size, 4, generator=g), torch.randint(0, 2, (k, size), generator=g),
                  torch.randn(k, size, generator=g), torch.randn(k, size, 4, generator=g),
                  (torch.rand(k, size, generator=g) < 0.2).float(), (torch.rand(k, size, generator=g) < 0.2).float())
            for _ in range(n_batches)]


def agent_slice(b: Batch, k: int) -> Batch:
    return Batch(*(x[k] for x in b))


def per_agent(v, k):
    return v[k] if isinstance(v, list) else v


@pytest.mark.parametrize("loss", ["mse", "huber"])
@pytest.mark.parametrize("double_dqn", [False, True])
def test_loss_and_grads_match_autograd(loss, double_dqn):
    # Adam is invariant to the gradient's scale, so the update test alone would miss a wrong factor
    k, gamma = 2, [0.97, 0.5]
    params = random_mlp_params(SIZES, k, seed=12)
    learner = Learner(MLP(4, 2, hidden=(16, 8)), params, lr=1e-2, gamma=gamma, loss=loss, double_dqn=double_dqn,
                      target_period=[5, 0])  # agent 1: no target network
    learner.target[0].copy_(random_mlp_params(SIZES, 1, seed=13)[0])
    batch = random_batches(1, k=k, seed=14)[0]
    got_loss, got_grads = learner.loss_and_grads(batch)
    for a in range(k):
        online = [x.detach().clone().requires_grad_(True) for x in mlp_unflat(params[a], SIZES)]
        target = mlp_unflat(learner.target[a], SIZES) if a == 0 else None
        ref = ref_loss(online, target, agent_slice(batch, a), gamma[a], double_dqn, loss)
        ref.backward()
        torch.testing.assert_close(got_loss[a], ref.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got_grads[a], mlp_flat([x.grad for x in online]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss,double_dqn,target_period,grad_clip", [
    ("mse", False, 0, 0.0),  # the notebook setting: no target network
    ("huber", True, 2, 0.0),  # double DQN, hard copy every 2 updates
    ("mse", False, 3, 0.5),  # gradient-norm clipping
    ("huber", True, [2, 0], [0.05, 0.0]),  # per agent: agent 0 clips, has a target net; agent 1 neither
])
def test_update_matches_reference_dqn_with_torch_adam(loss, double_dqn, target_period, grad_clip):
    k, lr, gamma = 2, [1e-2, 3e-3], [0.97, 0.9]
    net = MLP(4, 2, hidden=(16, 8))
    params = random_mlp_params(SIZES, k, seed=4)
    refs = []
    for a in range(k):
        online = [x.detach().clone().requires_grad_(True) for x in mlp_unflat(params[a], SIZES)]
        target = [x.detach().clone() for x in online] if per_agent(target_period, a) else None
        refs.append([online, target, torch.optim.Adam(online, lr=lr[a])])
    learner = Learner(net, params.clone(), lr=lr, gamma=gamma, loss=loss, double_dqn=double_dqn,
                      target_period=target_period, grad_clip=grad_clip)
    clipped = False
    for step, b in enumerate(random_batches(5, k=k), start=1):
        ref_losses = []
        for a, ref in enumerate(refs):
            online, target, opt = ref
            ref_l = ref_loss(online, target, agent_slice(b, a), gamma[a], double_dqn, loss)
            opt.zero_grad()
            ref_l.backward()
            clip, period = per_agent(grad_clip, a), per_agent(target_period, a)
            if clip:
                norm = torch.sqrt(sum((p.grad * p.grad).sum() for p in online))
                clipped |= float(norm) > clip
                scale = min(1.0, clip / (float(norm) + 1e-6))
                for p in online:
                    p.grad.mul_(scale)
            opt.step()
            if period and step % period == 0:
                ref[1] = [p.detach().clone() for p in online]
            ref_losses.append(ref_l.detach())

        got = learner.update(b)
        assert got.shape == (k,)
        torch.testing.assert_close(got, torch.stack(ref_losses), rtol=1e-5, atol=1e-6)
        for a, (online, _, _) in enumerate(refs):
            torch.testing.assert_close(learner.params[a], mlp_flat([p.detach() for p in online]), rtol=1e-5, atol=1e-6)
    assert learner.updates.shape == () and int(learner.updates) == 5
    if grad_clip:
        assert clipped  # the clipping branch was exercised


def flat_copy(x):
    return x.detach().clone()


def test_target_network_hard_copy_every_period():
    params = random_mlp_params([4, 8, 2], 2, seed=5)
    learner = Learner(MLP(4, 2, hidden=(8,)), params, lr=1e-2, gamma=0.9, loss="mse", double_dqn=False,
                      target_period=[3, 2], tau=1.0)
    periods = [3, 2]
    snapshot = flat_copy(learner.params)  # the target starts as a copy of the online net
    assert torch.equal(learner.target, snapshot)
    for step, b in enumerate(random_batches(7, seed=3), start=1):
        learner.update(b)
        online, target = flat_copy(learner.params), flat_copy(learner.target)
        for a, period in enumerate(periods):
            if step % period == 0:
                assert torch.equal(target[a], online[a]), (a, step)
                snapshot[a] = online[a]
            else:
                assert torch.equal(target[a], snapshot[a]), (a, step)  # untouched since the last copy
                assert not torch.allclose(target[a], online[a]), (a, step)  # and behind the online net


@pytest.mark.parametrize("tau,target_period", [([0.5, 0.2], [1, 3]), ([1.0, 0.3], [2, 5])])
def test_target_network_polyak(tau, target_period):
    params = random_mlp_params([4, 8, 2], 2, seed=6)
    learner = Learner(MLP(4, 2, hidden=(8,)), params, lr=1e-2, gamma=0.9, loss="mse", double_dqn=True,
                      target_period=target_period, tau=tau)
    old_target = flat_copy(learner.target)
    for step, b in enumerate(random_batches(4, seed=4), start=1):
        learner.update(b)
        online = flat_copy(learner.params)
        for a in range(2):
            if tau[a] < 1:  # Polyak every update, whatever target_period says
                expected = (1 - tau[a]) * old_target[a] + tau[a] * online[a]
                torch.testing.assert_close(learner.target[a], expected, rtol=1e-6, atol=1e-7)
            else:  # hard copy every target_period updates
                expected = online[a] if step % target_period[a] == 0 else old_target[a]
                assert torch.equal(learner.target[a], expected)
        old_target = flat_copy(learner.target)
    # a Polyak target is a real average: strictly behind the online net
    assert not torch.allclose(old_target[1], online[1])


def test_inactive_agent_keeps_params_and_target_exactly():
    params = random_mlp_params([4, 8, 2], 2, seed=7)
    learner = Learner(MLP(4, 2, hidden=(8,)), params, lr=1e-2, gamma=0.9, loss="huber", double_dqn=True,
                      target_period=1, tau=[1.0, 0.5])
    batches = random_batches(6, seed=8)
    learner.update(batches[0])
    learner.set_active(torch.tensor([False, True]))
    p0, t0 = flat_copy(learner.params), flat_copy(learner.target)
    for b in batches[1:4]:
        learner.update(b)
    assert torch.equal(learner.params[0], p0[0]) and torch.equal(learner.target[0], t0[0])
    assert not torch.allclose(learner.params[1], p0[1]) and not torch.allclose(learner.target[1], t0[1])
    learner.set_active(torch.tensor([True, True]))  # re-activated: it learns again
    learner.update(batches[4])
    assert not torch.allclose(learner.params[0], p0[0])
    assert torch.equal(learner.target[0], learner.params[0])  # target_period 1, tau 1


def test_state_dict_round_trip_resumes_identically():
    sizes = [4, 8, 8, 2]
    net = MLP(4, 2, hidden=(8, 8))
    kw = dict(lr=[1e-2, 2e-3], gamma=0.9, loss="huber", double_dqn=True, target_period=[2, 3])
    a = Learner(net, random_mlp_params(sizes, 2, seed=9), **kw)
    batches = random_batches(4, seed=5)
    for b in batches[:3]:
        a.update(b)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)  # checkpoints load with weights_only=True
    buf.seek(0)
    state = torch.load(buf, weights_only=True)

    # different initial weights: everything must come from the state
    b_learner = Learner(net, random_mlp_params(sizes, 2, seed=99), **kw)
    b_learner.load_state_dict(state)
    assert int(b_learner.updates) == 3
    la, lb = a.update(batches[3]), b_learner.update(batches[3])
    assert torch.equal(la, lb)
    assert torch.equal(a.params, b_learner.params)  # Adam moments and step restored too, else this step would differ
    assert torch.equal(a.target, b_learner.target)  # update 4 copies agent 0's target in both, not agent 1's
    assert not torch.equal(a.target[1], a.params[1])

    with pytest.raises(ValueError, match="shape"):
        Learner(MLP(4, 2, hidden=(8,)), random_mlp_params([4, 8, 2], 2, seed=0), **kw).load_state_dict(state)


# --- Adam against torch.optim.Adam ----------------------------------------------------------
def adam_against_torch(step_fn, adam: Adam, start: torch.Tensor, lrs, steps=6):
    refs = [start[a].clone().requires_grad_(True) for a in range(len(lrs))]
    opts = [torch.optim.Adam([p], lr=lr) for p, lr in zip(refs, lrs)]
    g = torch.Generator().manual_seed(10)
    lr = t(lrs)[:, None]
    for _ in range(steps):
        grads = torch.randn(start.shape, generator=g) * torch.tensor([1.0, 1e-3, 10.0])[:, None]
        for p, opt, gr in zip(refs, opts, grads):
            p.grad = gr.clone()
            opt.step()
        step_fn(grads, lr)
        for a, (p, l_a) in enumerate(zip(refs, lrs)):
            if l_a == 0:
                assert torch.equal(adam.params[a], start[a])  # lr 0 leaves the agent exactly unchanged
            else:
                torch.testing.assert_close(adam.params[a], p.detach(), rtol=1e-5, atol=1e-6)
    assert int(adam.step_count) == steps


def test_adam_matches_torch_optim_adam_per_agent_lr():
    start = torch.randn(3, 50, generator=torch.Generator().manual_seed(11))
    adam = Adam(start.clone())
    adam_against_torch(adam.step, adam, start, [1e-2, 0.0, 3e-3])


def test_adam_compiled_plain_math_matches_torch_optim_adam():
    torch._dynamo.reset()
    start = torch.randn(3, 50, generator=torch.Generator().manual_seed(11))
    adam = Adam(start.clone())
    step = torch.compile(lambda g, lr: adam.step(g, lr), fullgraph=True)
    adam_against_torch(step, adam, start, [1e-2, 0.0, 3e-3])


def _conv_reference(net, flat: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """MinAtar's network written with torch.nn.functional.conv2d and plain matmuls from one
    agent's parameter row (the conv weight stored as [C*3*3, filters], C-major then 3x3, and the
    features flattened position-major): the autograd oracle of ConvNet."""
    import torch.nn.functional as F

    c = net.obs_shape[0]
    n = net.patch * net.filters
    w = flat[:n].view(c, 3, 3, net.filters).permute(3, 0, 1, 2)
    h = F.relu(F.conv2d(obs.to(flat.dtype), w, flat[n:n + net.filters]))
    h = h.permute(0, 2, 3, 1).reshape(obs.shape[0], -1)
    off, sizes = net.conv_params, net.head.sizes
    for i, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
        h = h @ flat[off:off + fi * fo].view(fi, fo) + flat[off + fi * fo:off + fi * fo + fo]
        off += fi * fo + fo
        if i < len(sizes) - 2:
            h = F.relu(h)
    return h


@pytest.mark.parametrize("obs_shape, hidden", [((4, 10, 10), (128,)), ((7, 10, 10), (32, 16)), ((2, 5, 6), (8,))])
def test_conv_net_forward_and_backward_match_autograd(obs_shape, hidden):
    from fastdqn.learner import ConvNet

    k, b, rows, a = 3, 6, 4, 5
    net = ConvNet(obs_shape, a, 16, hidden)
    params = torch.stack([net.init(torch.Generator().manual_seed(s)) for s in range(k)]).double()
    assert params.shape[1] == net.num_params == 16 * (obs_shape[0] * 9 + 1) + net.head.num_params
    obs = torch.rand(k, b, *obs_shape, generator=torch.Generator().manual_seed(1)) < 0.3  # bool frames
    layers = net.views(params)
    q, cache = net.forward(layers, obs, need_grad=True)
    g = torch.randn(k, rows, a, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    grads = net.backward(layers, cache, g)
    for i in range(k):
        leaf = params[i].clone().requires_grad_(True)
        ref = _conv_reference(net, leaf, obs[i])
        torch.testing.assert_close(q[i], ref.detach(), rtol=0, atol=1e-12)
        (want,) = torch.autograd.grad(ref[:rows], leaf, g[i])
        torch.testing.assert_close(grads[i], want, rtol=0, atol=1e-12)


def test_conv_net_init_bounds_are_the_torch_layers_defaults():
    from fastdqn.learner import ConvNet

    net = ConvNet((4, 10, 10), 3)
    p = net.init(torch.Generator().manual_seed(0))
    conv = p[:net.conv_params]
    bound = 1 / math.sqrt(4 * 9)  # nn.Conv2d's kaiming_uniform(a=sqrt(5)) and bias bound: 1/sqrt(fan_in)
    assert conv.abs().max() <= bound and conv.abs().max() > 0.9 * bound
    first = p[net.conv_params:net.conv_params + 1024 * 128]
    assert first.abs().max() <= 1 / math.sqrt(1024)
