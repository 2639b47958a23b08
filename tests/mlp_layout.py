"""The documented flat layout of :class:`fastdqn.learner.MLP` parameters, written from its
description (not from fastdqn): per layer, the weight ``[in, out]`` (a layer is ``x @ W + b``)
flattened row-major, then the bias ``[out]``. Tensors here use ``nn.Linear``'s ``[out, in]``
weights so that ``reference.mlp_formula`` can run them."""

import torch


def mlp_flat(tensors):
    """One agent's flat row from ``tensors`` alternating weight ``[out, in]`` and bias ``[out]``."""
    tensors = list(tensors)
    parts = []
    for w, b in zip(tensors[0::2], tensors[1::2]):
        parts += [w.T.reshape(-1), b.reshape(-1)]
    return torch.cat(parts)


def mlp_unflat(flat, sizes):
    """Inverse of :func:`mlp_flat`: weight ``[out, in]`` / bias ``[out]`` tensors (views of ``flat``)
    for layer sizes ``[obs_dim, *hidden, n_actions]``."""
    out, off = [], 0
    for i, o in zip(sizes[:-1], sizes[1:]):
        out += [flat[off:off + i * o].reshape(i, o).T, flat[off + i * o:off + i * o + o]]
        off += i * o + o
    assert off == flat.numel()
    return out
