"""The MinAtar reference package as a step-for-step oracle for fastdqn's batched games.

Each of ``n`` reference envs gets a :class:`RecordingRandom` in place of its ``RandomState``:
it passes every draw through and records it. The draws of a reference step (or reset) are then
encoded, by the game's ``encode_step``/``encode_reset`` (written in the game's test), as the
uniforms fastdqn's batched step consumes, so both sides see the same random outcomes; the
batched step then runs all ``n`` envs at once and every observation, reward, terminal flag,
difficulty level and previous action must be equal.
"""

from __future__ import annotations

import numpy as np
import torch

import fastdqn


class RecordingRandom:
    """A ``numpy.random.RandomState`` that records each call's name, arguments and result."""

    def __init__(self, seed: int):
        self._rs = np.random.RandomState(seed)
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        method = getattr(self._rs, name)

        def call(*args, **kwargs):
            value = method(*args, **kwargs)
            self.calls.append((name, args, kwargs, value))
            return value

        return call

    def take(self) -> list[tuple]:
        calls, self.calls = self.calls, []
        return calls


def reference_frame(env) -> np.ndarray:
    return np.transpose(env.state(), (2, 0, 1)).astype(bool)


def run(env_id: str, game: str, encode_reset, encode_step, *, n: int, steps: int, sticky: float, seed: int,
        ramping: bool = True, actions=None) -> dict:
    """Step ``n`` reference envs and fastdqn's batched game side by side for ``steps`` steps of
    random actions (or ``actions(t, rng) -> [n]`` action indices); asserts equality at every step
    and returns counts (steps, episodes, reward total, sticky repeats) for the caller's checks."""
    from minatar import Environment

    dyn = fastdqn.make(env_id, 1, backend="torch", sticky_action_prob=sticky, difficulty_ramping=ramping).dyn
    refs, recs = [], []
    for i in range(n):
        env = Environment(game, sticky_action_prob=sticky, difficulty_ramping=ramping)
        rec = RecordingRandom(seed * 1000 + i)
        env.random = env.env.random = rec
        env.reset()
        refs.append(env)
        recs.append(rec)

    def uniforms(rows, width):
        arr = np.asarray(rows, dtype=np.float64).reshape(n, width)
        return [torch.from_numpy(arr[:, j].copy()) for j in range(width)]

    s = dyn.reset_state(uniforms([encode_reset(r.take()) for r in recs], dyn.n_uniforms), None)
    s[0] = 0  # the previous action starts at 0, as the reference's
    rng = np.random.default_rng(seed)
    n_act = len(dyn.actions)
    counts = {"steps": 0, "episodes": 0, "reward": 0.0, "sticky": 0}
    _check(dyn, s, refs, -1)
    for t in range(steps):
        a = rng.integers(n_act, size=n) if actions is None else np.asarray(actions(t, rng))
        results = [env.act(dyn.actions[int(a[i])]) for i, env in enumerate(refs)]
        rows = []
        for rec in recs:
            calls = rec.take()
            assert calls and calls[0][0] == "rand" and calls[0][1] == (), f"step {t}: first draw is not the sticky draw"
            rows.append([calls[0][3], *encode_step(calls[1:])])
        u = uniforms(rows, dyn.step_uniforms)
        counts["sticky"] += int(sum(u[0] < sticky))
        s, reward, terminal = dyn.step(s, torch.from_numpy(a), u)
        ref_reward = np.array([r for r, _ in results], dtype=np.float32)
        ref_term = np.array([d for _, d in results])
        np.testing.assert_array_equal(reward.numpy(), ref_reward, err_msg=f"reward at step {t}")
        np.testing.assert_array_equal(terminal.numpy(), ref_term, err_msg=f"terminal at step {t}")
        _check(dyn, s, refs, t)
        counts["steps"] += n
        counts["reward"] += float(ref_reward.sum())
        if ref_term.any():
            done = np.flatnonzero(ref_term)
            resets = {}
            for i in done:
                refs[i].reset()
                resets[i] = encode_reset(recs[i].take())
            fill = [resets.get(i, [0.5] * dyn.n_uniforms) for i in range(n)]
            fresh = dyn.reset_state(uniforms(fill, dyn.n_uniforms), None)
            mask = torch.from_numpy(ref_term)
            fresh[0] = s[0]  # the previous action survives the reset
            s = torch.where(mask, fresh, s)
            counts["episodes"] += len(done)
            _check(dyn, s, refs, t)
    return counts


def _check(dyn, s, refs, t):
    frames = dyn.observe(s).numpy()
    want = np.stack([reference_frame(env) for env in refs])
    if not np.array_equal(frames, want):
        i = int(np.flatnonzero((frames != want).reshape(len(refs), -1).any(1))[0])
        np.testing.assert_array_equal(frames[i], want[i], err_msg=f"env {i}, observation after step {t}")
    last = s[0].numpy()
    want = np.array([env.last_action for env in refs])
    np.testing.assert_array_equal(last, want, err_msg=f"previous action after step {t}")
    ramp = dyn.difficulty(s).numpy()
    want = np.array([env.env.difficulty_ramp() or 0 for env in refs])
    np.testing.assert_array_equal(ramp, want, err_msg=f"difficulty after step {t}")


def check_spec(env_id: str):
    """fastdqn's spec and action set of a MinAtar id against the reference package's Gymnasium
    registration (actions, frame shape moved channels-first, bool frames, the action map, the
    channel order); returns the reference env for game-specific checks."""
    import gymnasium as gym
    from minatar.gym import register_envs

    if env_id not in gym.registry:
        register_envs()
    ref = gym.make(env_id)
    s = fastdqn.envs.spec(env_id)
    assert s.n_actions == ref.action_space.n
    assert s.obs_shape == tuple(np.roll(ref.observation_space.shape, 1)) and s.obs_dtype == torch.bool
    dyn = fastdqn.make(env_id, 2, backend="torch").dyn
    assert dyn.actions == tuple(ref.unwrapped.action_set)
    channels = ref.unwrapped.game.env.channels  # name -> index
    assert dyn.game.channels == tuple(sorted(channels, key=channels.get))
    return ref
