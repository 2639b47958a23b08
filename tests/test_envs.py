"""The env protocol: specs, bad ids, the Gymnasium slow path against Gymnasium's own vector env,
observations of any shape through the engine and replay, networks rebuilt from checkpoints, and
"solved" resting on a confirmation over fresh episodes."""

from __future__ import annotations

import csv
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

import fastdqn
from fastdqn import envs
from fastdqn.checkpoint import load_policy
from fastdqn.config import ConfigError, preset
from fastdqn.envs import EnvError, make, spec
from fastdqn.evaluate import gymnasium_returns
from fastdqn.replay import ReplayBuffer
from fastdqn.train import train


# --- a tiny Gymnasium env the tests register (the slow path for "an env a user registers") ------
class Walk(gym.Env):
    """A walk on 0..L: action 1 steps right, 0 left; reaching L ends the episode with reward 1,
    every other step costs 0.1. Observation: a [rows, cols] grid holding the position one-hot (so
    observations have two dimensions), or a [cols] vector."""

    def __init__(self, length: int = 5, grid: bool = True, dtype=np.float32):
        self.length, self.grid, self.dtype = length, grid, dtype
        shape = (2, length + 1) if grid else (length + 1,)
        self.observation_space = gym.spaces.Box(0, 1, shape, dtype)
        self.action_space = gym.spaces.Discrete(2)
        self.pos = 0

    def _obs(self):
        o = np.zeros(self.observation_space.shape, self.dtype)
        if self.grid:
            o[0, self.pos] = 1
            o[1, :self.pos] = 1
        else:
            o[self.pos] = 1
        return o

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = int(self.np_random.integers(0, 2))
        return self._obs(), {}

    def step(self, action):
        self.pos = max(0, self.pos + (1 if action else -1))
        done = self.pos >= self.length
        return self._obs(), 1.0 if done else -0.1, done, False, {}


class ImageEnv(Walk):
    def __init__(self):
        super().__init__()
        self.observation_space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)


class MissingDependency(gym.Env):
    def __init__(self):
        raise gym.error.DependencyNotInstalled('Foo is not installed, run `pip install "gymnasium[foo]"`')


gym.register("TestWalk-v0", entry_point=Walk, max_episode_steps=20, reward_threshold=0.6)
gym.register("TestWalkVec-v0", entry_point=lambda: Walk(grid=False), max_episode_steps=20, reward_threshold=0.6)
gym.register("TestImage-v0", entry_point=ImageEnv, max_episode_steps=20)
gym.register("TestMissing-v0", entry_point=MissingDependency, max_episode_steps=20)


# --- specs and bad ids --------------------------------------------------------------------------
def test_native_specs_match_gymnasium_registrations():
    for env_id in envs.native_ids():
        if env_id.startswith("MinAtar/"):  # registered by the reference package: tests/test_minatar_*.py
            continue
        s, g = spec(env_id), gym.spec(env_id)
        e = gym.make(env_id)
        assert s.max_episode_steps == g.max_episode_steps and s.reward_threshold == g.reward_threshold
        assert s.n_actions == e.action_space.n and s.obs_shape == e.observation_space.shape
        assert s.gym_id == env_id and s.native


@pytest.mark.parametrize("env_id, words", [
    ("NoSuchEnv-v0", ["unknown env id", "CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Box observation"]),
    ("Pendulum-v1", ["Box actions", "Discrete"]),
    ("TestImage-v0", ["images", "uint8"]),
    ("TestMissing-v0", ["not installed", "gymnasium[foo]"]),
])
def test_bad_ids_are_one_line(env_id, words):
    with pytest.raises(EnvError) as e:
        spec(env_id)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    with pytest.raises(ConfigError):  # the config refuses it the same way
        preset("fast").replace(env_id=env_id).validate()


def test_gymnasium_id_spec():
    s = spec("TestWalk-v0")
    assert (s.native, s.obs_shape, s.n_actions, s.max_episode_steps, s.reward_threshold) == (False, (2, 6), 2, 20, 0.6)
    with pytest.raises(EnvError, match="not available"):
        make("TestWalk-v0", 4, backend="numba")


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "MountainCar-v0"])
@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_make_native(env_id, backend):
    env = make(env_id, 6, backend=backend, seed=[1, 2])
    s = spec(env_id)
    assert env.spec is s and env.groups == 2
    obs = env.reset()
    assert obs.shape == (6, *s.obs_shape)
    res = env.step(torch.zeros(6, dtype=torch.int64))
    assert res.obs.shape == res.final_obs.shape == (6, *s.obs_shape) and res.reward.dtype == torch.float32


# --- the slow path against Gymnasium's own vector env ---------------------------------------------
def test_gymnasium_path_equals_gymnasium_vector_env():
    """Same-step autoreset, final observations, rewards and flags as Gymnasium's SyncVectorEnv with
    the same sub-env seeds, over episodes that end by termination and by truncation."""
    n = 6
    env = make("TestWalk-v0", n, seed=[3, 4])
    ref = gym.make_vec("TestWalk-v0", num_envs=n, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    ref_obs, _ = ref.reset(seed=env._sub_seeds())
    assert np.array_equal(env.reset().numpy(), ref_obs)
    rng = np.random.default_rng(0)
    ends = {"terminated": 0, "truncated": 0}
    for _ in range(120):
        a = rng.integers(0, 2, n) if rng.random() < 0.5 else np.ones(n, dtype=np.int64)
        res = env.step(torch.tensor(a))
        obs, reward, term, trunc, info = ref.step(a)
        assert np.array_equal(res.obs.numpy(), obs)
        assert np.array_equal(res.reward.numpy(), reward.astype(np.float32))
        assert np.array_equal(res.terminated.numpy(), term) and np.array_equal(res.truncated.numpy(), trunc)
        for i in range(n):
            want = info["final_obs"][i] if (term[i] or trunc[i]) else obs[i]
            assert np.array_equal(res.final_obs[i].numpy(), want)
        ends["terminated"] += int(term.sum())
        ends["truncated"] += int((trunc & ~term).sum())
    assert ends["terminated"] > 0 and ends["truncated"] > 0


def test_gymnasium_path_take_groups_keeps_episodes():
    env = make("TestWalkVec-v0", 6, seed=[0, 1, 2])
    for _ in range(3):
        env.step(torch.ones(6, dtype=torch.int64))
    positions = [e.unwrapped.pos for e in env.venv.envs]
    sub = env.take_groups([2, 0])
    assert [e.unwrapped.pos for e in sub.venv.envs] == positions[4:6] + positions[0:2]


# --- observations of any shape and dtype ------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bool, torch.uint8])
def test_replay_stores_any_shape_in_its_dtype(dtype):
    k, n, cap, shape = 2, 3, 5, (2, 3, 4)
    buf = ReplayBuffer(cap, shape, agents=k, obs_dtype=dtype)
    assert not buf.packed and buf.obs.dtype == dtype and buf.obs.shape == (k, cap, *shape)
    gen = torch.Generator().manual_seed(0)
    seen = []
    for _ in range(3):  # 9 rows into a ring of 5: wraps
        obs = torch.randint(0, 2, (k, n, *shape), generator=gen).to(dtype)
        nxt = torch.randint(0, 2, (k, n, *shape), generator=gen).to(dtype)
        act = torch.randint(0, 7, (k, n), generator=gen)
        rew = torch.randn(k, n, generator=gen)
        term, trunc = torch.rand(k, n, generator=gen) < 0.5, torch.rand(k, n, generator=gen) < 0.5
        buf.add(obs, act, rew, nxt, term, trunc)
        seen += [(obs[:, i], act[:, i], rew[:, i], nxt[:, i], term[:, i], trunc[:, i]) for i in range(n)]
    assert int(buf.size) == cap and int(buf.pos) == 9 % cap
    # ring slot j holds the last transition written there: written index w with w % cap == j
    idx = torch.tensor([[0, 4, 2], [3, 1, 0]])
    b = buf.gather(idx)
    for kk in range(k):
        for j, slot in enumerate(idx[kk].tolist()):
            w = max(w for w in range(len(seen)) if w % cap == slot)
            o, a, r, nx, te, tr = seen[w]
            assert torch.equal(b.obs[kk, j], o[kk]) and torch.equal(b.next_obs[kk, j], nx[kk])
            assert b.obs.dtype == dtype
            assert int(b.actions[kk, j]) == int(a[kk]) and float(b.rewards[kk, j]) == float(r[kk])
            assert float(b.terminated[kk, j]) == float(te[kk]) and float(b.truncated[kk, j]) == float(tr[kk])


def test_train_on_a_registered_gymnasium_env_with_grid_observations(tmp_path):
    """A population on the slow path with 2-D observations: it learns the walk (Gymnasium scores
    the policy), the checkpoint rebuilds the network for [B, 2, 6] observations, and the replay
    holds the env's true transitions."""
    cfg = preset("fast").replace(env_id="TestWalk-v0", num_envs=4, total_steps=6000, learning_starts=200,
                                 eval_every=500, eval_episodes=8, confirm_episodes=16, progress=False, plot=True,
                                 buffer_size=5000, batch_size=32, hidden=(32,), seed=0)
    result = train(cfg, out=tmp_path / "walk", population=2)
    assert result.solved and all(a["solved"] for a in result.agents)
    summary = json.loads((tmp_path / "walk" / "summary.json").read_text())
    assert summary["env_backend"] == "gymnasium" and summary["env_id"] == "TestWalk-v0"
    for agent in range(2):
        policy = load_policy(tmp_path / "walk", agent=agent)
        assert policy.obs_shape == (2, 6)
        rets = gymnasium_returns(policy, "TestWalk-v0", 20, seed=7)  # Gymnasium's own env
        assert rets.mean() >= 0.6 - 1e-6  # at most four -0.1 steps then +1: the threshold 0.6 is the optimum
    with pytest.raises(ValueError, match=r"\[B, 2, 6\]"):
        policy(np.zeros((3, 12), dtype=np.float32))
    assert (tmp_path / "walk" / "learning_curve.png").exists()


def test_gymnasium_env_without_threshold_never_solves(tmp_path):
    gym.register("TestWalkNoThreshold-v0", entry_point=lambda: Walk(grid=False), max_episode_steps=20)
    cfg = preset("fast").replace(env_id="TestWalkNoThreshold-v0", num_envs=2, total_steps=600, learning_starts=100,
                                 eval_every=300, eval_episodes=4, confirm_episodes=4, progress=False, plot=True)
    result = train(cfg, out=tmp_path / "r")
    assert not result.solved and result.agents[0]["eval_mean_return"] is not None
    assert (tmp_path / "r" / "learning_curve.png").exists()


# --- "solved" rests on the confirmation ---------------------------------------------------------------
def test_a_crossing_that_fresh_episodes_do_not_confirm_is_not_solved(tmp_path, monkeypatch):
    """Evaluations always 'pass' (500); the confirmation on fresh episodes is the real greedy
    return, far below 475 this early: the agent is never called solved, and every evaluation was
    followed by a confirmation."""
    real = fastdqn.engine.Engine.evaluate

    def lucky(self, confirm=False):
        rets = real(self, confirm)
        return rets if confirm else torch.full_like(rets, 500.0)

    monkeypatch.setattr(fastdqn.engine.Engine, "evaluate", lucky)
    cfg = preset("fast").replace(total_steps=3000, eval_every=1000, progress=False, plot=False, seed=0)
    result = train(cfg, out=tmp_path / "r")
    assert not result.solved
    with open(tmp_path / "r" / "evals.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(float(r["eval_mean_return"]) == 500.0 for r in rows)
    assert all(r["confirm_mean_return"] and float(r["confirm_mean_return"]) < 475 for r in rows)
    assert result.agents[0]["eval_mean_return"] == 500.0  # the last evaluation, not a solve


def test_resume_on_the_gymnasium_path_continues_from_fresh_episodes(tmp_path):
    """Gymnasium envs cannot be snapshotted: a resumed run restarts their episodes, and the first
    stored transition starts from the fresh reset observation (never a stale one)."""
    cfg = preset("fast").replace(env_id="TestWalkVec-v0", num_envs=2, total_steps=400, learning_starts=100,
                                 eval_every=200, eval_episodes=2, confirm_episodes=2, progress=False, plot=False,
                                 stop_when_solved=False, buffer_size=1000)
    train(cfg, out=tmp_path / "r")
    from fastdqn.train import resume_config

    seen = {}
    real_add = ReplayBuffer.add

    def spy(self, obs, *rest):
        seen.setdefault("first", obs.clone())
        return real_add(self, obs, *rest)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ReplayBuffer, "add", spy)
        train(resume_config(tmp_path / "r", total_steps=402), out=tmp_path / "r", resume=True)
    ref = gym.make_vec("TestWalkVec-v0", num_envs=2, vectorization_mode="sync")
    fresh, _ = ref.reset(seed=make("TestWalkVec-v0", 2, seed=cfg.seed)._sub_seeds())
    assert np.array_equal(seen["first"][0].numpy(), fresh)


@pytest.mark.parametrize("margin, solved", [(2.0, False), (0.0, True), (1.0, True)])
def test_confirmation_must_clear_the_threshold_by_its_margin(tmp_path, monkeypatch, margin, solved):
    """Hand-worked: the confirmation's 200 returns are half 440 and half 520 (mean 480, std 40,
    standard error 40 / sqrt(200) = 2.83): 480 - 2 x 2.83 = 474.3 misses 475; 480 - 2.83 clears it."""
    real = fastdqn.engine.Engine.evaluate

    def fixed(self, confirm=False):
        rets = real(self, confirm)
        if not confirm:
            return torch.full_like(rets, 500.0)
        return torch.tensor([440.0, 520.0]).repeat(rets.shape[1] // 2)[None].expand_as(rets).clone()

    monkeypatch.setattr(fastdqn.engine.Engine, "evaluate", fixed)
    cfg = preset("fast").replace(total_steps=2000, eval_every=1000, progress=False, plot=False, confirm_margin=margin)
    result = train(cfg, out=tmp_path / "r")
    assert result.solved is solved
    a = result.agents[0]
    if solved:
        assert a["eval_mean_return"] == 480.0 and a["eval_std_return"] == pytest.approx(40.0)
        assert a["crossing_eval_mean_return"] == 500.0 and a["solved_at_env_step"] == 1000


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Acrobot-v1", "MinAtar/Breakout-v1"])
def test_threaded_numba_kernels_leave_torchs_thread_count(env_id):
    """numba's OpenMP layer sets the process's OpenMP thread count, which torch's pool shares: a
    threaded kernel must not leave torch on numba's count (a 1-thread trainer found 2 after an eval)."""
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        env = make(env_id, 4096, backend="numba", seed=0)
        assert env.parallel  # tests pin the switch at 4096 envs (conftest)
        env.rollout(2)
        env.step(torch.zeros(4096, dtype=torch.long))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
