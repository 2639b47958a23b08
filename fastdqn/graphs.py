"""The training iteration (and the evaluation) captured as CUDA graphs and replayed (``--compile graph``).

:meth:`fastdqn.engine.Engine.iteration` has no host sync and no data-dependent Python branch, and
every tensor it changes keeps its address (in-place updates). So once it has run eagerly a few
times (warm-up: the caching allocator and cuBLAS settle), the kernels of one call can be recorded
into a CUDA graph and replayed: one launch per iteration instead of one per kernel (~170 eager).

One graph per *pattern* of learn flags: ``run((False,))`` and ``run((True,))`` for single
iterations, or the flags of the next T iterations for one replay of T (``Engine.advance(T)``).
The first ``warmup`` calls of a pattern run eagerly (they are real iterations); the next one
records the graph (recording executes nothing) and replays it. Shapes never change while
captured: agents that solve are masked (``Learner.set_active``), not dropped, so nothing
recaptures. The greedy evaluation runs its episodes in chunks of 50 steps between host checks;
under capture each chunk is a graph too (:meth:`CapturedIteration.call`).

Recording goes through a *recorder*. :class:`CudaRecorder` is the real one. CPU tests use
:class:`AddressCheckRecorder`, which "records" by keeping the function and replays by calling it
again, and checks on every replay the property capture rests on: every engine tensor is still
at the address it had when the graph was recorded.
"""

from __future__ import annotations

import torch


class CudaRecorder:
    """Eager warm-up on a side stream (as torch's CUDA-graph recipe asks) and capture into a
    ``torch.cuda.CUDAGraph`` with its own memory pool."""

    def __init__(self, device):
        self.device = torch.device(device)
        self.side = torch.cuda.Stream(self.device)

    def eager(self, body) -> None:
        self.side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.side):
            body()
        torch.cuda.current_stream(self.device).wait_stream(self.side)

    def capture(self, body) -> torch.cuda.CUDAGraph:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            body()
        return graph


def engine_tensors(engine) -> dict[str, torch.Tensor]:
    """Every tensor an engine's iteration reads or writes across calls, by a readable name: its
    state (learner, replay, envs, counters) and the env's internal buffers."""
    found: dict[str, torch.Tensor] = {}

    def walk(prefix, value):
        if isinstance(value, torch.Tensor):
            found[prefix] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)

    state = engine.state_dict()
    for name in engine.ENVS:  # copies; the env's own buffers are taken below
        state.pop(name)
    walk("engine", state)
    for env in engine.ENVS:
        for name in ("_state", "_elapsed", "_round", "_env_keys", "_env_index"):
            t = getattr(getattr(engine, env), name, None)
            if isinstance(t, torch.Tensor):
                found[f"{env}.{name}"] = t
    for confirm, tensors in engine._eval_buffers.items():
        for name, t in zip(("obs", "returns", "running"), tensors):
            found[f"{'confirm' if confirm else 'eval'}.{name}"] = t
    return found


class AddressCheckRecorder:
    """The CPU stand-in for :class:`CudaRecorder`: ``capture`` keeps the body without running it
    (a CUDA capture executes nothing either) and each replay runs it, then checks that no tensor
    of :func:`engine_tensors` moved since the capture (a graph would go on reading and writing the
    old addresses). ``replays`` counts the replays."""

    def __init__(self, engine):
        self.engine = engine
        self.replays = 0

    def eager(self, body) -> None:
        body()

    def capture(self, body):
        recorder, addresses = self, {k: t.data_ptr() for k, t in engine_tensors(self.engine).items()}

        class Replay:
            def replay(self):
                body()
                recorder.replays += 1
                now = {k: t.data_ptr() for k, t in engine_tensors(recorder.engine).items()}
                moved = sorted(k for k in addresses if now.get(k) != addresses[k])
                if moved:
                    raise AssertionError(f"tensors moved after capture: {', '.join(moved)}")

        return Replay()


class CapturedIteration:
    """``engine.iteration`` behind recorded graphs, one per pattern of learn flags (see the module
    docstring). Called as ``captured(learn)`` it is a drop-in ``Engine.iteration_fn``."""

    def __init__(self, engine, recorder=None, warmup: int = 2):
        self.engine = engine
        self.recorder = recorder if recorder is not None else CudaRecorder(engine.device)
        self.warmup = warmup
        self.graphs: dict[tuple, object] = {}  # key (learn flags, or an evaluation chunk's) -> recorded graph
        self.eager_runs: dict[tuple, int] = {}

    def __call__(self, learn: bool) -> torch.Tensor:
        return self.run((bool(learn),))

    def run(self, flags: tuple[bool, ...]) -> torch.Tensor:
        """One iteration per flag, in order; returns the engine's last loss (a fixed tensor)."""
        iteration = self.engine.iteration

        def body():
            for learn in flags:
                iteration(learn)

        self.call(flags, body)
        return self.engine.last_loss

    def call(self, key: tuple, body) -> None:
        """Run ``body`` (which must do the same work every time it runs for ``key``): eagerly for
        the first ``warmup`` calls of ``key``, then as the graph recorded at the next."""
        graph = self.graphs.get(key)
        if graph is None:
            done = self.eager_runs.get(key, 0)
            if done < self.warmup:
                self.eager_runs[key] = done + 1
                self.recorder.eager(body)
                return
            graph = self.graphs[key] = self.recorder.capture(body)
        graph.replay()
