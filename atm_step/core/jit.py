"""
Numba options shared by the core's compiled kernels.

Two rules keep a first run's compilation short (issue 12, goal 2):

- No kernel has an explicit signature: Numba compiles such a kernel when its module is
  imported, in the caller before it can start the compile helper
  (`atm_step.core.precompile`) and again in the helper, whether the call uses the
  kernel or not.
- Compiled callers pass typed constants (``np.int64(1)``, ``np.bool_(False)``) to
  other kernels, never literals: Numba compiles a kernel again for each literal value
  it is called with, and for each literal a caller's variable is first typed as
  (``wl = -1`` before a loop that reassigns it).

``tests/test_core_precompile.py`` checks both: importing the core compiles nothing,
and a first run holds one compiled version of each kernel.
"""

__all__ = ["HELPER"]

#: Options of the kernels called only from other kernels: cached, no GIL, and no
#: wrapper for calls from Python (it would be compiled, and optimised, for nothing on
#: a user's first run).
HELPER = dict(cache=True, nogil=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
