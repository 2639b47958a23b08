"""Atomic checkpoint writes, safe (weights-only) loads, and ``load_policy``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

CHECKPOINT = "checkpoint.pt"


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
    if not isinstance(obj, dict) or "config" not in obj or "learner" not in obj:
        raise CheckpointError(f"{p} is not a fastdqn checkpoint (missing config/learner entries)")
    return obj


def load_policy(path, device="cpu"):
    """Greedy policy of a trained run: ``policy(obs [B, 4] float32) -> actions [B] int64``.

    ``path`` is a run directory or checkpoint file. Accepts numpy arrays or torch tensors and
    returns the same kind.
    """
    from fastdqn.config import DQNConfig
    from fastdqn.learner import QNetwork

    ckpt = load(path)
    cfg = DQNConfig.from_dict(ckpt["config"])
    q = QNetwork(4, 2, cfg.hidden).to(device)
    q.load_state_dict(ckpt["learner"]["q"])
    q.eval()

    @torch.no_grad()
    def policy(obs):
        is_numpy = isinstance(obs, np.ndarray)
        x = torch.as_tensor(obs, dtype=torch.float32, device=device)
        if x.ndim != 2 or x.shape[1] != 4:
            raise ValueError(f"observations must have shape [B, 4], got {tuple(x.shape)}")
        a = q(x).argmax(dim=1)
        return a.cpu().numpy() if is_numpy else a

    policy.config = cfg
    return policy
