"""Atomic checkpoint writes, safe (weights-only) loads, and ``load_policy``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

CHECKPOINT = "checkpoint.pt"
FORMAT = 3  # 3: any env, the network's description ("net"); 2: CartPole populations (readable); 1: not readable


class CheckpointError(ValueError):
    """A missing or unreadable checkpoint (message is one readable line)."""


def resolve(path) -> Path:
    """A run directory or a checkpoint file -> the checkpoint file."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p} (expected a run directory containing {CHECKPOINT} or a .pt file)")
    return p


def save(obj: dict, path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: a crash never leaves a
    half-written checkpoint behind."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path, map_location="cpu") -> dict:
    p = resolve(path)
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a corrupt file
        why = f"{type(e).__name__} (corrupt, truncated or not a torch file)"
        raise CheckpointError(f"cannot read checkpoint {p}: {why}") from None
    if not isinstance(obj, dict) or "configs" not in obj or "engine" not in obj:
        old = isinstance(obj, dict) and "learner" in obj
        why = "written by fastdqn before populations (format 1); retrain it" if old else "missing configs/engine entries"
        raise CheckpointError(f"{p} is not a readable fastdqn checkpoint ({why})")
    return obj


def net_description(ckpt: dict) -> dict:
    """The network a checkpoint's agents use (format 2 checkpoints held CartPole MLPs only)."""
    if "net" in ckpt:
        return ckpt["net"]
    return {"name": "mlp", "obs_shape": [int(ckpt["obs_dim"])], "n_actions": int(ckpt["n_actions"]),
            "hidden": list(ckpt["configs"][0]["hidden"])}


def load_policy(path, agent: int = 0, device="cpu"):
    """Greedy policy of agent ``agent`` of a trained run: ``policy(obs [B, *obs_shape]) -> actions
    [B] int64``, whatever env and network it trained (the checkpoint names them). For a solved
    agent of a run that stopped when solved, these are the weights that passed the evaluation.

    ``path`` is a run directory or checkpoint file. Accepts numpy arrays or torch tensors and
    returns the same kind. ``policy.config`` is the agent's config, ``policy.obs_shape`` the
    observation shape it takes.
    """
    from fastdqn import nets
    from fastdqn.config import DQNConfig

    ckpt = load(path)
    k = len(ckpt["configs"])
    if isinstance(agent, bool) or not isinstance(agent, int) or not 0 <= agent < k:
        raise CheckpointError(f"agent must be an integer in [0, {k - 1}] for this run of {k} agent(s); got {agent!r}")
    cfg = DQNConfig.from_dict(ckpt["configs"][agent])
    desc = net_description(ckpt)
    obs_shape = tuple(desc["obs_shape"])
    net = nets.build(desc)
    layers = net.views(ckpt["policies"][agent:agent + 1].to(device))

    @torch.no_grad()
    def policy(obs):
        is_numpy = isinstance(obs, np.ndarray)
        x = torch.as_tensor(obs, device=device)
        if tuple(x.shape[1:]) != obs_shape:
            raise ValueError(f"observations must have shape [B, {', '.join(map(str, obs_shape))}], got {tuple(x.shape)}")
        a = net.forward(layers, x[None])[0][0].argmax(dim=1)
        return a.cpu().numpy() if is_numpy else a

    policy.config = cfg
    policy.agent = agent
    policy.obs_shape = obs_shape
    return policy
