"""Reference point for the env benchmarks: gymnax's CartPole-v1 (or another gymnax id) on JAX, CPU only.

    python bench/gymnax_ref.py

Two ways of driving N gymnax envs with default params (500-step limit, auto-reset inside ``step``):

* ``make_step(n)``: one ``jax.jit(jax.vmap(env.step))`` call per step, from Python, actions from a
  pool of 8 pre-drawn batches (not timed, as in env_throughput.py). The per-env PRNG keys that
  gymnax's auto-reset needs are split inside the jitted call. Each call = n env steps.
* ``make_rollout(n, T)``: one jitted ``jax.lax.scan`` of T vmapped steps, actions drawn inside the
  scan. Each call = n*T env steps. This is how gymnax is meant to be used: no Python per step.

Both carry (env states, key) across calls with buffer donation, so each call continues where the
last ended and updates in place. Each call blocks until its result is ready. Prints M env steps/s
(median of 5 timed blocks of ~0.25 s after a warm-up) and the jit compile time (lower + compile).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, time_repeats  # noqa: E402

PLATFORM = "cpu"  # JAX backend; env_throughput.py --gymnax-platform cuda sets "cuda"


def _jax():
    import jax

    jax.config.update("jax_platforms", PLATFORM)  # only this backend, even where another exists
    import gymnax

    return jax, gymnax


def available() -> str | None:
    """``"gymnax X jax Y"``, or None when gymnax/jax cannot be imported."""
    try:
        from importlib.metadata import version

        jax, _ = _jax()
        return f"gymnax {version('gymnax')} jax {jax.__version__}"
    except ImportError:
        return None


def _setup(n: int, seed: int = 0, env_id: str = "CartPole-v1"):
    """gymnax ``env_id`` with default params: (vmapped step -> (obs, state, reward, done), states, key, actions)."""
    jax, gymnax = _jax()
    env, params = gymnax.make(env_id)

    def step(key, state, action):
        out = env.step(key, state, action, params)
        # gymnax <= 0.0.9: (obs, state, reward, done, info); >= 1.0: (obs, state, reward, terminated, truncated, info)
        done = out[3] if len(out) == 5 else out[3] | out[4]
        return out[0], out[1], out[2], done

    key, sub = jax.random.split(jax.random.key(seed))
    _, states = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(sub, n), params)
    return jax.vmap(step), states, key, env.num_actions


def _compiled(fn, *args):
    """AOT-compile ``fn`` (carry = first argument, donated) and the seconds it took."""
    jax, _ = _jax()
    t = time.perf_counter()
    compiled = jax.jit(fn, donate_argnums=0).lower(*args).compile()
    return compiled, time.perf_counter() - t


def make_step(n: int, seed: int = 0, env_id: str = "CartPole-v1"):
    """Zero-argument callable advancing n envs by one step (blocks until done); ``.compile_s`` set."""
    jax, _ = _jax()
    vstep, states, key, n_actions = _setup(n, seed, env_id)
    akeys = jax.random.split(jax.random.key(seed + 1), 8)
    pool = [jax.random.randint(k, (n,), 0, n_actions) for k in akeys]

    def one(carry, action):
        states, key = carry
        key, sub = jax.random.split(key)
        obs, states, reward, done = vstep(jax.random.split(sub, n), states, action)
        return (states, key), (obs, reward, done)

    fn, compile_s = _compiled(one, (states, key), pool[0])
    carry, i = [(states, key)], [0]

    def call():
        carry[0], out = fn(carry[0], pool[i[0] % 8])
        i[0] += 1
        return jax.block_until_ready(out)

    call.compile_s = compile_s
    return call


def make_rollout(n: int, T: int = 100, seed: int = 0, env_id: str = "CartPole-v1"):
    """Zero-argument callable running T steps of n envs in one scan -> (sum of rewards, sum of dones)."""
    jax, _ = _jax()
    jnp = jax.numpy
    vstep, states, key, n_actions = _setup(n, seed, env_id)

    def body(carry, _):
        states, key = carry
        key, kact, kstep = jax.random.split(key, 3)
        action = jax.random.randint(kact, (n,), 0, n_actions)
        _, states, reward, done = vstep(jax.random.split(kstep, n), states, action)
        return (states, key), (reward.sum(), done.sum())

    def rollout(carry):
        carry, (rewards, dones) = jax.lax.scan(body, carry, length=T)
        return carry, (rewards.sum(), dones.sum(dtype=jnp.int32))

    fn, compile_s = _compiled(rollout, (states, key))
    carry = [(states, key)]

    def call():
        carry[0], out = fn(carry[0])
        return jax.block_until_ready(out)

    call.compile_s = compile_s
    return call


if __name__ == "__main__":
    import os
    import platform

    from fastdqn.profile import cpu_model

    print(f"{available()}, {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    T = 100
    for n in (4096, 65536):
        for name, fn, steps in (("step", make_step(n), n), (f"scan T={T}", make_rollout(n, T), n * T)):
            t = time.perf_counter()
            fn()  # warm-up
            first = time.perf_counter() - t
            per_call, calls = time_repeats(fn, repeats=5, min_time=0.25)
            line = f"N={n:6d} {name:10s}: {steps / median(per_call) / 1e6:8.1f} M env steps/s"
            line += f"  (compile {fn.compile_s:.2f} s, first call {first * 1e3:.1f} ms, {calls} calls/block)"
            if name != "step":
                rewards, dones = (float(x) for x in fn())  # one more call, in steady state
                line += f"\n    sanity: reward/env {rewards / n:.0f}, episodes/env/{T} steps {dones / n:.2f}"
                line += f" = mean episode length {n * T / dones:.1f}"
            print(line)
