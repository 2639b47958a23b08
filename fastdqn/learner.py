"""Q-network, Bellman targets and the (optionally compiled) update step."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from fastdqn.replay import Batch


class QNetwork(nn.Module):
    """ReLU MLP from observations ``[B, obs_dim]`` to action values ``[B, n_actions]``."""

    def __init__(self, obs_dim: int, n_actions: int, hidden=(64, 64)):
        super().__init__()
        sizes = [obs_dim, *hidden, n_actions]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:]))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.forward_with_inputs(obs)[0]

    def forward_with_inputs(self, obs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Action values and the input of every layer (what the hand-written backward needs).

        Plain tensor calls rather than nested module calls: the net is tiny, so on a CPU the
        per-call Python overhead is a visible share of an update.
        """
        inputs, x = [], obs
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            inputs.append(x)
            x = torch.addmm(layer.bias, x, layer.weight.t())
            if i < last:
                x = torch.relu(x)
        return x, inputs


class Adam:
    """Adam (Kingma & Ba, no weight decay, no amsgrad) over a fixed list of parameters, one fused
    kernel per step (``torch._fused_adam_``, the kernel behind ``torch.optim.Adam(fused=True)``).

    Why not ``torch.optim.Adam``: its first ``step``/``zero_grad`` imports ``torch._dynamo``
    (1.2-2.4 s here, more than the whole training run) and each step spends ~90 us in Python.
    Same arithmetic: tests compare it with ``torch.optim.Adam`` step by step.
    """

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> None:
        """Apply one Adam step with ``grads`` (one per parameter, same order)."""
        torch._foreach_add_(self.steps, 1.0)
        torch._fused_adam_(self.params, grads, self.exp_avg, self.exp_avg_sq, [], self.steps,
                           lr=self.lr, beta1=self.betas[0], beta2=self.betas[1], weight_decay=0.0, eps=self.eps,
                           amsgrad=False, maximize=False)

    def state_dict(self) -> dict:
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "steps": self.steps}

    def load_state_dict(self, d: dict) -> None:
        for name in ("exp_avg", "exp_avg_sq", "steps"):
            for dst, src in zip(getattr(self, name), d[name]):
                dst.copy_(src)


def td_target(rewards, next_q_target, terminated, gamma: float, next_q_online=None):
    """``r + gamma * (1 - terminated) * Q_target(s', a*)``.

    ``a* = argmax Q_target(s')`` (plain DQN) or ``argmax Q_online(s')`` when ``next_q_online``
    is given (double DQN). Truncated transitions bootstrap like any non-terminal one: their
    ``s'`` is the true last observation, not the reset one.
    """
    if next_q_online is None:
        next_v = next_q_target.max(dim=1).values
    else:
        next_v = next_q_target.gather(1, next_q_online.argmax(dim=1, keepdim=True)).squeeze(1)
    return rewards + gamma * (~terminated).to(rewards.dtype) * next_v


class Learner:
    """Owns the online/target networks and Adam; ``update(batch)`` is one gradient step.

    The loss and its gradient are computed by hand in :meth:`loss_and_grads` (a ReLU MLP's
    backward is a few matrix products). On a CPU the update is overhead-bound, and skipping
    autograd's graph bookkeeping makes it ~30 % faster (bench/NOTES.md); tests check the
    gradients against autograd and whole updates against ``torch.optim.Adam``. With
    ``compile_mode`` other than ``"none"``, ``torch.compile`` wraps ``loss_and_grads``: a plain
    tensor program with no backward pass, so it compiles as one graph. ``update`` returns the
    loss as a device tensor (no host sync).
    """

    def __init__(self, q: QNetwork, *, lr, gamma, loss="huber", double_dqn=True, target_period=100, tau=1.0,
                 grad_clip=0.0, compile_mode="none"):
        self.q = q
        self.gamma = gamma
        self.double_dqn = double_dqn
        self.target_period = target_period
        self.tau = tau
        self.grad_clip = grad_clip
        self.huber = loss == "huber"
        self.target = copy.deepcopy(q).requires_grad_(False) if target_period > 0 else None
        self.params = list(q.parameters())  # [W0, b0, W1, b1, ...]
        self.optimizer = Adam(self.params, lr=lr)
        self.updates = 0
        self.compile_mode = compile_mode
        fn = self.loss_and_grads
        self._loss_and_grads = fn if compile_mode == "none" else torch.compile(fn, mode=compile_mode)

    @torch.no_grad()
    def loss_and_grads(self, batch: Batch) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """TD loss on the chosen action's Q (MSE or Huber, mean over the batch) and its gradient
        with respect to every online-network parameter.

        Targets ``y`` come from :func:`td_target` and are constants. With ``d = Q(s, a) - y``,
        dL/dQ(s, a) is ``2 d / B`` (MSE) or ``clamp(d, -1, 1) / B`` (Huber, delta 1), zero for
        the other action; then for each layer from the top, ``dW = g^T h``, ``db = sum(g)``,
        ``g <- (g W) * [h > 0]`` (h = the layer's input, a ReLU output).
        """
        n = batch.obs.shape[0]
        double = self.double_dqn and self.target is not None
        if double or self.target is None:
            # One forward pass over [obs; next_obs]: cheaper than two on an overhead-bound CPU.
            q_both, inputs = self.q.forward_with_inputs(torch.cat([batch.obs, batch.next_obs]))
            q_obs, next_q_online = q_both[:n], q_both[n:]
        else:
            q_obs, inputs = self.q.forward_with_inputs(batch.obs)
            next_q_online = None
        # No target network (target_period 0): bootstrap from the online net, as the tutorial does.
        next_q_target = next_q_online if self.target is None else self.target(batch.next_obs)
        y = td_target(batch.rewards, next_q_target, batch.terminated, self.gamma, next_q_online if double else None)
        q_sa = q_obs.gather(1, batch.actions[:, None]).squeeze(1)
        d = q_sa - y
        if self.huber:
            loss = F.smooth_l1_loss(q_sa, y)
            dq = d.clamp(-1.0, 1.0) / n
        else:
            loss = F.mse_loss(q_sa, y)
            dq = d * (2.0 / n)
        g = torch.zeros_like(q_obs).scatter_(1, batch.actions[:, None], dq[:, None])
        grads = []
        for i in range(len(self.q.layers) - 1, -1, -1):
            h = inputs[i][:n]
            grads += [g.sum(0), g.t().mm(h)]  # bias, weight (reversed below)
            if i > 0:
                g = g.mm(self.q.layers[i].weight).mul_(h > 0)
        return loss, grads[::-1]

    def loss(self, batch: Batch) -> torch.Tensor:
        return self.loss_and_grads(batch)[0]

    def update(self, batch: Batch) -> torch.Tensor:
        """One gradient step on ``batch``, then the target-network update."""
        loss, grads = self._loss_and_grads(batch)
        if self.grad_clip > 0:  # as torch.nn.utils.clip_grad_norm_
            total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            torch._foreach_mul_(grads, (self.grad_clip / (total + 1e-6)).clamp(max=1.0))
        self.optimizer.step(grads)
        self.updates += 1
        if self.target is not None:
            with torch.no_grad():
                if self.tau < 1.0:
                    torch._foreach_lerp_(list(self.target.parameters()), self.params, self.tau)
                elif self.updates % self.target_period == 0:
                    torch._foreach_copy_(list(self.target.parameters()), self.params)
        return loss

    def state_dict(self) -> dict:
        return {
            "q": self.q.state_dict(),
            "target": self.target.state_dict() if self.target is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, d: dict) -> None:
        self.q.load_state_dict(d["q"])
        if self.target is not None and d["target"] is not None:
            self.target.load_state_dict(d["target"])
        self.optimizer.load_state_dict(d["optimizer"])
        self.updates = int(d["updates"])
