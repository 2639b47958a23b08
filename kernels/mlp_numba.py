"""The greedy action of a ReLU MLP for a few observations, in numba: the trainer's act step on the
CPU where the batch is small (one env per agent, say) and a dozen tensor ops would cost more than
the arithmetic.

``params [K, P]`` float32 holds each agent's layers as :class:`fastdqn.learner.MLP` lays them out
(layer by layer the weight ``[in, out]``, row-major, then the bias ``[out]``); ``sizes`` int64
``[obs_dim, hidden..., n_actions]``; ``obs [K, N, obs_dim]`` float32; ``out [K, N]`` int64 receives
``argmax_a Q(obs)`` (the first of equal maxima, as ``torch.argmax``). Each layer accumulates
``b + sum_i x_i W_i`` in float32 in the order of ``i``, so its values may differ from a BLAS
product in the last bits.
"""

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def greedy(params, sizes, obs, out):
    k_agents, n = out.shape
    layers = sizes.shape[0] - 1
    width = 0
    for s in sizes:
        width = max(width, s)
    x = np.empty(width, dtype=np.float32)
    y = np.empty(width, dtype=np.float32)
    for k in range(k_agents):
        p = params[k]  # 1-D slices: the inner loop then vectorises (2-D indexing ran ~6x slower)
        for e in range(n):
            d_in = sizes[0]
            for i in range(d_in):
                x[i] = obs[k, e, i]
            off = 0
            for layer in range(layers):
                d_out = sizes[layer + 1]
                b = off + d_in * d_out
                acc = y[:d_out]
                acc[:] = p[b:b + d_out]
                for i in range(d_in):
                    xi = x[i]
                    w = p[off + i * d_out:off + (i + 1) * d_out]
                    for o in range(d_out):
                        acc[o] += xi * w[o]
                relu = layer < layers - 1
                for o in range(d_out):
                    v = acc[o]
                    x[o] = v if (v > np.float32(0.0) or not relu) else np.float32(0.0)
                off = b + d_out
                d_in = d_out
            best = 0
            for a in range(1, d_in):
                if x[a] > x[best]:
                    best = a
            out[k, e] = best
