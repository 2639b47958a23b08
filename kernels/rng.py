"""Counter-based random numbers shared by every backend.

A reset draw is a pure function of ``(seed, round, env index)``: SplitMix64 applied to
``seed + k * GOLDEN`` with ``k = (round * num_envs + i) * 2 + {1, 2}``. Two 64-bit words give
four 32-bit uniforms, one per state component. Being counter-based, the stream does not
depend on thread count, backend or device, so numba and torch reset to identical states.
"""

GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
MASK64 = (1 << 64) - 1
INV_2_32 = 1.0 / 4294967296.0


def seed_key(seed: int | None) -> int:
    """Map any Python int (or None -> fresh entropy) to the 64-bit key the kernels use."""
    if seed is None:
        import secrets

        return secrets.randbits(64)
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return splitmix64(seed & MASK64)


def splitmix64(z: int) -> int:
    """Reference SplitMix64 finaliser on Python ints (used by tests and by seed_key)."""
    z = (z ^ (z >> 30)) * MIX1 & MASK64
    z = (z ^ (z >> 27)) * MIX2 & MASK64
    return z ^ (z >> 31)


def reset_uniforms_reference(key: int, round_: int, num_envs: int, i: int) -> list[float]:
    """The four uniforms in [0, 1) for env ``i`` in draw ``round_`` (pure Python, slow)."""
    out = []
    for j in (1, 2):
        k = ((round_ * num_envs + i) * 2 + j) & MASK64
        h = splitmix64((key + k * GOLDEN) & MASK64)
        out += [(h >> 32) * INV_2_32, (h & 0xFFFFFFFF) * INV_2_32]
    return out


# --- the same stream on torch tensors (int64 tensors holding uint64 bits) ----------------------
# Only operators are used, so these need no torch import and work on any device and under
# torch.compile. Every batched draw in fastdqn (env resets, exploration, replay sampling, drawn
# rollout actions) goes through them; the numba kernels use :mod:`fastdqn.kernels.rng_numba`.


def as_signed(v: int) -> int:
    """A uint64 value as the int64 with the same bits (how the tensors hold them)."""
    return v - (1 << 64) if v >= 1 << 63 else v


GOLDEN_I64 = as_signed(GOLDEN)
MIX1_I64 = as_signed(MIX1)
MIX2_I64 = as_signed(MIX2)


def lsr(z, k: int):
    """Logical right shift of an int64 tensor holding uint64 bits (torch's ``>>`` is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def mix64(z):
    """SplitMix64's finaliser on an int64 tensor holding uint64 bits (wrapping multiplication)."""
    z = (z ^ lsr(z, 30)) * MIX1_I64
    z = (z ^ lsr(z, 27)) * MIX2_I64
    return z ^ lsr(z, 31)


def reset_uniforms(key, round_, env_index, num_envs: int, count: int) -> list:
    """``count`` uniforms in [0, 1) (float64 tensors shaped like ``env_index``) for a reset draw:
    word ``w`` of env ``i`` in round ``r`` is SplitMix64(``key + ((r * num_envs + i) * W + w + 1) *
    GOLDEN``) with ``W = ceil(count / 2)`` words, each giving its high then its low 32 bits. For
    ``count`` 4 this is :func:`reset_uniforms_reference`. ``key`` and ``round_`` are int64 tensors
    (0-d, or one key per entry of ``env_index``)."""
    words = -(-count // 2)
    k = (round_ * num_envs + env_index) * words
    out = []
    for w in range(words):
        h = mix64(key + (k + w + 1) * GOLDEN_I64)
        out += [lsr(h, 32), h & 0xFFFFFFFF]
    return [u.double() * INV_2_32 for u in out[:count]]
