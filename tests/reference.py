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
