"""DQNConfig presets and validation.

The preset values are checked against their sources (the TF1 Cart-Pole tutorial as described in
``fastdqn/config.py`` and CleanRL's ``dqn.py`` defaults), written out here by hand. The 'fast'
preset is tuned and may change, so only its validity is checked.
"""

from __future__ import annotations

import dataclasses

import pytest

from fastdqn.config import PRESETS, ConfigError, DQNConfig, field_names, preset


def test_presets_exist_and_validate():
    for name in ("notebook", "cleanrl", "fast"):
        cfg = preset(name)
        assert isinstance(cfg, DQNConfig)
        assert cfg.validate() is cfg


def test_default_config_is_fast_preset():
    assert preset("fast") == DQNConfig()


def test_notebook_preset_matches_tutorial():
    c = preset("notebook")
    assert c.env_id == "CartPole-v0"
    assert c.max_episode_steps == 200 and c.solve_threshold == 195.0
    assert c.num_envs == 1
    assert tuple(c.hidden) == (64, 64)
    assert c.lr == 1e-4
    assert c.loss == "mse"
    assert c.gamma == 0.99
    assert c.buffer_size == 10_000
    assert c.batch_size == 20
    assert c.learning_starts == 20
    # one update per env step
    assert c.train_frequency == 1 and c.gradient_steps == 1
    # no target network: bootstrap from the online net
    assert c.target_period == 0
    # epsilon = 0.01 + 0.99 * exp(-1e-4 * step)
    assert c.eps_schedule == "exp"
    assert (c.eps_end, c.eps_start, c.eps_decay) == (0.01, 1.0, 1e-4)
    assert c.double_dqn is False  # plain DQN (and without a target net it cannot apply anyway)


def test_cleanrl_preset_matches_cleanrl_dqn_defaults():
    c = preset("cleanrl")
    assert c.env_id == "CartPole-v1"
    assert c.num_envs == 1
    assert c.lr == 2.5e-4
    assert c.buffer_size == 10_000
    assert c.batch_size == 128
    assert c.gamma == 0.99
    assert tuple(c.hidden) == (120, 84)
    assert c.learning_starts == 10_000
    assert c.train_frequency == 10 and c.gradient_steps == 1
    assert c.loss == "mse"
    assert c.double_dqn is False
    # start_e 1, end_e 0.05, exploration_fraction 0.5 of total_timesteps 500000
    assert c.eps_schedule == "linear"
    assert (c.eps_start, c.eps_end, c.eps_decay) == (1.0, 0.05, 0.5)
    assert c.total_steps == 500_000
    # target_network_frequency 500 global steps, tau 1 -> a hard copy every 500 / 10 = 50 updates
    assert c.tau == 1.0
    assert c.target_period * c.train_frequency == 500


def test_preset_returns_a_copy():
    c = preset("notebook")
    c.lr = 123.0
    assert preset("notebook").lr == 1e-4
    assert PRESETS["notebook"].lr == 1e-4


def test_to_dict_from_dict_round_trip():
    c = preset("cleanrl").replace(hidden=(7, 5, 3), seed=11)
    d = c.to_dict()
    assert d["hidden"] == [7, 5, 3]  # JSON-friendly
    c2 = DQNConfig.from_dict(d)
    assert c2 == c
    assert c2.hidden == (7, 5, 3)


def _bad(field, **changes):
    with pytest.raises(ConfigError) as ei:
        preset("fast").replace(**changes).validate()
    msg = str(ei.value)
    assert field in msg, msg
    assert "\n" not in msg
    return msg


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


def test_gamma_above_one():
    msg = _bad("gamma", gamma=1.5)
    assert "1.5" in msg


def test_gamma_negative():
    msg = _bad("gamma", gamma=-0.1)
    assert "-0.1" in msg


def test_gamma_bounds_are_inclusive():
    preset("fast").replace(gamma=0.0).validate()
    preset("fast").replace(gamma=1.0).validate()


def test_batch_larger_than_buffer():
    msg = _bad("batch_size", batch_size=101, buffer_size=100)
    assert "buffer_size" in msg
    preset("fast").replace(batch_size=100, buffer_size=100).validate()  # equal is fine


def test_negative_total_steps():
    _bad("total_steps", total_steps=-5)


def test_zero_num_envs():
    _bad("num_envs", num_envs=0)


def test_unknown_loss():
    msg = _bad("loss", loss="l1")
    assert "mse" in msg and "huber" in msg  # says what is allowed


def test_wrong_type():
    _bad("num_envs", num_envs=2.5)
    _bad("stop_when_solved", stop_when_solved="yes")


def test_non_finite_float():
    _bad("lr", lr=float("nan"))


def test_empty_or_bad_hidden():
    _bad("hidden", hidden=())
    _bad("hidden", hidden=(64, 0))


def test_unknown_field_in_replace():
    with pytest.raises(ConfigError) as ei:
        preset("fast").replace(foo=1)
    assert "foo" in str(ei.value)


def test_unknown_field_in_from_dict():
    with pytest.raises(ConfigError, match="bogus_field"):
        DQNConfig.from_dict({**DQNConfig().to_dict(), "bogus_field": 3})


def test_unknown_preset():
    with pytest.raises(ConfigError) as ei:
        preset("atari")
    msg = str(ei.value)
    assert "atari" in msg
    assert all(name in msg for name in ("notebook", "cleanrl", "fast"))  # lists what exists


def test_every_field_is_documented():
    for f in dataclasses.fields(DQNConfig):
        assert f.metadata.get("doc"), f.name
    assert field_names() == [f.name for f in dataclasses.fields(DQNConfig)]
