"""Independent references shared by the trainer tests (written from the formulas, not from fastdqn)."""

import torch


def mlp_formula(tensors, x):
    """A ReLU MLP as a formula: ``tensors`` alternate (weight [out, in], bias [out])."""
    tensors = list(tensors)
    n = len(tensors) // 2
    for i in range(n):
        x = x @ tensors[2 * i].T + tensors[2 * i + 1]
        if i < n - 1:
            x = torch.clamp(x, min=0.0)
    return x


def mlp_flat(tensors):
    """One agent's flat MLP parameters from ``tensors`` alternating weight ``[out, in]`` and bias
    ``[out]``, in the documented layout: per layer, the ``[in, out]`` weight (``x @ W + b``)
    flattened row-major, then the bias."""
    tensors = list(tensors)
    parts = []
    for w, b in zip(tensors[0::2], tensors[1::2]):
        parts += [w.T.reshape(-1), b.reshape(-1)]
    return torch.cat(parts)


def mlp_unflat(flat, sizes):
    """Inverse of :func:`mlp_flat`: weight ``[out, in]`` / bias ``[out]`` tensors (views of ``flat``
    where possible) for layer sizes ``[obs_dim, *hidden, n_actions]``."""
    out, off = [], 0
    for i, o in zip(sizes[:-1], sizes[1:]):
        out += [flat[off:off + i * o].reshape(i, o).T, flat[off + i * o:off + i * o + o]]
        off += i * o + o
    assert off == flat.numel()
    return out
