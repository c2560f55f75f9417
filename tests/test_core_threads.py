"""Threads inside a region (issue 12, goal 4): the column chunks that threads share
out give the serial result bit for bit, including the columns that reuse a fit made
in an earlier chunk, and an error in a task reaches the caller."""

import numpy as np
import pytest

from atm_step.core import FitParameters, trace_fit
from atm_step.core.grid import nearest_native_row


@pytest.mark.parametrize("order", [0, 1, 2])
@pytest.mark.parametrize("nx", [1, 128, 129, 130, 400, 1031])
def test_chunks_are_the_serial_sweeps_cut_at_window_rebuilds(order, nx):
    serial = []
    for sweep in range(2 if order == 2 else 1):
        serial.append(list(range(*trace_fit._sweep_bounds(order, sweep, nx))))
    for refreshes in (1, 2, nx):
        chunks = trace_fit.column_chunks(order, nx, refreshes)
        for sweep, cols in enumerate(serial):
            parts = [list(range(a, b, s)) for (sw, a, b, s) in chunks if sw == sweep]
            assert [c for p in parts for c in p] == cols
            # every chunk starts where the serial loop rebuilds the window's sums
            starts = np.cumsum([0] + [len(p) for p in parts[:-1]])
            assert np.all(starts % (trace_fit.REFRESH_EVERY + 1) == 0)
            assert all(len(p) <= refreshes * (trace_fit.REFRESH_EVERY + 1) for p in parts)


def _slice_with_hole(nx=400, rows=20, hole=(100, 300)):
    """One tilted slice; in columns ``hole`` the pixels at alpha 1.1-1.5 are NaN, so the
    columns whose window lies inside fail the sampling-gap test and reuse a fit."""
    x = np.arange(nx)
    yy = np.arange(rows + 4)[:, None]
    alpha = (yy - 2 - x[None, :] / 60.0) * 0.1
    inside = (alpha >= 0) & (alpha <= (rows - 1) * 0.1)
    rng = np.random.default_rng(3)
    flux = np.exp(-0.5 * ((alpha - 0.5) / 0.12) ** 2) * (1 + 0.3 * np.sin(x / 37.0))[None, :]
    flux = flux + 0.02 + rng.normal(0, 1e-3, alpha.shape)
    gone = (alpha > 1.1) & (alpha < 1.5) & (x[None, :] >= hole[0]) & (x[None, :] < hole[1])
    flux = np.where(inside & ~gone, flux, np.nan)
    regions = np.where(inside, 7, 0).astype(np.int64)
    # a second, untouched region below, so that regions also run side by side
    return (np.vstack([flux, flux[:, ::-1]]), np.vstack([np.where(inside, alpha, np.nan)] * 2),
            np.vstack([regions, np.where(inside, 9, 0)]))  # fmt: skip


@pytest.mark.parametrize("order", ["ascending", "descending", "outside_in"])
def test_threads_give_the_serial_model_bit_for_bit(order):
    flux, alpha, regions = _slice_with_hole()
    near = nearest_native_row(flux.shape[0], 3.0)
    alpha_os = np.repeat(alpha, 3, axis=0)
    params = FitParameters(nknots=20, window=15, min_good=5, column_order=order)
    ids = np.array([7, 9])
    one = trace_fit.fit_regions(flux, alpha, regions, ids, alpha_os, near, params, threads=1)
    for threads in (2, 3):
        many = trace_fit.fit_regions(flux, alpha, regions, ids, alpha_os, near, params,
                                     threads=threads)  # fmt: skip
        for name in ("spline_native", "model_native", "spline_os"):
            assert np.array_equal(getattr(one, name), getattr(many, name), equal_nan=True), name
        assert np.array_equal(one.counts, many.counts)
    # the hole makes a run of columns reuse a fit, across chunk boundaries (129, 258)
    reused = one.counts[:, 1]
    assert reused[0] > 100 and reused[1] > 100
    modelled = np.isfinite(one.spline_native[:24]).any(axis=0)
    assert modelled[120:290].all()


def test_an_error_in_a_chunk_reaches_the_caller(monkeypatch):
    flux, alpha, regions = _slice_with_hole()
    near = nearest_native_row(flux.shape[0], 1.0)
    original = trace_fit._fit_columns
    calls = []

    def failing(*args):
        calls.append(args[17])  # the chunk's first column
        if args[17] == 258:
            raise FloatingPointError("chunk 258")
        return original(*args)

    monkeypatch.setattr(trace_fit, "_fit_columns", failing)
    params = FitParameters(nknots=20, window=15, min_good=5, column_order="ascending")
    with pytest.raises(FloatingPointError, match="chunk 258"):
        trace_fit.fit_regions(flux, alpha, regions, np.array([7, 9]), alpha, near, params,
                              threads=2)  # fmt: skip
    assert 258 in calls
