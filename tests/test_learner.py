"""Bellman targets, TD loss and the update step of :class:`fastdqn.learner.Learner`.

References: hand-computed targets and losses on tiny batches (Q values made known by setting the
network's weights), and a from-the-formula re-implementation of the DQN update in this file
(plain tensor MLP + ``torch.optim.Adam``), never fastdqn's own output.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
from reference import mlp_formula
from torch import nn

from fastdqn.learner import Learner, QNetwork, td_target
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


def test_td_target_plain_dqn_by_hand():
    y = td_target(t(REWARDS), t(NEXT_Q_TARGET), t(TERMINATED, torch.bool), GAMMA)
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


def test_td_target_gamma_zero_and_one():
    r, nq, term = t([1.0, 2.0]), t([[3.0, 4.0], [5.0, -6.0]]), t([False, False], torch.bool)
    torch.testing.assert_close(td_target(r, nq, term, 0.0), t([1.0, 2.0]))
    torch.testing.assert_close(td_target(r, nq, term, 1.0), t([5.0, 7.0]))


# --- Learner.loss with known Q values ---------------------------------------------------------
def linears(net: nn.Module) -> list[nn.Linear]:
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


def set_readout(net: QNetwork, rows) -> QNetwork:
    """Make a QNetwork(4, 2, hidden=(4,)) compute Q(s) = rows @ s for non-negative s:
    identity hidden layer (ReLU passes s >= 0 unchanged), zero biases, output weights ``rows``."""
    first, out = linears(net)
    with torch.no_grad():
        first.weight.copy_(torch.eye(4))
        first.bias.zero_()
        out.weight.copy_(t(rows))
        out.bias.zero_()
    return net


ONLINE_ROWS = [[1, 0, 0, 0], [0, 1, 0, 0]]  # Q_online(s) = (s0, s1)
TARGET_ROWS = [[0, 0, 1, 0], [0, 0, 0, 1]]  # Q_target(s) = (s2, s3)

BATCH = Batch(
    obs=t([[1, 2, 0, 0], [3, 1, 0, 0], [0.5, 0.5, 0, 0], [2, 4, 0, 0]]),
    actions=t([0, 1, 1, 0], torch.int64),  # Q_online(s, a) = 1, 1, 0.5, 2
    rewards=t([1.0, 0.5, -1.0, 2.0]),
    # Q_online(s') = (1,3) (4,2) (5,6) (0.5,0): argmax 1, 0, 1, 0
    # Q_target(s') = (2,1) (1,3) (7,0) (0,1):   argmax 0, 1, 0, 1
    next_obs=t([[1, 3, 2, 1], [4, 2, 1, 3], [5, 6, 7, 0], [0.5, 0, 0, 1]]),
    terminated=t([False, False, True, False], torch.bool),
    truncated=t([False, True, False, True], torch.bool),  # truncated rows still bootstrap
)


def known_learner(target_period: int, double_dqn: bool, loss: str) -> Learner:
    q = set_readout(QNetwork(4, 2, hidden=(4,)), ONLINE_ROWS)
    learner = Learner(q, lr=1e-3, gamma=0.9, loss=loss, double_dqn=double_dqn, target_period=target_period)
    if target_period > 0:
        set_readout(learner.target, TARGET_ROWS)
    return learner


def test_known_network_outputs():
    q = set_readout(QNetwork(4, 2, hidden=(4,)), ONLINE_ROWS)
    torch.testing.assert_close(q(BATCH.next_obs), t([[1, 3], [4, 2], [5, 6], [0.5, 0]]))


@pytest.mark.parametrize("double_dqn", [False, True])
def test_loss_no_target_network_bootstraps_from_online(double_dqn):
    # y = r + 0.9 * max Q_online(s') = 1+2.7, 0.5+3.6, -1 (terminated), 2+0.45 = 3.7, 4.1, -1, 2.45
    # (double DQN without a target net values the online argmax with the online net: the same max)
    # errors q - y = -2.7, -3.1, 1.5, -0.45 -> MSE = (7.29 + 9.61 + 2.25 + 0.2025) / 4 = 4.838125
    learner = known_learner(target_period=0, double_dqn=double_dqn, loss="mse")
    loss = learner.loss(BATCH)
    assert loss.shape == ()
    assert loss.item() == pytest.approx(4.838125, rel=1e-6)


def test_loss_with_target_network_plain_dqn():
    # y = r + 0.9 * max Q_target(s') = 1+1.8, 0.5+2.7, -1, 2+0.9 = 2.8, 3.2, -1, 2.9
    # errors -1.8, -2.2, 1.5, -0.9 -> MSE = (3.24 + 4.84 + 2.25 + 0.81) / 4 = 2.785
    assert known_learner(5, False, "mse").loss(BATCH).item() == pytest.approx(2.785, rel=1e-6)
    # Huber (smooth L1, beta 1): 1.8-0.5, 2.2-0.5, 1.5-0.5, 0.5*0.81 = (1.3+1.7+1.0+0.405)/4 = 1.10125
    assert known_learner(5, False, "huber").loss(BATCH).item() == pytest.approx(1.10125, rel=1e-6)


def test_loss_with_target_network_double_dqn():
    # a* = argmax Q_online(s') = 1, 0, 1, 0 -> Q_target(s', a*) = 1, 1, (0, terminated), 0
    # y = 1+0.9, 0.5+0.9, -1, 2+0 = 1.9, 1.4, -1, 2.0; errors -0.9, -0.4, 1.5, 0
    # MSE = (0.81 + 0.16 + 2.25 + 0) / 4 = 0.805
    assert known_learner(5, True, "mse").loss(BATCH).item() == pytest.approx(0.805, rel=1e-6)
    # Huber: 0.405 + 0.08 + 1.0 + 0 = 1.485 / 4 = 0.37125
    assert known_learner(5, True, "huber").loss(BATCH).item() == pytest.approx(0.37125, rel=1e-6)


def test_truncated_flag_does_not_stop_bootstrap():
    learner = known_learner(5, False, "mse")
    no_trunc = BATCH._replace(truncated=torch.zeros(4, dtype=torch.bool))
    all_trunc = BATCH._replace(truncated=torch.ones(4, dtype=torch.bool))
    assert learner.loss(no_trunc).item() == learner.loss(all_trunc).item() == pytest.approx(2.785, rel=1e-6)
    # whereas terminating every row removes the bootstrap: y = r
    # errors 1-1, 1-0.5, 0.5+1, 2-2 -> (0 + 0.25 + 2.25 + 0) / 4 = 0.625
    all_term = BATCH._replace(terminated=torch.ones(4, dtype=torch.bool))
    assert learner.loss(all_term).item() == pytest.approx(0.625, rel=1e-6)


# --- the update step against a from-the-formula reference ----------------------------------------


def ref_loss(online, target, b: Batch, gamma, double_dqn, kind):
    q_sa = mlp_formula(online, b.obs)[torch.arange(len(b.actions)), b.actions]
    with torch.no_grad():
        boot = target if target is not None else online
        nq = mlp_formula(boot, b.next_obs)
        if double_dqn and target is not None:
            v = nq[torch.arange(len(nq)), mlp_formula(online, b.next_obs).argmax(dim=1)]
        else:
            v = nq.max(dim=1).values
        y = b.rewards + gamma * (1.0 - b.terminated.float()) * v
    d = q_sa - y
    if kind == "mse":
        return (d * d).mean()
    return torch.where(d.abs() < 1.0, 0.5 * d * d, d.abs() - 0.5).mean()


def random_batches(n_batches, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [Batch(torch.randn(size, 4, generator=g), torch.randint(0, 2, (size,), generator=g),
                  torch.randn(size, generator=g), torch.randn(size, 4, generator=g),
                  torch.rand(size, generator=g) < 0.2, torch.rand(size, generator=g) < 0.2)
            for _ in range(n_batches)]


@pytest.mark.parametrize("loss,double_dqn,target_period,grad_clip", [
    ("mse", False, 0, 0.0),  # the notebook setting: no target network
    ("huber", True, 2, 0.0),  # double DQN, hard copy every 2 updates
    ("mse", False, 3, 0.5),  # gradient-norm clipping
])
def test_update_matches_reference_dqn_with_torch_adam(loss, double_dqn, target_period, grad_clip):
    torch.manual_seed(0)
    q = QNetwork(4, 2, hidden=(16, 8))
    params = [p.detach().clone().requires_grad_(True) for p in q.parameters()]
    target = [p.detach().clone() for p in params] if target_period else None
    opt = torch.optim.Adam(params, lr=1e-2)
    learner = Learner(q, lr=1e-2, gamma=0.97, loss=loss, double_dqn=double_dqn, target_period=target_period,
                      grad_clip=grad_clip)
    for k, b in enumerate(random_batches(5), start=1):
        ref = ref_loss(params, target, b, 0.97, double_dqn, loss)
        opt.zero_grad()
        ref.backward()
        if grad_clip:
            norm = torch.sqrt(sum((p.grad * p.grad).sum() for p in params))
            scale = min(1.0, grad_clip / (float(norm) + 1e-6))
            for p in params:
                p.grad.mul_(scale)
        opt.step()
        if target_period and k % target_period == 0:
            target = [p.detach().clone() for p in params]

        got = learner.update(b)
        assert got.shape == ()
        torch.testing.assert_close(got, ref.detach(), rtol=1e-5, atol=1e-6)
        for p_ref, p in zip(params, q.parameters()):
            torch.testing.assert_close(p, p_ref.detach(), rtol=1e-5, atol=1e-6)
    assert learner.updates == 5


def test_target_network_hard_copy_every_period():
    torch.manual_seed(1)
    q = QNetwork(4, 2, hidden=(8,))
    learner = Learner(q, lr=1e-2, gamma=0.9, loss="mse", double_dqn=False, target_period=3, tau=1.0)

    def flat(net):
        return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).clone()

    snapshot = flat(q)  # the target starts as a copy of the online net
    assert torch.equal(flat(learner.target), snapshot)
    for k, b in enumerate(random_batches(7, seed=3), start=1):
        learner.update(b)
        online, target = flat(q), flat(learner.target)
        if k % 3 == 0:
            assert torch.equal(target, online), k
            snapshot = online
        else:
            assert torch.equal(target, snapshot), k  # untouched since the last copy
            assert not torch.allclose(target, online), k  # and behind the online net


@pytest.mark.parametrize("tau,target_period", [(0.5, 1), (0.2, 3)])
def test_target_network_polyak(tau, target_period):
    torch.manual_seed(2)
    q = QNetwork(4, 2, hidden=(8,))
    learner = Learner(q, lr=1e-2, gamma=0.9, loss="mse", double_dqn=True, target_period=target_period, tau=tau)
    old_target = [p.detach().clone() for p in learner.target.parameters()]
    for b in random_batches(2, seed=4):  # Polyak every update, whatever target_period says
        learner.update(b)
        online = [p.detach().clone() for p in q.parameters()]
        expected = [(1 - tau) * old + tau * new for old, new in zip(old_target, online)]
        for e, p in zip(expected, learner.target.parameters()):
            torch.testing.assert_close(p.detach(), e, rtol=1e-6, atol=1e-7)
        old_target = expected
    # the target is a real average: strictly between where it was and the online net (somewhere)
    assert not torch.allclose(old_target[0], online[0])


def test_state_dict_round_trip_resumes_identically():
    torch.manual_seed(3)
    q = QNetwork(4, 2, hidden=(8, 8))
    a = Learner(q, lr=1e-2, gamma=0.9, loss="huber", double_dqn=True, target_period=2)
    batches = random_batches(4, seed=5)
    for b in batches[:3]:
        a.update(b)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)  # checkpoints load with weights_only=True
    buf.seek(0)
    state = torch.load(buf, weights_only=True)

    torch.manual_seed(99)  # different initial weights: everything must come from the state
    b_learner = Learner(QNetwork(4, 2, hidden=(8, 8)), lr=1e-2, gamma=0.9, loss="huber", double_dqn=True,
                        target_period=2)
    b_learner.load_state_dict(state)
    assert b_learner.updates == 3
    la, lb = a.update(batches[3]), b_learner.update(batches[3])
    assert la.item() == lb.item()
    for pa, pb in zip(a.q.parameters(), b_learner.q.parameters()):
        assert torch.equal(pa, pb)  # Adam moments restored too, else this step would differ
    for pa, pb in zip(a.target.parameters(), b_learner.target.parameters()):
        assert torch.equal(pa, pb)  # update 4 copied the target in both


@pytest.mark.slow
def test_compiled_update_matches_eager():
    """torch.compile (default mode, ~5-10 s to compile on CPU) changes nothing but speed."""
    torch.manual_seed(4)
    q_eager = QNetwork(4, 2, hidden=(16, 16))
    q_comp = copy.deepcopy(q_eager)
    kw = dict(lr=1e-2, gamma=0.95, loss="huber", double_dqn=True, target_period=2, tau=1.0)
    eager = Learner(q_eager, compile_mode="none", **kw)
    comp = Learner(q_comp, compile_mode="default", **kw)
    for b in random_batches(3, seed=6):
        le, lc = eager.update(b), comp.update(b)
        torch.testing.assert_close(lc, le, rtol=1e-4, atol=1e-5)
    for pe, pc in zip(q_eager.parameters(), q_comp.parameters()):
        torch.testing.assert_close(pc, pe, rtol=1e-4, atol=1e-5)
    for pe, pc in zip(eager.target.parameters(), comp.target.parameters()):
        torch.testing.assert_close(pc, pe, rtol=1e-4, atol=1e-5)
