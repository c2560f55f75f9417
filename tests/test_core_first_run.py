"""A default call does not compile the GCV penalty kernel (first-run cost, issue 12).

Numba compiles every kernel a compiled kernel calls, taken branch or not. The GCV
kernel `trace_fit._choose_penalty` (about half of the fit's first compilation) is
therefore called from Python only, and only when the penalty weight is to be chosen.
"""

import numba
import numpy as np

from atm_step.core import FitParameters, trace_fit
from atm_step.core.grid import nearest_native_row


def _kernels_reached(kernel, seen=None):
    """Names of the compiled kernels a compiled kernel calls, directly or not."""
    seen = set() if seen is None else seen
    func = kernel.py_func
    for name in func.__code__.co_names:
        obj = func.__globals__.get(name)
        if isinstance(obj, numba.core.registry.CPUDispatcher) and name not in seen:
            seen.add(name)
            _kernels_reached(obj, seen)
    return seen


def test_the_column_loop_does_not_reach_the_gcv_kernel():
    reached = _kernels_reached(trace_fit._fit_columns)
    assert {"_robust_fit", "solve_banded", "_model_column", "column_scale"} <= reached
    assert "_choose_penalty" not in reached and "_penalty_trace" not in reached
    assert "_penalty_trace" in _kernels_reached(trace_fit._choose_penalty)


def _slice(nx=120, rows=20):
    x = np.arange(nx)
    yy = np.arange(rows + 4)[:, None]
    alpha = (yy - 2 - x[None, :] / 60.0) * 0.1
    inside = (alpha >= 0) & (alpha <= (rows - 1) * 0.1)
    flux = np.exp(-0.5 * ((alpha - 1.0) / 0.12) ** 2) + 0.01
    regions = np.where(inside, 7, 0).astype(np.int64)
    return np.where(inside, flux, np.nan), np.where(inside, alpha, np.nan), regions


def test_gcv_kernel_runs_only_when_the_weight_is_chosen(monkeypatch):
    calls = []
    original = trace_fit._choose_penalty

    def counting(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(trace_fit, "_choose_penalty", counting)
    flux, alpha, regions = _slice()
    near = nearest_native_row(flux.shape[0], 1.0)
    ids = np.array([7])
    fixed = trace_fit.fit_regions(flux, alpha, regions, ids, alpha, near,
                                  FitParameters(nknots=20, window=15, min_good=5))  # fmt: skip
    assert calls == [] and fixed.penalty[0] == 0.0
    chosen = trace_fit.fit_regions(flux, alpha, regions, ids, alpha, near,
                                   FitParameters(nknots=20, window=15, min_good=5, penalty=None))  # fmt: skip
    assert calls == [1] and chosen.penalty[0] > 0
    assert np.isfinite(fixed.spline_native).sum() > 0.9 * np.isfinite(flux).sum()
