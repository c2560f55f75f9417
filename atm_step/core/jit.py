"""Numba options shared by the core's compiled kernels."""

__all__ = ["HELPER"]

#: Options of the kernels called only from other kernels: cached, no GIL, and no
#: wrapper for calls from Python (it would be compiled, and optimised, for nothing on
#: a user's first run).
HELPER = dict(cache=True, nogil=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
