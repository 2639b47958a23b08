"""``CartPole.step(out=...)``, ``CartPole.rollout`` and the numba kernels' serial/threaded switch.

References: a second env stepped the ordinary way (fresh outputs, one ``step`` per step), the
pure-Python SplitMix64 in :mod:`fastdqn.kernels.rng`, Gymnasium's ``CartPoleVectorEnv``, and
hand-made timings for the switch.
"""

from __future__ import annotations

import json

import numba
import numpy as np
import pytest
import torch
from fastdqn.kernels import rng
from fastdqn.kernels.cartpole_numba import PARALLEL_MIN_ENVS
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

import fastdqn
from fastdqn import calibrate
from fastdqn.cartpole import StepResult, _cpu_arrays, rollout_actions

BACKENDS = ["torch", "numba"]
SIZES = [8, PARALLEL_MIN_ENVS + 8]  # the serial and the threaded numba kernels (conftest pins the switch)


def _actions(n: int, t: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(t).integers(0, 2, n))


def _push_out(env: fastdqn.CartPole, t: int) -> None:
    """Every 7th step, put a third of the envs past the track's edge, so resets happen in bulk."""
    if t % 7 == 3:
        s = env.state.clone()
        s[::3, 0] = 2.5
        env.state = s


def _plain_outputs(n: int, dtype) -> StepResult:
    """Row-major outputs (not the kernel's own layout): the strided path."""
    return StepResult(torch.empty(n, 4, dtype=dtype), torch.empty(n), torch.empty(n, dtype=torch.bool),
                      torch.empty(n, dtype=torch.bool), torch.empty(n, 4, dtype=dtype))


# ----------------------------------------------------------------------------- step(out=)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["new_outputs", "row_major"])
def test_out_results_equal_fresh_outputs(backend, dtype, n, layout):
    fresh = fastdqn.CartPole(n, backend=backend, dtype=dtype, seed=5)
    into = fastdqn.CartPole(n, backend=backend, dtype=dtype, seed=5)
    out = into.new_outputs() if layout == "new_outputs" else _plain_outputs(n, dtype)
    ptrs = [t.data_ptr() for t in out]
    resets = 0
    for t in range(40):
        _push_out(fresh, t)
        _push_out(into, t)
        a = _actions(n, t)
        want = fresh.step(a)
        got = into.step(a, out=out)
        assert got is out and [x.data_ptr() for x in got] == ptrs  # written in place, nothing new
        for name in StepResult._fields:
            assert torch.equal(getattr(got, name), getattr(want, name)), (name, t)
        resets += int((want.terminated | want.truncated).sum())
    assert resets > n  # the reset path ran for many envs
    assert torch.equal(fresh.state, into.state) and torch.equal(fresh.elapsed_steps, into.elapsed_steps)


def test_fresh_outputs_are_not_reused_between_steps():
    env = fastdqn.CartPole(PARALLEL_MIN_ENVS + 8, backend="numba", seed=1)
    first = env.step(_actions(env.num_envs, 0))
    kept = first.obs.clone()
    env.step(_actions(env.num_envs, 1))
    assert torch.equal(first.obs, kept)


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_with_wrong_shapes_dtypes_devices_is_a_clear_error(backend):
    n = 16
    env = fastdqn.CartPole(n, backend=backend, seed=0)
    good = env.new_outputs()
    before = env.state.clone()
    bad = {
        "obs": (good._replace(obs=torch.empty(n, 3)), "out.obs must be a torch.float32 tensor of shape \\(16, 4\\)"),
        "final_obs": (good._replace(final_obs=torch.empty(n, 4, dtype=torch.float64)), "out.final_obs"),
        "reward": (good._replace(reward=torch.empty(n + 1)), "out.reward"),
        "terminated": (good._replace(terminated=torch.empty(n, dtype=torch.uint8)), "out.terminated .*torch.bool"),
        "device": (good._replace(truncated=torch.empty(n, dtype=torch.bool, device="meta")), "on meta"),
    }
    for case, (out, match) in bad.items():
        with pytest.raises(ValueError, match=match):
            env.step(torch.zeros(n, dtype=torch.int64), out=out)
        assert torch.equal(env.state, before), case  # nothing stepped
    with pytest.raises(TypeError, match="out must be a StepResult"):
        env.step(torch.zeros(n, dtype=torch.int64), out=(good.obs, good.reward))
    with pytest.raises(TypeError, match="out.reward must be a torch.Tensor"):
        env.step(torch.zeros(n, dtype=torch.int64), out=good._replace(reward=np.zeros(n, np.float32)))
    env.step(torch.zeros(n, dtype=torch.int64), out=good)  # and the good set still works


def test_kernel_layout_spreads_rows_over_cache_sets():
    """The numba backend's rows (state, obs, final_obs) start at distinct offsets within a page,
    and each array's rows are padded apart, for a power-of-two batch."""
    n = 65536
    env = fastdqn.CartPole(n, backend="numba", seed=0)
    out = env.new_outputs()
    starts = [t[:, d].data_ptr() % 4096 for t in (env.state, out.obs, out.final_obs) for d in range(4)]
    assert len(set(starts)) == 12
    state, elapsed = _cpu_arrays(n, ((4, "float32", 0), (1, "int32", 3328)))
    assert state.flags.c_contiguous and state.shape[0] == 4 and state.shape[1] > n and elapsed.shape[1] >= n


# ----------------------------------------------------------------------------- rollout
def _step_loop(env: fastdqn.CartPole, actions: torch.Tensor):
    reward = torch.zeros(env.num_envs)
    episodes = torch.zeros(env.num_envs, dtype=torch.int64)
    for a in actions:
        r = env.step(a.to(torch.int64))
        reward += r.reward
        episodes += r.terminated | r.truncated
    return reward, episodes


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_rollout_with_given_actions_equals_step_loop(backend, n):
    steps = 150  # not a multiple of 64
    acts = torch.from_numpy(np.random.default_rng(3).integers(0, 2, (steps, n)))
    looped = fastdqn.CartPole(n, backend=backend, seed=[4, 9] if n % 2 == 0 else 4, max_episode_steps=60)
    rolled = fastdqn.CartPole(n, backend=backend, seed=[4, 9] if n % 2 == 0 else 4, max_episode_steps=60)
    want_reward, want_episodes = _step_loop(looped, acts)
    got = rolled.rollout(steps, actions=acts)
    assert torch.equal(got.reward, want_reward) and torch.equal(got.episodes, want_episodes)
    assert torch.equal(rolled.state, looped.state) and torch.equal(rolled.elapsed_steps, looped.elapsed_steps)
    assert got.episodes.sum() > n  # episodes ended along the way (resets ran)
    # the draw counter moved on by `steps`: the next resets match too
    past = looped.state.clone()
    past[:, 0] = 3.0
    looped.state = past
    rolled.state = past
    assert torch.equal(looped.step(torch.zeros(n, dtype=torch.int64)).obs,
                       rolled.step(torch.zeros(n, dtype=torch.int64)).obs)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_random_rollout_equals_step_loop_with_its_actions(backend, n):
    steps = 130
    looped = fastdqn.CartPole(n, backend=backend, seed=11)
    rolled = fastdqn.CartPole(n, backend=backend, seed=11)
    acts = rollout_actions(n, steps, rng.seed_key(21))
    want_reward, want_episodes = _step_loop(looped, acts)
    got = rolled.rollout(steps, seed=21)
    assert torch.equal(got.reward, want_reward) and torch.equal(got.episodes, want_episodes)
    assert torch.equal(rolled.state, looped.state)


def test_compiled_torch_rollout_matches_numba_rollout():
    """The torch.compile'd rollout step (the GPU path) against the numba kernel: same episodes
    and step counters, states within float32 rounding (the two compute sin/cos differently)."""
    n, steps = 16, 70
    acts = torch.from_numpy(np.random.default_rng(8).integers(0, 2, (steps, n)))
    compiled = fastdqn.CartPole(n, backend="torch", seed=3, compile=True, max_episode_steps=30)
    kernel = fastdqn.CartPole(n, backend="numba", seed=3, max_episode_steps=30)
    for a in (acts, "random"):
        got, want = compiled.rollout(steps, actions=a, seed=4), kernel.rollout(steps, actions=a, seed=4)
        assert torch.equal(got.reward, want.reward) and torch.equal(got.episodes, want.episodes)
        assert torch.equal(compiled.elapsed_steps, kernel.elapsed_steps)
        torch.testing.assert_close(compiled.state, kernel.state, rtol=1e-4, atol=1e-5)


def test_rollout_actions_match_pure_python_splitmix():
    n, steps, key = 37, 200, rng.seed_key(2**40 + 5)
    acts = rollout_actions(n, steps, key)
    assert acts.shape == (steps, n) and acts.dtype == torch.uint8
    for t, i in [(0, 0), (1, 5), (63, 36), (64, 0), (150, 17), (199, 36)]:
        word = rng.splitmix64((key + ((t // 64) * n + i + 1) * rng.GOLDEN) & rng.MASK64)
        assert acts[t, i].item() == (word >> (t % 64)) & 1, (t, i)
    assert 0.45 < acts.double().mean().item() < 0.55


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_rollout_episode_lengths_match_gymnasium(backend):
    """Random actions: the mean episode length over T steps, against Gymnasium's vector env
    driven by its own random actions (~22 steps)."""
    n, steps = 2048, 300
    ours = fastdqn.CartPole(n, backend=backend, seed=0).rollout(steps, seed=1)
    ref = CartPoleVectorEnv(num_envs=n)
    ref.reset(seed=0)
    actions = np.random.default_rng(1).integers(0, 2, (steps, n))
    episodes, physics_steps = 0, 0
    done = np.zeros(n, dtype=bool)
    for a in actions:
        physics_steps += int((~done).sum())  # Gymnasium resets on the step after an episode ends
        _, _, term, trunc, _ = ref.step(a)
        done = term | trunc
        episodes += int(done.sum())
    assert torch.all(ours.reward == steps)  # CartPole pays 1 every step
    mine, theirs = steps * n / ours.episodes.sum().item(), physics_steps / episodes
    assert abs(mine - theirs) < 0.03 * theirs, (mine, theirs)
    assert 20 < theirs < 25


@pytest.mark.parametrize("backend", BACKENDS)
def test_rollout_rejects_bad_arguments(backend):
    env = fastdqn.CartPole(4, backend=backend, seed=0)
    before = env.state.clone()
    with pytest.raises(ValueError, match="steps must be an integer"):
        env.rollout(0)
    with pytest.raises(ValueError, match="shape \\(5, 4\\)"):
        env.rollout(5, actions=torch.zeros(4, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="integer or bool"):
        env.rollout(5, actions=torch.zeros(5, 4))
    with pytest.raises(ValueError, match="'random' or a tensor"):
        env.rollout(5, actions="greedy")
    with pytest.raises(ValueError, match="seed must be"):
        env.rollout(5, seed=-1)
    assert torch.equal(env.state, before)


# ----------------------------------------------------------------------------- the switch
def test_switch_point_from_timings():
    def t(pairs):
        return {str(n): {"serial": s, "parallel": p} for n, (s, p) in pairs.items()}

    assert calibrate.switch_point(t({256: (1, 3), 1024: (4, 3), 4096: (16, 6)})) == 1024
    # a win at one size that does not hold at the next one up does not count
    assert calibrate.switch_point(t({256: (1, 0.5), 1024: (4, 5), 4096: (16, 6)})) == 4096
    assert calibrate.switch_point(t({256: (1, 3), 1024: (4, 5)})) == calibrate.NEVER
    assert calibrate.switch_point(t({256: (1, 0.95)})) == calibrate.NEVER  # within the 10 % margin


def test_parallel_min_envs_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.delenv(calibrate.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(calibrate, "_memo", {})
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    calls = []

    def fake_measure():
        calls.append(1)
        return {"512": {"serial": 4.0, "parallel": 5.0}, "2048": {"serial": 16.0, "parallel": 9.0}}

    monkeypatch.setattr(calibrate, "measure", fake_measure)
    assert calibrate.parallel_min_envs() == 2048
    stored = json.loads((tmp_path / "fastdqn" / "parallel_min_envs.json").read_text())
    [entry] = stored.values()
    assert entry["parallel_min_envs"] == 2048 and entry["seconds_per_step"]["2048"]["parallel"] == 9.0
    monkeypatch.setattr(calibrate, "_memo", {})  # a new process: reads the file, measures nothing
    assert calibrate.parallel_min_envs() == 2048 and len(calls) == 1
    monkeypatch.setattr(numba, "get_num_threads", lambda: 1)
    assert calibrate.parallel_min_envs() == 2048 and len(calls) == 2  # another thread count: measured anew
    assert len(json.loads((tmp_path / "fastdqn" / "parallel_min_envs.json").read_text())) == 2
    monkeypatch.setenv(calibrate.ENV_VAR, "123")
    assert calibrate.parallel_min_envs() == 123
    monkeypatch.setenv(calibrate.ENV_VAR, "lots")
    with pytest.raises(ValueError, match="FASTDQN_PARALLEL_MIN_ENVS must be an integer"):
        calibrate.parallel_min_envs()


def test_unwritable_cache_still_works(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.delenv(calibrate.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # a file where the cache folder would go
    monkeypatch.setattr(calibrate, "_memo", {})
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    monkeypatch.setattr(calibrate, "measure", lambda: {"256": {"serial": 2.0, "parallel": 1.0}})
    assert calibrate.parallel_min_envs() == 256


def test_measure_times_both_kernels():
    timings = calibrate.measure(sizes=(256, 2048), block_s=1e-4, repeats=1)
    assert set(timings) == {"256", "2048"}
    for t in timings.values():
        assert t["serial"] > 0 and t["parallel"] > 0
