"""The Gymnasium adapter (``gymnasium.make_vec("fastdqn/CartPole-v1")``) against Gymnasium's own
``CartPoleVectorEnv``."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import fastdqn  # noqa: F401  (registers the fastdqn/ ids)

VERSIONS = [("v1", 500), ("v0", 200)]


def _make_pair(version: str, n: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "CartPole-v0 is out of date"
        ours = gym.make_vec(f"fastdqn/CartPole-{version}", num_envs=n)
        ref = gym.make_vec(f"CartPole-{version}", num_envs=n, vectorization_mode="vector_entry_point")
    return ours, ref


@pytest.mark.parametrize("version, max_steps", VERSIONS)
def test_make_vec_spaces_and_limits(version, max_steps):
    n = 5
    ours, ref = _make_pair(version, n)
    assert ours.num_envs == n
    assert ours.unwrapped.max_episode_steps == ref.unwrapped.max_episode_steps == max_steps
    assert ours.observation_space == ref.observation_space
    assert ours.action_space == ref.action_space
    assert ours.single_observation_space == ref.single_observation_space
    assert ours.single_action_space == ref.single_action_space
    assert ours.metadata["autoreset_mode"] == ref.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, info = ours.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (n, 4) and isinstance(info, dict)
    assert np.all(np.abs(obs) <= np.float32(0.05))
    assert ours.observation_space.contains(obs)
    obs2, _ = ours.reset(seed=0)
    np.testing.assert_array_equal(obs, obs2)
    out = ours.step(ours.action_space.sample())
    assert len(out) == 5 and out[0].dtype == np.float32 and out[1].dtype == np.float32
    assert out[2].dtype == np.bool_ and out[3].dtype == np.bool_
    ours.close()


def test_adapter_state_setter_one_step(states, actions, gym_reference, near_threshold_mask):
    """Place the adapter's envs in 120k given states (random and near the thresholds) through its
    ``state`` property; one step equals Gymnasium's CartPoleVectorEnv from the same states."""
    n = len(states)
    ours = gym.make_vec("fastdqn/CartPole-v1", num_envs=n)
    ours.reset(seed=0)
    ours.unwrapped.state = states
    np.testing.assert_array_equal(ours.unwrapped.state, states)
    ref_next, ref_term = gym_reference(states, actions)
    obs, rew, term, trunc, _ = ours.step(actions)
    np.testing.assert_allclose(ours.unwrapped.state, ref_next, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(obs, ref_next.astype(np.float32), rtol=1e-6, atol=1e-7)
    excluded = near_threshold_mask(ref_next, 1e-12, 1e-12)
    assert excluded.sum() < 0.01 * n
    np.testing.assert_array_equal(term[~excluded], ref_term[~excluded])
    assert np.all(rew == 1.0) and not trunc.any()
    # next step: the finished envs restart (reward 0, flags False), the others carry on
    obs2, rew2, term2, trunc2, _ = ours.step(np.zeros(n, dtype=np.int64))
    np.testing.assert_array_equal(rew2, np.where(term, 0.0, 1.0))
    assert np.all(np.abs(obs2[term]) <= np.float32(0.05))
    assert not term2[term].any() and not trunc2.any()


def _policy(state, rng, balance_policy):
    """Balance most envs (so some reach the time limit), act randomly in a few (so some fall)."""
    acts = balance_policy(state)
    random_envs = rng.random(len(acts)) < 0.1
    random_envs[:4] = True
    acts[random_envs] = rng.integers(0, 2, random_envs.sum())
    return acts


@pytest.mark.parametrize("version, max_steps", VERSIONS)
def test_adapter_matches_gymnasium_vector_env(version, max_steps, balance_policy):
    n = 48
    steps = max_steps + 120
    ours, ref = _make_pair(version, n)
    ours.reset(seed=1)
    ref.reset(seed=2)
    ref_env = ref.unwrapped
    ref_env.state = ours.unwrapped.state.T.copy()
    rng = np.random.default_rng(0)

    prev_done = np.zeros(n, dtype=bool)
    seen = dict(terminated=0, truncated=0, autoreset=0)
    for t in range(steps):
        # Gymnasium draws different reset states, so give it ours before every step.
        ref_env.state = ours.unwrapped.state.T.copy()
        acts = _policy(ours.unwrapped.state, rng, balance_policy)
        obs, rew, term, trunc, _ = ours.step(acts)
        r_obs, r_rew, r_term, r_trunc, _ = ref.step(acts)

        live = ~prev_done
        np.testing.assert_allclose(obs[live], r_obs[live], rtol=1e-6, atol=1e-7, err_msg=f"step {t}")
        np.testing.assert_array_equal(rew, r_rew, err_msg=f"step {t}")
        np.testing.assert_array_equal(term, r_term, err_msg=f"step {t}")
        np.testing.assert_array_equal(trunc, r_trunc, err_msg=f"step {t}")
        # next-step autoreset: the step after an episode ended returns a reset observation
        # with reward 0 and both flags False
        assert np.all(rew[prev_done] == 0.0) and np.all(rew[live] == 1.0)
        assert not term[prev_done].any() and not trunc[prev_done].any()
        assert np.all(np.abs(obs[prev_done]) <= np.float32(0.05))
        np.testing.assert_array_equal(obs, ours.unwrapped.state.astype(np.float32))

        seen["terminated"] += int(term.sum())
        seen["truncated"] += int(trunc.sum())
        seen["autoreset"] += int(prev_done.sum())
        prev_done = term | trunc
        np.testing.assert_array_equal(prev_done, ref_env.prev_done)
    assert seen["terminated"] >= 4 and seen["truncated"] >= n // 2, seen
    assert seen["autoreset"] > 0


def test_truncated_episode_length_counted_by_hand(balance_policy):
    """With a balancing policy every episode lasts exactly max_episode_steps (200 for v0)."""
    n = 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ours = gym.make_vec("fastdqn/CartPole-v0", num_envs=n)
    obs, _ = ours.reset(seed=3)
    # next-step autoreset: steps 1..200 are the first episode, step 201 the reset step,
    # steps 202..401 the second episode
    for t in range(1, 403):
        obs, rew, term, trunc, _ = ours.step(balance_policy(obs))
        assert not term.any()
        assert trunc.all() == (t in (200, 401)) and trunc.any() == (t in (200, 401)), t
        if t in (201, 402):
            assert np.all(rew == 0.0) and np.all(np.abs(obs) <= np.float32(0.05))
        else:
            assert np.all(rew == 1.0)


def test_adapter_rejects_bad_actions():
    n = 4
    ours = gym.make_vec("fastdqn/CartPole-v1", num_envs=n)
    ours.reset(seed=0)
    before = ours.unwrapped.state.copy()
    for bad, match in [
        (np.zeros(n + 1, dtype=np.int64), "shape"),
        (np.zeros((n, 1), dtype=np.int64), "shape"),
        (np.array([0, 1, 2, 0]), "0 or 1"),
        (np.array([0, -1, 1, 0]), "0 or 1"),
        (np.array([0.0, 1.0, 0.0, 1.0]), "integer"),
    ]:
        with pytest.raises(ValueError, match=match):
            ours.step(bad)
        np.testing.assert_array_equal(ours.unwrapped.state, before)


def test_record_episode_statistics_wrapper(balance_policy):
    """Gymnasium's own episode-statistics wrapper works on the adapter (it relies on next-step
    autoreset): every balanced episode of v0 is reported with return 200 and length 200."""
    from gymnasium.wrappers.vector import RecordEpisodeStatistics

    n = 6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        env = RecordEpisodeStatistics(gym.make_vec("fastdqn/CartPole-v0", num_envs=n))
    obs, _ = env.reset(seed=4)
    for t in range(1, 201):
        obs, _, _, _, info = env.step(balance_policy(obs))
        assert ("episode" in info) == (t == 200)
    np.testing.assert_array_equal(info["_episode"], np.ones(n, dtype=bool))
    np.testing.assert_array_equal(info["episode"]["r"], np.full(n, 200.0))
    np.testing.assert_array_equal(info["episode"]["l"], np.full(n, 200))
