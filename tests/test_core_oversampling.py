"""The one-pass oversampling kernel (linear model, errors, variances) against a
readable NumPy reference: per column, per contiguous run of a region, `numpy.interp`
over the finite native pixels (paper II.2 and IV).

The scene has NaN pixels in the flux, and other NaN pixels in the error and in each
variance, so that the kernel's shared-neighbour shortcut and its full search are both
exercised; a non-integer factor puts oversampled rows off the native grid.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atm_step.core import FitParameters, adaptive_trace_model, grid
from atm_step.simulate import make_scene


def reference_oversample(data, regions, y_os, near, *, preserve_nan):
    """Linear oversampling along axis 0 within each region's contiguous run."""
    ny, nx = data.shape
    out = np.full((y_os.size, nx), np.nan)
    for x in range(nx):
        col = regions[:, x]
        starts = np.flatnonzero(np.diff(np.r_[-1, col]) != 0)  # first row of each run
        ends = np.r_[starts[1:], ny]
        for lo, hi in zip(starts, ends, strict=True):
            if col[lo] <= 0:
                continue
            rows = np.arange(lo, hi)
            good = rows[np.isfinite(data[rows, x])]
            js = np.flatnonzero((near >= lo) & (near < hi))
            if good.size and js.size:
                out[js, x] = np.interp(y_os[js], good, data[good, x])
    if preserve_nan:
        out[~np.isfinite(data[near, :])] = np.nan
    return out


def reference_errors(sigma, regions, y_os, near, estimated, inflation):
    """Paper IV: interpolated across NaN, NaN where the nearest native value is NaN
    unless the model filled the pixel, inflated by X."""
    out = reference_oversample(sigma, regions, y_os, near, preserve_nan=False)
    out[~np.isfinite(sigma[near, :]) & ~estimated] = np.nan
    return out * inflation


@pytest.mark.parametrize("oversample", [3.0, 2.5])
def test_one_pass_kernel_matches_reference(oversample):
    sc = make_scene("point_source", nx=200, ny=None, noise=0.01, seed=5, rows_per_slice=12,
                    gap_rows=2)  # fmt: skip
    rng = np.random.default_rng(7)
    flux = sc.flux.copy()
    err = sc.err.copy()
    var_a = err**2 * 2.0
    var_b = err**2 * 0.5
    inside = np.flatnonzero(sc.regions.ravel() > 0)
    for arr in (flux, err, var_a, var_b):
        arr.ravel()[rng.choice(inside, inside.size // 15, replace=False)] = np.nan
    res = adaptive_trace_model(
        flux, sc.alpha, sc.regions, err=err, variances={"var_a": var_a, "var_b": var_b},
        oversample=oversample, parameters=FitParameters.nirspec_ifu("NRS1"), fit_threshold=0.0,
        slope_limit=0.0,
    )  # fmt: skip
    ny = flux.shape[0]
    y_os = grid.oversampled_rows(ny, oversample)
    near = grid.nearest_native_row(ny, oversample)
    regions = sc.regions.astype(np.int64)
    x = 0.23 * oversample + 0.77
    assert res.n_estimated > 0  # some NaN flux pixels were filled by the model
    lin = reference_oversample(flux, regions, y_os, near, preserve_nan=True)
    # the two interpolation formulas round differently: tolerance relative to the image
    scale = np.nanmax(np.abs(flux))
    np.testing.assert_allclose(res.linear, lin, rtol=1e-12, atol=1e-12 * scale, equal_nan=True)
    err_ref = reference_errors(err, regions, y_os, near, res.estimated, x)
    np.testing.assert_allclose(res.err, err_ref, rtol=1e-12, atol=0, equal_nan=True)
    for name, var in (("var_a", var_a), ("var_b", var_b)):
        ref = reference_errors(np.sqrt(var), regions, y_os, near, res.estimated, x) ** 2
        np.testing.assert_allclose(res.variances[name], ref, rtol=1e-12, atol=0,
                                   equal_nan=True)  # fmt: skip
        assert np.isfinite(ref).sum() > 0.5 * np.isfinite(lin).sum()


def test_binned_median_peak_is_the_largest_bin_median():
    from atm_step.core.stats import _binned_median_peak

    rng = np.random.default_rng(3)
    alpha = rng.uniform(-1.0, 1.0, 5000)
    values = rng.normal(0.0, 1.0, 5000) + np.exp(-((alpha - 0.3) / 0.1) ** 2) * 5
    a0, step, nbins = -1.0, 0.05, 41
    idx = np.clip(((alpha - a0) / step).astype(int), 0, nbins - 1)
    expect = max(np.median(values[idx == b]) for b in np.unique(idx))
    assert _binned_median_peak(values, alpha, a0, step, nbins) == expect
    # an even and an odd bin
    assert _binned_median_peak(np.array([1.0, 3.0, 7.0]), np.array([0.0, 0.0, 0.5]), 0.0,
                               0.5, 2) == 7.0  # fmt: skip
    assert _binned_median_peak(np.array([1.0, 4.0, 2.0]), np.zeros(3), 0.0, 1.0, 1) == 2.0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([-2.0, 0.0, 1.5, 3.0]) | st.floats(-5, 5),
                       st.floats(0.0, 1.0)), min_size=1, max_size=500),
    st.sampled_from([1, 7, 300, 70000]),
)
def test_binned_median_peak_equals_per_bin_medians(pairs, nbins):
    """Any values (ties included), few bins or more than 16-bit bin numbers hold."""
    from atm_step.core.stats import _binned_median_peak

    values = np.array([p[0] for p in pairs])
    alpha = np.array([p[1] for p in pairs])
    step = 1.0 / nbins
    idx = np.clip(((alpha - 0.0) / step).astype(np.int64), 0, nbins - 1)
    expect = max(np.median(values[idx == b]) for b in np.unique(idx))
    assert _binned_median_peak(values, alpha, 0.0, step, nbins) == expect
