"""Hand-written compute kernels (installed as ``fastdqn.kernels``).

Pure array-in/array-out functions, no orchestration. Importing this package does not
import numba; each kernel module does that itself.
"""
