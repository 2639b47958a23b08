"""Q-networks for a population of K agents, Bellman targets, Adam and the update step.

Every agent's parameters are one row of a flat ``[K, P]`` tensor; a network maps those rows and
observations ``[K, B, obs_dim]`` to action values ``[K, B, n_actions]``. Two kinds of network
plug into the same :class:`Learner`:

* :class:`MLP`, the ReLU MLP of the tutorial, with a hand-written backward pass (batched matrix
  products; on a CPU ~30 % faster than autograd, bench/NOTES.md), and
* :class:`AutogradQNet`, any ``torch.nn.Module`` (a CNN for Atari, say), run for K agents with
  ``torch.func.vmap`` over ``functional_call`` and differentiated by autograd.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from fastdqn.replay import Batch


def linear_init(fan_in: int, shape, generator: torch.Generator) -> torch.Tensor:
    """``torch.nn.Linear``'s default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from ``generator``."""
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


class MLP:
    """ReLU MLP Q-network ``obs_dim -> hidden... -> n_actions`` for K agents at once.

    An agent's row of the flat parameters holds, layer by layer, the weight ``[in, out]``
    (so a layer is ``x @ W + b``) and the bias ``[out]``.
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden=(64, 64)):
        self.obs_dim, self.n_actions = obs_dim, n_actions
        self.sizes = [obs_dim, *hidden, n_actions]
        self.num_params = sum(i * o + o for i, o in zip(self.sizes[:-1], self.sizes[1:]))
        self.macs = sum(i * o for i, o in zip(self.sizes[:-1], self.sizes[1:]))  # multiply-adds per observation

    def init(self, generator: torch.Generator) -> torch.Tensor:
        """One agent's initial parameters ``[P]`` (as ``nn.Linear`` initialises its layers)."""
        parts = []
        for i, o in zip(self.sizes[:-1], self.sizes[1:]):
            parts += [linear_init(i, (i, o), generator).flatten(), linear_init(i, (o,), generator)]
        return torch.cat(parts)

    def views(self, params: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Views ``(W [K, in, out], b [K, 1, out])`` of each layer in ``params [K, P]`` (made once
        per parameter tensor: they follow its in-place updates)."""
        k, off, out = params.shape[0], 0, []
        for i, o in zip(self.sizes[:-1], self.sizes[1:]):
            w = params[:, off:off + i * o].view(k, i, o)
            b = params[:, off + i * o:off + i * o + o].view(k, 1, o)
            out.append((w, b))
            off += i * o + o
        return out

    def forward(self, layers, obs: torch.Tensor, need_grad: bool = False):
        """Action values ``[K, B, n_actions]`` for ``obs [K, B, *obs_shape]`` (flattened to
        ``obs_dim`` floats) from :meth:`views` ``layers``, and what
        :meth:`backward` needs (the input of every layer)."""
        inputs, x = [], obs.reshape(*obs.shape[:2], -1).to(layers[0][0].dtype)  # any obs shape and dtype: flattened
        for i, (w, b) in enumerate(layers):
            inputs.append(x)
            x = torch.baddbmm(b, x, w)
            if i < len(layers) - 1:
                x = x.relu_()
        return x, inputs

    def backward(self, layers, inputs, g: torch.Tensor, input_grad: bool = False):
        """Gradient ``[K, P]`` given dL/dQ ``g [K, B, n_actions]`` for the first B rows of the forward
        (and, with ``input_grad``, also dL/d(input) ``[K, B, obs_dim]``, for a network below this one).

        For each layer from the top: ``dW = h^T g``, ``db = sum(g)``, ``g <- (g W^T) * [h > 0]``
        (h = the layer's input, a ReLU output). ``dW`` is computed as ``(g^T h)^T`` where the
        layer has fewer outputs than inputs: a product with only a few columns (the action values)
        runs several times slower than its transpose on the CPU's BLAS (bench/NOTES.md).
        """
        rows = g.shape[1]
        grads = []
        for i in range(len(layers) - 1, -1, -1):
            h = inputs[i][:, :rows]
            dw = torch.bmm(h.mT, g) if h.shape[2] <= g.shape[2] else torch.bmm(g.mT, h).mT
            grads += [g.sum(1), dw]  # bias, weight (reversed below)
            if i > 0:
                g = torch.ops.aten.threshold_backward(torch.bmm(g, layers[i][0].mT), h, 0.0)  # g * [h > 0]
        flat = torch.cat([t.reshape(t.shape[0], -1) for t in grads[::-1]], dim=1)
        return (flat, torch.bmm(g, layers[0][0].mT)) if input_grad else flat


class ConvNet:
    """MinAtar's Q-network (Young & Tian 2019): one 3x3 convolution (stride 1, no padding,
    ``filters`` channels) and ReLU, then a ReLU MLP (``hidden``, default one layer of 128) to the
    action values, for K agents at once with a hand-written backward.

    The convolution runs as a matrix product on image patches (im2col): each of the
    ``(H-2)(W-2)`` output positions gathers its ``C*9`` inputs, so agent k's layer is
    ``patches_k [B*positions, C*9] @ W_k [C*9, filters]``, a batched product over agents, like
    every MLP layer. The conv features are flattened position-major (``[positions, filters]``),
    a fixed permutation of ``torch.nn.Conv2d``'s channel-major order that changes nothing learned.
    An agent's parameter row holds the conv weight ``[C*9, filters]``, its bias, then the MLP's.
    """

    def __init__(self, obs_shape, n_actions: int, filters: int = 16, hidden=(128,)):
        c, h, w = obs_shape
        if h < 3 or w < 3:
            raise ValueError(f"the conv network needs observations at least [C, 3, 3], got {list(obs_shape)}")
        self.obs_shape, self.n_actions, self.filters = tuple(obs_shape), n_actions, filters
        self.patch, self.positions = c * 9, (h - 2) * (w - 2)
        self.head = MLP(self.positions * filters, n_actions, tuple(hidden))
        self.conv_params = self.patch * filters + filters
        self.num_params = self.conv_params + self.head.num_params
        # index [positions, C*9] of each patch's inputs in the flattened [C, H, W] observation
        ch, dy, dx = torch.meshgrid(torch.arange(c), torch.arange(3), torch.arange(3), indexing="ij")
        oy, ox = torch.meshgrid(torch.arange(h - 2), torch.arange(w - 2), indexing="ij")
        self.index = (ch.reshape(1, -1) * h * w + (oy.reshape(-1, 1) + dy.reshape(1, -1)) * w
                      + ox.reshape(-1, 1) + dx.reshape(1, -1))
        self._index = {}

    def init(self, generator: torch.Generator) -> torch.Tensor:
        """One agent's initial parameters ``[P]`` (U(+-1/sqrt(fan_in)) bounds, as ``nn.Conv2d`` and
        ``nn.Linear`` initialise)."""
        conv = [linear_init(self.patch, (self.patch, self.filters), generator).flatten(),
                linear_init(self.patch, (self.filters,), generator)]
        return torch.cat([*conv, self.head.init(generator)])

    def views(self, params: torch.Tensor):
        k, n = params.shape[0], self.patch * self.filters
        conv = (params[:, :n].view(k, self.patch, self.filters), params[:, n:self.conv_params].view(k, 1, self.filters))
        return [conv, *self.head.views(params[:, self.conv_params:])]

    def patches(self, obs: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """``obs [K, B, C, H, W]`` (any dtype) as ``dtype`` patches ``[K, B * positions, C*9]``."""
        dev = obs.device
        if dev not in self._index:
            self._index[dev] = self.index.reshape(-1).to(dev)
        k, b = obs.shape[:2]
        x = obs.reshape(k * b, -1).to(dtype).index_select(1, self._index[dev])  # [K*B, positions * C*9]
        return x.view(k, b * self.positions, self.patch)

    def forward(self, layers, obs: torch.Tensor, need_grad: bool = False):
        """Action values ``[K, B, n_actions]`` for ``obs [K, B, C, H, W]`` and what :meth:`backward` needs."""
        k, b = obs.shape[:2]
        (w, bias), head = layers[0], layers[1:]
        x = self.patches(obs, w.dtype)
        h = torch.relu(torch.baddbmm(bias, x, w))  # [K, B * positions, filters]
        q, inputs = self.head.forward(head, h.view(k, b, -1), need_grad)
        return q, (x, h, inputs)

    def backward(self, layers, cache, g: torch.Tensor) -> torch.Tensor:
        """Gradient ``[K, P]`` given dL/dQ ``g [K, B, n_actions]`` for the first B rows of the forward."""
        x, h, inputs = cache
        k, rows = g.shape[:2]
        head, gh = self.head.backward(layers[1:], inputs, g, input_grad=True)
        n = rows * self.positions
        h, x = h[:, :n], x[:, :n]
        gh = torch.ops.aten.threshold_backward(gh.reshape(k, n, self.filters), h, 0.0)
        return torch.cat([torch.bmm(x.mT, gh).reshape(k, -1), gh.sum(1), head], dim=1)


class AutogradQNet:
    """Any ``nn.Module`` mapping ``[B, obs_dim]`` to ``[B, n_actions]`` as a population Q-network:
    ``torch.func.vmap`` over ``functional_call`` runs K parameter rows at once and autograd
    computes the gradient (no hand-written backward needed)."""

    def __init__(self, module: nn.Module, obs_dim: int, n_actions: int):
        self.module, self.obs_dim, self.n_actions = module, obs_dim, n_actions
        self.names = [n for n, _ in module.named_parameters()]
        self.shapes = [p.shape for _, p in module.named_parameters()]
        self.num_params = sum(p.numel() for p in module.parameters())

    def init(self, generator: torch.Generator) -> torch.Tensor:
        """Fresh parameters ``[P]``: the module's own ``reset_parameters``, seeded from ``generator``."""
        m = copy.deepcopy(self.module)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            for layer in m.modules():
                if hasattr(layer, "reset_parameters"):
                    layer.reset_parameters()
        return torch.cat([p.detach().flatten() for p in m.parameters()])

    def _one(self, flat: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        params, off = {}, 0
        for name, shape in zip(self.names, self.shapes):
            size = math.prod(shape)
            params[name] = flat[off:off + size].view(shape)
            off += size
        return torch.func.functional_call(self.module, params, (obs,))

    def views(self, params: torch.Tensor) -> torch.Tensor:
        return params

    def forward(self, params: torch.Tensor, obs: torch.Tensor, need_grad: bool = False):
        obs = obs.to(params.dtype)  # any obs dtype (bool frames, say), as the MLP takes them
        if not need_grad:
            return torch.func.vmap(self._one)(params, obs), None
        leaf = params.detach().requires_grad_(True)
        with torch.enable_grad():
            q = torch.func.vmap(self._one)(leaf, obs)
        return q.detach(), (leaf, q)

    def backward(self, params, cache, g: torch.Tensor) -> torch.Tensor:
        leaf, q = cache
        pad = q.shape[1] - g.shape[1]
        if pad:
            g = torch.cat([g, g.new_zeros(g.shape[0], pad, g.shape[2])], dim=1)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(q, leaf, grad_outputs=g)
        return grad


def td_target(rewards, next_q_target, terminated, gamma, next_q_online=None):
    """``r + gamma * (1 - terminated) * Q_target(s', a*)`` over the last (action) dimension.

    ``a* = argmax Q_target(s')`` (plain DQN) or ``argmax Q_online(s')`` when ``next_q_online``
    is given (double DQN). ``terminated`` is bool or 0/1 float; ``gamma`` a number or a tensor
    that broadcasts against ``rewards`` (one per agent: ``[K, 1]``). Truncated transitions
    bootstrap like any non-terminal one: their ``s'`` is the true last observation.
    """
    if next_q_online is None:
        next_v = next_q_target.max(dim=-1).values
    else:
        next_v = next_q_target.gather(-1, next_q_online.argmax(dim=-1, keepdim=True)).squeeze(-1)
    not_done = (~terminated).to(rewards.dtype) if terminated.dtype == torch.bool else 1.0 - terminated
    return rewards + gamma * not_done * next_v


class Adam:
    """Adam (Kingma & Ba; no weight decay, no amsgrad) over a flat ``[K, P]`` parameter tensor
    with one learning rate per agent (``lr [K, 1]``; 0 freezes an agent exactly).

    Eagerly it is one fused kernel (``torch._fused_adam_``, the kernel behind
    ``torch.optim.Adam(fused=True)``) that writes the unit-rate step into a scratch tensor, then
    one ``addcmul`` applies each agent's rate: 4 calls instead of ~17. Under ``torch.compile`` the
    same formula runs as plain tensor ops (the fused op cannot be functionalised; the compiler fuses
    the plain ones). Tests compare both with ``torch.optim.Adam`` step by step.
    """

    def __init__(self, params: torch.Tensor, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = params
        self.betas, self.eps = betas, eps
        self.exp_avg = torch.zeros_like(params)
        self.exp_avg_sq = torch.zeros_like(params)
        self.step_count = torch.zeros((), dtype=torch.float32, device=params.device)
        self._delta = torch.zeros_like(params)

    @torch.no_grad()
    def step(self, grads: torch.Tensor, lr: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.step_count.add_(1.0)
        if torch.compiler.is_compiling():
            self.exp_avg.lerp_(grads, 1 - b1)
            self.exp_avg_sq.mul_(b2).addcmul_(grads, grads, value=1 - b2)
            bc1 = 1 - torch.pow(b1, self.step_count)
            bc2_sqrt = torch.sqrt(1 - torch.pow(b2, self.step_count))
            denom = (self.exp_avg_sq.sqrt() / bc2_sqrt).add_(self.eps)
            self.params.sub_(self.exp_avg / denom * (lr / bc1))
            return
        self._delta.zero_()
        torch._fused_adam_([self._delta], [grads], [self.exp_avg], [self.exp_avg_sq], [], [self.step_count],
                           lr=1.0, beta1=b1, beta2=b2, weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)
        self.params.addcmul_(self._delta, lr)

    def state_dict(self) -> dict:
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "step": self.step_count}

    def load_state_dict(self, d: dict) -> None:
        self.exp_avg.copy_(d["exp_avg"])
        self.exp_avg_sq.copy_(d["exp_avg_sq"])
        self.step_count.copy_(d["step"])


def _column(values, k: int, device, dtype=torch.float32) -> torch.Tensor:
    """Per-agent hyperparameter as a ``[K, 1]`` tensor (a number is shared by every agent)."""
    t = torch.as_tensor(values, dtype=dtype).to(device)
    return t.expand(k).reshape(k, 1).clone() if t.ndim == 0 else t.reshape(k, 1).clone()


class Learner:
    """Online/target parameters ``[K, P]`` and Adam for K agents; ``update(batch)`` is one
    gradient step for every agent at once, then the target update.

    Per-agent hyperparameters (``lr``, ``gamma``, ``tau``, ``target_period``, ``grad_clip``) are
    numbers (shared) or sequences of K. The target moves by ``lerp(target, online, w)`` with
    ``w = tau`` (Polyak, tau < 1) or ``w = 1`` every ``target_period`` updates (hard copy; lerp
    with weight 1 is an exact copy); ``target_period`` 0 means no separate target network, i.e.
    bootstrapping from the online network, which is a copy after every update. Agents marked
    inactive (:meth:`set_active`) keep their parameters and target exactly. ``update`` returns
    the per-agent loss ``[K]`` as a device tensor (no host sync).
    """

    def __init__(self, net, params: torch.Tensor, *, lr, gamma, loss="huber", double_dqn=True, target_period=100,
                 tau=1.0, grad_clip=0.0):
        k, dev = params.shape[0], params.device
        self.net = net
        self.agents = k
        self.params = params
        self.target = params.clone()
        self.param_views, self.target_views = net.views(self.params), net.views(self.target)
        self.optimizer = Adam(self.params)
        self.huber = loss == "huber"
        self.double_dqn = double_dqn
        self.lr = _column(lr, k, dev)
        self.gamma = _column(gamma, k, dev)
        self.tau = _column(tau, k, dev)
        period = _column(target_period, k, dev, torch.int64)
        self.polyak = (self.tau < 1.0) & (period > 0)  # period 0: no target network, whatever tau says
        self.period = period.clamp_(min=1)  # 0: a copy after every update
        self.grad_clip = _column(grad_clip, k, dev)
        self.clips = bool((self.grad_clip > 0).any())  # fixed by the config: no per-step host read
        self.clips_all = bool((self.grad_clip > 0).all())
        # on the CPU (eager) reading the update counter costs nothing, so the target pass is
        # skipped when no agent is due a copy (hard copies only); elsewhere it runs every update
        self._host_check = dev.type == "cpu" and not bool(self.polyak.any())
        self._periods = sorted(set(self.period.view(-1).tolist()))
        self.active = torch.ones(k, 1, dtype=torch.float32, device=dev)
        self.lr_active = self.lr.clone()
        self.updates = torch.zeros((), dtype=torch.int64, device=dev)

    def set_active(self, active: torch.Tensor) -> None:
        """Agents with ``active[k]`` False stop changing (interval work, not per step)."""
        self.active.copy_(active.reshape(-1, 1).to(self.active.dtype))
        self.lr_active.copy_(self.lr * self.active)

    @torch.no_grad()
    def loss_and_grads(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-agent TD loss ``[K]`` on the chosen action's Q (MSE or Huber, mean over the batch)
        and its gradient ``[K, P]`` with respect to the online parameters.

        Targets ``y`` come from :func:`td_target` and are constants. With ``d = Q(s, a) - y``,
        dL/dQ(s, a) is ``2 d / B`` (MSE) or ``clamp(d, -1, 1) / B`` (Huber, delta 1), zero for the
        other actions; the network's backward takes it from there.
        """
        n = batch.obs.shape[1]
        if self.double_dqn:  # one forward pass over [obs; next_obs]
            q_both, cache = self.net.forward(self.param_views, torch.cat([batch.obs, batch.next_obs], dim=1), True)
            q_obs, next_q_online = q_both[:, :n], q_both[:, n:]
        else:
            (q_obs, cache), next_q_online = self.net.forward(self.param_views, batch.obs, True), None
        next_q_target, _ = self.net.forward(self.target_views, batch.next_obs)
        y = td_target(batch.rewards, next_q_target, batch.terminated, self.gamma, next_q_online)
        actions = batch.actions[..., None]
        q_sa = q_obs.gather(2, actions).squeeze(2)
        d = q_sa - y
        if self.huber:
            loss = F.smooth_l1_loss(q_sa, y, reduction="none").mean(1)
            dq = d.clamp(-1.0, 1.0) / n
        else:
            loss = d.square().mean(1)
            dq = d * (2.0 / n)
        g = torch.zeros_like(q_obs).scatter_(2, actions, dq[..., None])
        return loss, self.net.backward(self.param_views, cache, g)

    @torch.no_grad()
    def update(self, batch: Batch) -> torch.Tensor:
        """One gradient step on ``batch`` for every agent, then the target-network update."""
        loss = self.gradient_step(batch)
        self.update_target()
        return loss

    @torch.no_grad()
    def gradient_step(self, batch: Batch) -> torch.Tensor:
        """Loss, gradient, optional per-agent clipping and the Adam step; returns the loss ``[K]``."""
        loss, grads = self.loss_and_grads(batch)
        if self.clips:  # as torch.nn.utils.clip_grad_norm_, per agent; grad_clip 0 leaves an agent unclipped
            norm = torch.linalg.vector_norm(grads, dim=1, keepdim=True)
            scale = (self.grad_clip / (norm + 1e-6)).clamp_(max=1.0)
            grads = grads.mul_(scale if self.clips_all else torch.where(self.grad_clip > 0, scale, 1.0))
        self.optimizer.step(grads, self.lr_active)
        self.updates.add_(1)
        return loss

    @torch.no_grad()
    def update_target(self) -> None:
        """Move the target towards the online parameters (after :meth:`gradient_step`)."""
        if self._host_check and not torch.compiler.is_compiling():
            u = int(self.updates)
            if all(u % p for p in self._periods):
                return
        hard = (self.updates % self.period == 0).to(self.tau.dtype)
        self.target.lerp_(self.params, torch.where(self.polyak, self.tau, hard) * self.active)

    def state_dict(self) -> dict:
        return {"params": self.params, "target": self.target, "optimizer": self.optimizer.state_dict(),
                "updates": self.updates}

    def load_state_dict(self, d: dict) -> None:
        if tuple(d["params"].shape) != tuple(self.params.shape):
            raise ValueError(f"parameters have shape {tuple(d['params'].shape)}, expected {tuple(self.params.shape)}")
        self.params.copy_(d["params"])
        self.target.copy_(d["target"])
        self.optimizer.load_state_dict(d["optimizer"])
        self.updates.copy_(d["updates"])
