#!/usr/bin/env bash
# Wheels for bench/gpu_run.sh, into .whl/ (git-ignored): fastdqn built from this checkout, and what
# the GPU machine's image lacks (it has torch, numba, numpy, jax, chex, flax, matplotlib, but no
# gymnasium or gymnax), for its Python 3.12. Run here, where pip can reach an index.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl
python3 -m pip wheel -q --no-deps -w .whl .
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 -d .whl gymnasium==1.4.0 farama-notifications==0.0.6 gymnax==0.0.9
ls .whl
