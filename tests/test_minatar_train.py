"""Training on a MinAtar game end to end: the CNN by name, bool frames in the replay with the right
final observations, the checkpoint round trip, evaluation on the reference package, play, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fastdqn.checkpoint import load_policy
from fastdqn.cli import main
from fastdqn.config import ConfigError, preset
from fastdqn.train import train

TINY = dict(env_id="MinAtar/Breakout-v1", network="cnn", hidden=(32,), num_envs=4, batch_size=16, buffer_size=4000,
            learning_starts=200, total_steps=1200, eval_every=600, eval_episodes=4, confirm_episodes=4,
            log_every=200, progress=False, plot=False, torch_threads=1, compile="none")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("minatar") / "r"
    cfg = preset("fast").replace(**TINY)
    return cfg, train(cfg, out=out), out


def test_cnn_needs_image_observations():
    with pytest.raises(ConfigError, match="network cnn needs image observations"):
        preset("fast").replace(network="cnn").validate()


def test_replay_keeps_bool_frames_and_final_observations(run):
    cfg, result, out = run
    rp = torch.load(out / "checkpoint.pt", weights_only=True)["engine"]["replay"]
    obs, nxt, data = rp["obs"][0], rp["next_obs"][0], rp["data"][0]
    size, n = int(rp["size"]), cfg.num_envs
    assert obs.dtype == torch.bool and obs.shape[1:] == (4, 10, 10) and size == result.env_steps
    terminated = data[:size, 2].bool()  # columns: action, reward, terminated, truncated
    rows = torch.arange(size - n)
    cont = ~terminated[:size - n]
    # a transition that did not end continues from its next observation
    assert torch.equal(nxt[rows[cont]], obs[rows[cont] + n])
    # one that ended stored the terminal frame, and the env restarted: bricks full, ball on row 3
    ended = rows[~cont]
    assert len(ended) > 0
    assert (nxt[ended] != obs[ended + n]).flatten(1).any(1).all()
    assert obs[ended + n][:, 3, 1:4].all() and obs[ended + n][:, 1, 3].any(1).all()


def test_checkpoint_rebuilds_the_cnn_and_scores_on_the_reference(run, capsys):
    pytest.importorskip("minatar")
    cfg, _, out = run
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["net"] == {"name": "cnn", "obs_shape": [4, 10, 10], "n_actions": 3, "hidden": [32]}
    policy = load_policy(out)
    frames = np.zeros((5, 4, 10, 10), dtype=np.float32)
    assert policy(frames).shape == (5,)
    assert main(["eval", str(out), "--episodes", "3", "--seed", "1"]) == 0
    assert "MinAtar/Breakout-v1" in capsys.readouterr().out


def test_play_draws_the_grid(run, tmp_path, capsys):
    from PIL import Image

    gif = tmp_path / "b.gif"
    assert main(["play", str(run[2]), "--gif", str(gif), "--steps", "30"]) == 0
    with Image.open(gif) as im:
        assert im.size == (320, 320) and im.n_frames > 1


def test_resume_continues(run, tmp_path):
    cfg, first, out = run
    from fastdqn.train import resume_config

    dst = tmp_path / "resumed"
    import shutil

    shutil.copytree(out, dst)
    result = train(resume_config(dst, total_steps=2000), out=dst, resume=True)
    assert result.env_steps == 2000 and result.updates > first.updates
    assert json.loads((dst / "summary.json").read_text())["env_steps"] == 2000


def test_target_return_makes_a_game_solvable(tmp_path):
    """MinAtar games have no threshold; target_return gives one (every return is >= 0 > -1 here, so
    the first evaluation and its confirmation pass and the run stops there)."""
    cfg = preset("fast").replace(**{**TINY, "total_steps": 4000, "target_return": -1.0})
    assert cfg.solve_threshold == -1.0
    result = train(cfg, out=tmp_path / "r")
    assert result.solved and result.env_steps == 600
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["solve_threshold"] == -1.0 and s["agents"][0]["solved_at_env_step"] == 600
    assert preset("fast").replace(env_id="MinAtar/Breakout-v1").solve_threshold is None
