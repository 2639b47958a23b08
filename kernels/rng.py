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
