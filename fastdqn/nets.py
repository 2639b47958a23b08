"""Q-networks by name: what a run's ``network`` config field builds, and how a checkpoint rebuilds it.

A network's description (``{"name", "obs_shape", "n_actions", ...}``) is stored in every
checkpoint, so :func:`fastdqn.load_policy`, ``fastdqn eval``/``play`` and ``--resume`` rebuild
whatever was trained. ``mlp`` is the ReLU MLP with the hand-written backward
(:class:`fastdqn.learner.MLP`; observations of any shape are flattened); ``cnn`` is MinAtar's
network, one 3x3 convolution of 16 filters then the ``hidden`` layers
(:class:`fastdqn.learner.ConvNet`, for image observations ``[C, H, W]``); more networks
register in :data:`NETWORKS`.
"""

from __future__ import annotations

import math

from fastdqn.learner import MLP, ConvNet


def _mlp(obs_shape, n_actions, hidden):
    return MLP(math.prod(obs_shape), n_actions, tuple(hidden))


def _cnn(obs_shape, n_actions, hidden, filters=16):
    if len(obs_shape) != 3:
        raise ValueError(f"network 'cnn' needs image observations [C, H, W], got shape {list(obs_shape)}")
    return ConvNet(tuple(obs_shape), n_actions, filters, tuple(hidden))


NETWORKS = {"mlp": _mlp, "cnn": _cnn}  # name -> builder(obs_shape, n_actions, **options)


def describe(name: str, obs_shape, n_actions: int, cfg) -> dict:
    """The checkpointed description of network ``name`` for an env and a config."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; networks are: {', '.join(NETWORKS)}")
    options = {"hidden": list(cfg.hidden)}
    return {"name": name, "obs_shape": list(obs_shape), "n_actions": int(n_actions), **options}


def build(desc: dict):
    """The network a :func:`describe` dictionary names."""
    d = dict(desc)
    name = d.pop("name")
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; networks are: {', '.join(NETWORKS)}")
    return NETWORKS[name](tuple(d.pop("obs_shape")), d.pop("n_actions"), **d)
