"""The training engine: a population of K agents as explicit device state and one sync-free iteration.

Everything the loop changes lives in preallocated tensors on the training device, with the agent
as the leading dimension: envs ``[K, N]``, replay ``[K, C]``, parameters ``[K, P]`` and Adam
moments, per-agent hyperparameters ``[K, 1]``, RNG keys ``[K]``, running episode returns, and
the env-step, update and draw counters. :meth:`Engine.iteration` is one function of that state
-- act, step, store, sample, update, target update, episode bookkeeping -- with no host sync and
no data-dependent Python branch, so it runs eagerly, under ``torch.compile(fullgraph=True)``
(torch env backend) or, on a GPU, captured whole. The only Python input is whether this
iteration learns, fixed by the iteration count and the config (``learning_starts``,
``train_frequency``), never by data. Interval work (metrics, evaluation, checkpoints) reads the
state back between iterations: :meth:`Engine.read_metrics`, :meth:`Engine.evaluate`,
:meth:`Engine.state_dict`.

Randomness is counter-based (SplitMix64 of agent key, iteration, column), as the env resets
are: agent k draws the same numbers whatever the population around it, so agent k of a
population learns what a single run with its seed and hyperparameters learns (up to float
rounding: batched kernels of another K round differently, and RL amplifies it over a run), and
resuming from a checkpoint continues the exact stream.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import numpy as np
import torch

from fastdqn import envs, nets
from fastdqn.calibrate import torch_threads_kept
from fastdqn.cartpole import keep_freed_memory
from fastdqn.config import ConfigError, DQNConfig
from fastdqn.kernels import rng
from fastdqn.kernels.rng import as_signed, lsr, mix64
from fastdqn.learner import MLP, Learner
from fastdqn.replay import ReplayBuffer

# Fields that may differ between the agents of one population (applied as [K] tensors).
PER_AGENT_FIELDS = ("seed", "lr", "gamma", "eps_start", "eps_end", "eps_decay", "tau", "target_period", "grad_clip")

NUMBA_ACT_MACS = 1 << 18
"""The act step runs the numba MLP loop (:mod:`fastdqn.kernels.mlp_numba`) up to this many multiply-adds
per iteration (agents x envs x the net's per-observation count; numba env backend), the network's
tensor forward above it."""
EVAL_CHUNK = 50  # evaluation steps between host checks for finished episodes
EVAL_SEED_OFFSET = 1_000_003  # eval envs of agent k reset from seed_k + this
CONFIRM_SEED_OFFSET = 2_000_029  # confirmation envs of agent k reset from seed_k + this
_STREAM = 0x5DEECE66D  # separates the exploration/sampling stream from the env-reset stream


def population_configs(cfg: DQNConfig, population: int) -> list[DQNConfig]:
    """``population`` copies of ``cfg``; agent k gets seed ``cfg.seed + k``."""
    if isinstance(population, bool) or not isinstance(population, int) or population < 1:
        raise ConfigError(f"population must be an integer >= 1; got {population!r}")
    return [cfg.replace(seed=cfg.seed + k) for k in range(population)]


def check_population(configs) -> list[DQNConfig]:
    """Validate each config and check that they differ only in :data:`PER_AGENT_FIELDS`."""
    configs = list(configs)
    if not configs:
        raise ConfigError("a population needs at least one config")
    for c in configs:
        c.validate()
    first = configs[0]
    for f in dataclasses.fields(DQNConfig):
        if f.name in PER_AGENT_FIELDS:
            continue
        for k, c in enumerate(configs[1:], 1):
            if getattr(c, f.name) != getattr(first, f.name):
                raise ConfigError(f"{f.name} differs between agents (agent 0: {getattr(first, f.name)!r}, agent {k}: "
                                  f"{getattr(c, f.name)!r}); only {', '.join(PER_AGENT_FIELDS)} may differ in a population")
    return configs


PHASES = ("act", "collect", "env", "store", "bookkeeping", "sample", "update", "target")
_NO_PHASE = contextlib.nullcontext()


def no_phase(name: str):
    """The default phase marker: does nothing (see :attr:`Engine.phase`)."""
    return _NO_PHASE


def stream_key(seed: int) -> int:
    """The key of an agent's exploration and replay-sampling stream."""
    return rng.splitmix64(rng.seed_key(seed) ^ _STREAM)


class Engine:
    """K agents' complete training state on ``device`` and the iteration that advances it.

    ``configs`` (one per agent) must differ only in :data:`PER_AGENT_FIELDS`. The env is
    ``configs[0].env_id`` made by :func:`fastdqn.envs.make` with ``backend`` ("numba": CPU
    kernels, eager only; "torch": any device, compilable; "gymnasium": the slow path for
    non-native ids). ``net`` is the Q-network (default: the configs' ``network`` by name,
    :mod:`fastdqn.nets`); any object with the ``init/views/forward/backward`` interface works,
    e.g. :class:`~fastdqn.learner.AutogradQNet`. ``fuse``: run :meth:`collect` as the env's
    fused numba kernel where it has one (CartPole, Acrobot, MountainCar), and the act step's MLP
    as a numba loop for small batches (False: both as tensor ops).
    ``env_objects``: ``(env, eval_env, confirm_env)`` to adopt instead of making new ones (how
    :meth:`select` keeps Gymnasium sub-envs where they are).
    """

    def __init__(self, configs, device="cpu", backend="torch", net=None, fuse: bool = True, env_objects=None):
        configs = check_population(configs)
        cfg = configs[0]
        self.configs, self.cfg = configs, cfg
        self.device = device = torch.device(device)
        if device.type == "cpu":
            keep_freed_memory()
        k, n = len(configs), cfg.num_envs
        self.agents, self.num_envs = k, n
        seeds = [c.seed for c in configs]
        self.spec = spec = cfg.spec
        if env_objects is None:
            def make(count, offset):
                return envs.make(cfg.env_id, k * count, backend=backend, device=device,
                                 seed=[s + offset for s in seeds], max_episode_steps=cfg.max_episode_steps)

            env_objects = (make(n, 0), make(cfg.eval_episodes, EVAL_SEED_OFFSET),
                           make(cfg.confirm_episodes, CONFIRM_SEED_OFFSET))
        self.env, self.eval_env, self.confirm_env = env_objects
        self.obs_shape, self.n_actions = spec.obs_shape, spec.n_actions
        self.net_desc = nets.describe(cfg.network, spec.obs_shape, spec.n_actions, cfg)
        self.net = net if net is not None else nets.build(self.net_desc)
        params = torch.stack([self.net.init(torch.Generator().manual_seed(s)) for s in seeds]).to(device)
        per = {f: [getattr(c, f) for c in configs] for f in PER_AGENT_FIELDS}
        self.learner = Learner(self.net, params, lr=per["lr"], gamma=per["gamma"], loss=cfg.loss,
                               double_dqn=cfg.double_dqn, target_period=per["target_period"], tau=per["tau"],
                               grad_clip=per["grad_clip"])
        self.replay = ReplayBuffer(cfg.buffer_size, spec.obs_shape, agents=k, device=device, obs_dtype=spec.obs_dtype)

        def column(values):
            return torch.tensor(values, dtype=torch.float32, device=device).reshape(k, 1)

        # Exploration schedule. exp: end + (start - end) exp(-decay t). linear: start + min(1, t /
        # span) (end - start), span = eps_decay * total_steps as set when the run began (resuming
        # with a larger budget does not stretch it); span 0 means epsilon is `end` from the start.
        linear = cfg.eps_schedule == "linear"
        span = [c.eps_decay * c.total_steps for c in configs]
        self.eps_start = column([c.eps_end if linear and s <= 0 else c.eps_start for c, s in zip(configs, span)])
        self.eps_end = column(per["eps_end"])
        self.eps_rate = column([-c.eps_decay for c in configs] if not linear else [1 / s if s > 0 else 0.0 for s in span])
        self.keys = torch.tensor([as_signed(stream_key(s)) for s in seeds], dtype=torch.int64, device=device)
        self.width = n + cfg.gradient_steps * cfg.batch_size  # random draws per learning iteration
        self._columns = torch.arange(self.width, device=device) * rng.GOLDEN_I64
        self._row_stride = as_signed((self.width * rng.GOLDEN) & rng.MASK64)

        # counters and running episodes (device); host mirrors only for loop control
        self.env_steps = torch.zeros((), dtype=torch.int64, device=device)
        self.draws = torch.zeros((), dtype=torch.int64, device=device)  # iterations run: the RNG counter
        self.obs = self.env.reset().reshape(k, n, *self.obs_shape).to(spec.obs_dtype).contiguous()
        self.ep_return = torch.zeros(k, n, device=device)
        self.finished = torch.zeros(k, device=device)  # episodes finished since the last read_metrics
        self.finished_return = torch.zeros(k, device=device)  # their summed returns
        self.last_loss = torch.zeros(k, device=device)
        self.host_env_steps = 0
        self.host_iterations = 0
        self.host_updates = 0
        self.iteration_fn = self.iteration
        self._eval_buffers: dict[bool, tuple[torch.Tensor, ...]] = {}  # confirm -> (obs, returns, running)
        self.phase = no_phase  # name -> context manager around each phase (fastdqn.profile sets timers)
        self._act_kernel = None
        if (backend == "numba" and fuse and isinstance(self.net, MLP) and spec.obs_dtype == torch.float32
                and k * n * self.net.macs <= NUMBA_ACT_MACS):  # a dozen tensor ops would cost more than the arithmetic
            from fastdqn.kernels import mlp_numba

            self._greedy = torch.zeros(k, n, dtype=torch.int64)
            self._act_kernel = mlp_numba.greedy
            self._act_args = (self.learner.params.numpy(), np.array(self.net.sizes, dtype=np.int64),
                              self.obs.numpy().reshape(k, n, -1), self._greedy.numpy())
        self._collect_kernel = None
        offer = getattr(self.env, "collect_kernel", None)
        fused = offer() if offer is not None and backend == "numba" and fuse and self.replay.packed else None
        if fused is not None:  # the env's fused CPU kernel
            self._collect_kernel, env_buffers = fused
            self._sample_idx = torch.zeros(k, self.width - n, dtype=torch.int64)
            self._no_idx = torch.zeros(k, 0, dtype=torch.int64)
            self._idx_np = {True: self._sample_idx.numpy(), False: self._no_idx.numpy()}
            self._collect_args = (
                self.keys.numpy().view(np.uint64), self.draws.numpy(), self.width, *env_buffers,
                self.replay.data.numpy(), self.replay.pos.numpy(), self.replay.size.numpy(),
                self.obs.numpy(), self.ep_return.numpy(), self.finished.numpy(), self.finished_return.numpy(),
                self.env_steps.numpy())

    # -- the iteration ---------------------------------------------------------------------
    def epsilon(self) -> torch.Tensor:
        """Each agent's exploration rate ``[K, 1]`` at the current env step (device)."""
        t = self.env_steps.to(torch.float32)
        if self.cfg.eps_schedule == "exp":
            return torch.addcmul(self.eps_end, self.eps_start - self.eps_end, torch.exp(self.eps_rate * t))
        return torch.addcmul(self.eps_start, self.eps_end - self.eps_start, (self.eps_rate * t).clamp_(max=1.0))

    def random_bits(self, width: int) -> torch.Tensor:
        """This iteration's ``[K, width]`` random 64-bit words (as int64), one stream per agent."""
        z = self.keys[:, None] + (self.draws * self._row_stride + self._columns[:width])
        return mix64(z)

    def iteration(self, learn: bool) -> torch.Tensor:
        """Advance every agent one vector step (and, if ``learn``, ``gradient_steps`` updates).
        Returns the per-agent loss of the last update (device tensor; zeros before learning)."""
        cfg, b, phase = self.cfg, self.cfg.batch_size, self.phase
        with phase("act"):
            greedy = self.greedy_actions()
            eps = self.epsilon()
        idx = self.collect(greedy, eps, learn)  # act (epsilon-greedy), env step, store, bookkeeping
        if learn:
            with phase("sample"):
                batches = self.replay.gather(idx)  # every update's batch in one gather
            for g in range(cfg.gradient_steps):
                with phase("update"):
                    self.last_loss.copy_(self.learner.gradient_step(batches.rows(g * b, (g + 1) * b)))
                with phase("target"):
                    self.learner.update_target()
        return self.last_loss

    def greedy_actions(self) -> torch.Tensor:
        """Each agent's greedy actions ``[K, N]`` for its current observations: the network's
        forward and argmax, or on the numba backend with an MLP and a small batch
        (:data:`NUMBA_ACT_MACS`) one numba loop, :func:`fastdqn.kernels.mlp_numba.greedy`."""
        if self._act_kernel is not None and not torch.compiler.is_compiling():
            self._act_kernel(*self._act_args)
            return self._greedy
        return self.net.forward(self.learner.param_views, self.obs)[0].argmax(dim=2)

    def collect(self, greedy: torch.Tensor, eps: torch.Tensor, learn: bool) -> torch.Tensor:
        """Epsilon-greedy actions from ``greedy [K, N]`` and ``eps [K, 1]``, the env step, the
        transitions stored, episode bookkeeping and counters; returns this iteration's replay
        sample indices ``[K, gradient_steps * batch_size]`` (``[K, 0]`` when not learning).

        With the numba env backend (CPU) and an env that offers one (``collect_kernel``: CartPole's
        :func:`fastdqn.kernels.cartpole_numba.collect`, and :mod:`fastdqn.kernels.collect_numba`
        around Acrobot's and MountainCar's step) this is one fused kernel (~35 small tensor ops
        cost more than the work); otherwise the tensor program below, which compiles and captures. Both compute the
        same numbers in the same order (tested bit for bit)."""
        phase = self.phase
        if self._collect_kernel is not None and not torch.compiler.is_compiling():
            with phase("collect"), torch_threads_kept():  # a threaded kernel may change torch's thread count
                self._collect_kernel(greedy.numpy(), eps.view(-1).numpy(), *self._collect_args, self._idx_np[learn])
            return self._sample_idx if learn else self._no_idx
        k, n = self.agents, self.num_envs
        with phase("act"):  # epsilon-greedy; u < eps explores, and then u / eps is uniform in [0, 1)
            bits = self.random_bits(self.width if learn else n)
            u = lsr(bits[:, :n], 40).to(torch.float32) * (2.0**-24)
            explore = (u * self.n_actions / eps.clamp(min=1e-30)).clamp_(max=self.n_actions - 1).long()
            actions = torch.where(u < eps, explore, greedy)
        with phase("env"):
            res = self.env.step(actions.view(-1), check=False)
            reward = res.reward.view(k, n)
            terminated, truncated = res.terminated.view(k, n), res.truncated.view(k, n)
        with phase("store"):
            self.replay.add(self.obs, actions, reward, res.final_obs.reshape(k, n, *self.obs_shape), terminated,
                            truncated)
            self.obs.copy_(res.obs.reshape(k, n, *self.obs_shape))
        with phase("bookkeeping"):
            done = terminated | truncated
            self.ep_return.add_(reward)
            self.finished.add_(done.sum(1))
            self.finished_return.add_((self.ep_return * done).sum(1))
            self.ep_return.masked_fill_(done, 0.0)
            self.env_steps.add_(n)
            self.draws.add_(1)
        return (lsr(bits[:, n:], 32) * self.replay.size) >> 32  # uniform indices into the filled rows

    def learns_next(self, ahead: int = 0) -> bool:
        """Whether the iteration ``ahead`` after the next one updates (from host counters that
        advance deterministically)."""
        steps = self.host_env_steps + (ahead + 1) * self.num_envs
        return steps >= self.cfg.learning_starts and (self.host_iterations + ahead + 1) % self.cfg.train_frequency == 0

    def step(self) -> int:
        """Run one iteration (through ``iteration_fn``, which may be compiled or captured) and
        advance the host mirrors; returns the updates it made per agent (0 or ``gradient_steps``)."""
        return self.advance(1)

    def advance(self, iterations: int) -> int:
        """Run ``iterations`` iterations -- one graph replay for all of them when captured
        (:meth:`capture`) -- and advance the host mirrors; returns the updates made per agent."""
        flags = tuple(self.learns_next(i) for i in range(iterations))
        run = getattr(self.iteration_fn, "run", None)
        if run is not None:
            run(flags)
        else:
            for learn in flags:
                self.iteration_fn(learn)
        self.host_env_steps += iterations * self.num_envs
        self.host_iterations += iterations
        updates = self.cfg.gradient_steps * sum(flags)
        self.host_updates += updates
        return updates

    def capture(self, recorder=None, warmup: int = 2) -> None:
        """Run the iteration as recorded CUDA graphs from now on (:mod:`fastdqn.graphs`; the
        ``recorder`` stand-in lets CPU tests run the same logic)."""
        from fastdqn.graphs import CapturedIteration

        self.iteration_fn = CapturedIteration(self, recorder, warmup)

    # -- interval work (host reads) ----------------------------------------------------------
    def read_metrics(self) -> dict:
        """Per-agent episodes finished and their summed return since the last call, the last
        loss and epsilon (one device-to-host copy), then clears the episode accumulators."""
        packed = torch.stack([self.finished, self.finished_return, self.last_loss, self.epsilon()[:, 0]]).cpu()
        self.finished.zero_()
        self.finished_return.zero_()
        return {"episodes": packed[0].tolist(), "return_sum": packed[1].tolist(), "loss": packed[2].tolist(),
                "epsilon": packed[3].tolist()}

    def set_active(self, active) -> None:
        self.learner.set_active(torch.as_tensor(active, dtype=torch.bool).to(self.device))

    @torch.no_grad()
    def evaluate(self, confirm: bool = False) -> torch.Tensor:
        """Greedy returns ``[K, episodes]``: one episode in each eval env (``eval_episodes`` of
        them; with ``confirm``, the ``confirm_episodes`` confirmation envs), fresh resets. Runs in
        chunks of :data:`EVAL_CHUNK` steps with a host check between them (all episodes over:
        stop); each chunk is a recorded graph when the iteration is captured (:meth:`capture`)."""
        k = self.agents
        env = self.confirm_env if confirm else self.eval_env
        first = env.reset().reshape(k, env.num_envs // k, *self.obs_shape)
        if confirm not in self._eval_buffers:  # fixed tensors: what a recorded chunk reads and writes
            self._eval_buffers[confirm] = (first.clone(), torch.zeros(first.shape[:2], device=self.device),
                                           torch.ones(first.shape[:2], dtype=torch.bool, device=self.device))
        obs, returns, running = self._eval_buffers[confirm]
        obs.copy_(first)
        returns.zero_()
        running.fill_(True)

        def chunk(steps):
            for _ in range(steps):
                actions = self.net.forward(self.learner.param_views, obs)[0].argmax(dim=2)
                res = env.step(actions.view(-1), check=False)
                returns.add_(res.reward.view(running.shape) * running)
                running.logical_and_(~(res.terminated | res.truncated).view(running.shape))
                obs.copy_(res.obs.reshape(obs.shape))

        captured = getattr(self.iteration_fn, "call", None)
        for start in range(0, env.max_episode_steps, EVAL_CHUNK):
            steps = min(EVAL_CHUNK, env.max_episode_steps - start)
            if captured is not None:
                captured(("evaluate", confirm, steps), functools.partial(chunk, steps))
            else:
                chunk(steps)
            if not running.any():  # a host sync every EVAL_CHUNK steps, evaluation only
                break
        return returns.clone()

    # The engine's state in one table, which drives state_dict, load_state_dict and select:
    # tensors with the agent as leading dimension, tensors all agents share, the envs, and within
    # the learner and replay state the entries that all agents share (the rest lead with K).
    AGENT_TENSORS = ("obs", "ep_return", "finished", "finished_return", "last_loss", "eps_start", "eps_rate")
    SHARED_TENSORS = ("env_steps", "draws")
    ENVS = ("env", "eval_env", "confirm_env")
    SHARED_ENTRIES = {"learner": ("updates", "optimizer"), "optimizer": ("step",), "replay": ("pos", "size")}

    def state_dict(self) -> dict:
        return {
            "learner": self.learner.state_dict(), "replay": self.replay.state_dict(),
            **{name: getattr(self, name).state_dict() for name in self.ENVS},
            **{name: getattr(self, name) for name in self.AGENT_TENSORS + self.SHARED_TENSORS},
            "active": self.learner.active,
            "host": {"env_steps": self.host_env_steps, "iterations": self.host_iterations, "updates": self.host_updates},
        }

    def load_state_dict(self, d: dict, envs: bool = True) -> None:
        """Continue from :meth:`state_dict` ``d``; ``envs=False`` keeps the envs as they are.
        (Checkpoints written before confirmation envs existed restart those fresh; Gymnasium envs
        restart their episodes, and the agents continue from those.)"""
        self.learner.load_state_dict(d["learner"])
        self.replay.load_state_dict(d["replay"])
        for name in self.ENVS if envs else ():
            if name in d:
                getattr(self, name).load_state_dict(d[name])
        for name in self.AGENT_TENSORS + self.SHARED_TENSORS:
            getattr(self, name).copy_(d[name])
        if envs and self.env.backend == "gymnasium":  # its episodes restarted: continue from the fresh ones
            self.obs.copy_(self.env.last_reset_obs.reshape(self.obs.shape))
            self.ep_return.zero_()
        self.learner.set_active(d["active"].bool())
        h = d["host"]
        self.host_env_steps, self.host_iterations, self.host_updates = h["env_steps"], h["iterations"], h["updates"]

    def select(self, rows: list[int]) -> Engine:
        """A new engine holding only the agents ``rows`` (in that order), each continuing exactly
        where it is: how a population sheds its solved agents, so that they cost nothing more."""
        idx = torch.tensor(rows, dtype=torch.long, device=self.device)

        def take(d: dict, part: str) -> dict:
            shared = self.SHARED_ENTRIES[part]
            return {name: v if name in shared else v[idx] for name, v in d.items()}

        sd = self.state_dict()
        new_sd = {**sd, **{name: sd[name][idx] for name in (*self.AGENT_TENSORS, "active")},
                  "learner": {**take(sd["learner"], "learner"), "optimizer": take(sd["learner"]["optimizer"], "optimizer")},
                  "replay": take(sd["replay"], "replay")}
        native = self.env.backend != "gymnasium"
        if native:
            new_sd.update({name: getattr(self, name).group_state_dict(rows) for name in self.ENVS})
        env_objects = None if native else tuple(getattr(self, name).take_groups(rows) for name in self.ENVS)
        new = Engine([self.configs[i] for i in rows], self.device, self.env.backend, self.net,
                     self._collect_kernel is not None, env_objects=env_objects)
        new.load_state_dict(new_sd, envs=native)
        return new
