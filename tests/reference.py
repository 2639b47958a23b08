"""Independent references shared by the trainer tests (written from the formulas, not from fastdqn)."""

import numpy as np
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


def mlp_from_flat_row(row, sizes, x):
    """Q-values of a ReLU MLP stored as one flat parameter row, in float64 numpy.

    The documented layout: layer by layer, the weight ``[in, out]`` flattened row-major (so the
    layer is ``x @ W + b``), then the bias ``[out]``. ``sizes`` = [obs_dim, *hidden, n_actions].
    """
    row = np.asarray(row, dtype=np.float64)
    h = np.asarray(x, dtype=np.float64)
    off = 0
    pairs = list(zip(sizes[:-1], sizes[1:]))
    for layer, (i, o) in enumerate(pairs):
        w = row[off:off + i * o].reshape(i, o)
        off += i * o
        b = row[off:off + o]
        off += o
        h = h @ w + b
        if layer < len(pairs) - 1:
            h = np.maximum(h, 0.0)
    assert off == len(row), f"layout covers {off} of {len(row)} parameters"
    return h
