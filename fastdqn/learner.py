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
        # Functional calls instead of nested module calls: the net is tiny, so on a CPU the
        # per-call Python overhead is a visible share of an update.
        x = obs
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = F.linear(x, layer.weight, layer.bias)
            if i < last:
                x = torch.relu(x)
        return x


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

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        torch._foreach_add_(self.steps, 1.0)
        torch._fused_adam_(self.params, [p.grad for p in self.params], self.exp_avg, self.exp_avg_sq, [], self.steps,
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

    With ``compile_mode`` other than ``"none"``, ``torch.compile`` wraps the loss (online and
    target forward passes, TD target, loss); AOTAutograd compiles its backward with it. The
    optimizer step (one fused kernel already) stays outside the graph. ``update`` returns the
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
        self.criterion = F.smooth_l1_loss if loss == "huber" else F.mse_loss
        # No target network (target_period 0): bootstrap from the online network, as the tutorial does.
        self.target = copy.deepcopy(q).requires_grad_(False) if target_period > 0 else None
        self.optimizer = Adam(q.parameters(), lr=lr)
        self.updates = 0
        self.compile_mode = compile_mode
        self._loss_fn = self.loss if compile_mode == "none" else torch.compile(self.loss, mode=compile_mode)

    def loss(self, batch: Batch) -> torch.Tensor:
        q_sa = self.q(batch.obs).gather(1, batch.actions[:, None]).squeeze(1)
        with torch.no_grad():
            target_net = self.target if self.target is not None else self.q
            next_q_target = target_net(batch.next_obs)
            next_q_online = self.q(batch.next_obs) if (self.double_dqn and self.target is not None) else None
            y = td_target(batch.rewards, next_q_target, batch.terminated, self.gamma, next_q_online)
        return self.criterion(q_sa, y)

    def update(self, batch: Batch) -> torch.Tensor:
        """One gradient step on ``batch``, then the target-network update."""
        loss = self._loss_fn(batch)
        self.optimizer.zero_grad()
        loss.backward()
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.q.parameters(), self.grad_clip)
        self.optimizer.step()
        self.updates += 1
        if self.target is not None:
            if self.tau < 1.0:
                with torch.no_grad():
                    torch._foreach_lerp_(list(self.target.parameters()), list(self.q.parameters()), self.tau)
            elif self.updates % self.target_period == 0:
                self.target.load_state_dict(self.q.state_dict())
        return loss.detach()

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
