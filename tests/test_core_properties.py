"""Property tests of the core with hypothesis (issue 10, "Also").

Random small detector images: region maps made of horizontal strips with holes,
1- and 2-row regions, gaps, non-contiguous and huge ids; alpha increasing along each
region with a random tilt across columns, partly NaN; flux with 0-100% NaN; float32
and float64, C order, Fortran order and strided views; N = 1 and N > 1 (integer and
fractional). Invariants of `adaptive_trace_model`:

- no exception (every input is valid) and the documented output shapes;
- no NaN in the output where the nearest native pixel is finite inside a region;
- at N = 1 the combined image is the input, unchanged;
- the linear model conserves flux: a region of constant flux gives that constant at
  every oversampled pixel of the region, so its total is N times the native total;
- the inputs are never modified.

Bounded for CI (``derandomize=True``: the same examples every run; about a minute in all).
The hypothesis checks run in a child process, so that a crash of the compiled code
(a segmentation fault) fails the test instead of ending pytest.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atm_step.core import adaptive_trace_model
from atm_step.core.grid import nearest_native_row, oversampled_shape

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
IDS = [1, 2, 3, 7, 40, 1000, 65536, 2**31 - 1, 2**40]


@st.composite
def scenes(draw, constant_flux=False):
    """A random valid input of `adaptive_trace_model` (see the module docstring)."""
    ny = draw(st.integers(1, 24))
    nx = draw(st.integers(1, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    regions = np.zeros((ny, nx), dtype=np.int64)
    alpha = np.full((ny, nx), np.nan)
    flux = np.full((ny, nx), np.nan)
    ids = draw(st.lists(st.sampled_from(IDS), min_size=1, max_size=4, unique=True))
    y = 0
    x = np.arange(nx)
    for rid in ids:
        y += draw(st.integers(0, 2))  # gap rows (region 0)
        height = draw(st.integers(1, 8))  # 1- and 2-row regions included
        rows = slice(y, min(y + height, ny))
        y += height
        if rows.start >= ny:
            break
        regions[rows] = rid
        r = np.arange(rows.start, rows.stop)[:, None] - rows.start
        step = draw(st.sampled_from([0.0, 0.1, 1.0, 3.0]))  # 0: flat along the slice
        tilt = draw(st.sampled_from([0.0, 0.02, 0.3]))
        alpha[rows] = (r + tilt * x[None, :]) * step - 5.0
        if constant_flux:
            flux[rows] = draw(st.sampled_from([0.5, 3.0, 250.0]))
        else:
            centre = rng.uniform(0, max(rows.stop - rows.start - 1, 0))
            width = rng.uniform(0.5, 3)
            peak = draw(st.sampled_from([1.0, 100.0, 1e4]))
            flux[rows] = peak * np.exp(-0.5 * ((r - centre) / width) ** 2) + rng.normal(
                0, 0.05 * peak ** 0.5, (rows.stop - rows.start, nx)) + 1.0
    holes = rng.random((ny, nx)) < draw(st.sampled_from([0.0, 0.05, 0.3]))
    regions[holes] = 0  # holes in regions
    if not constant_flux:
        nan_frac = draw(st.sampled_from([0.0, 0.01, 0.2, 0.7, 1.0]))
        flux[rng.random((ny, nx)) < nan_frac] = np.nan
        alpha[rng.random((ny, nx)) < draw(st.sampled_from([0.0, 0.05]))] = np.nan
    flux[regions == 0] = np.where(rng.random(np.count_nonzero(regions == 0)) < 0.5, np.nan,
                                  rng.normal(0, 1, np.count_nonzero(regions == 0)))
    err = np.abs(flux) ** 0.5 + 0.1
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    layout = draw(st.sampled_from(["C", "F", "strided"]))
    rdtype = draw(st.sampled_from([np.int32, np.int64]))

    def arrange(a, dt):
        a = a.astype(dt)
        if layout == "F":
            return np.asfortranarray(a)
        if layout == "strided":
            big = np.zeros((a.shape[0], 2 * a.shape[1]), dtype=dt)
            big[:, ::2] = a
            return big[:, ::2]
        return a

    oversample = draw(st.sampled_from([1, 1, 2, 3, 1.5]))
    kwargs = dict(
        err=arrange(err, dtype), oversample=oversample,
        fit_threshold=draw(st.sampled_from([0.0, 10.0])),
        slope_limit=draw(st.sampled_from([0.0, 0.1])),
        psf_optimal=draw(st.booleans()),
    )  # fmt: skip
    if oversample != 1:
        kwargs["variances"] = {"var_rnoise": arrange(err**2, dtype)}
    return arrange(flux, dtype), arrange(alpha, dtype), arrange(regions, rdtype), kwargs


def _copies(flux, alpha, regions, kwargs):
    arrays = [flux, alpha, regions, kwargs["err"], *kwargs.get("variances", {}).values()]
    return [np.array(a, copy=True) for a in arrays], arrays


@SETTINGS
@given(scenes())
def check_core_invariants(scene):
    flux, alpha, regions, kwargs = scene
    before, arrays = _copies(flux, alpha, regions, kwargs)
    n = kwargs["oversample"]
    res = adaptive_trace_model(flux, alpha, regions, **kwargs)

    shape_os = oversampled_shape(flux.shape, n)
    for name in ("flux", "err", "trace", "spline", "linear", "residual", "band", "estimated"):
        assert getattr(res, name).shape == shape_os, name
    assert res.variances["var_rnoise"].shape == shape_os if n != 1 else not res.variances
    ids = np.unique(np.asarray(regions)[np.asarray(regions) > 0])
    np.testing.assert_array_equal(res.region_ids, ids)
    assert res.fitted.shape == ids.shape

    near = nearest_native_row(flux.shape[0], n)
    native_ok = np.isfinite(np.asarray(flux, dtype=np.float64)) & (np.asarray(regions) > 0)
    must_be_finite = native_ok[near, :]
    assert np.isfinite(res.flux[must_be_finite]).all()
    if n == 1:
        np.testing.assert_array_equal(res.flux, np.asarray(flux, dtype=np.float64))
    else:
        assert np.isfinite(res.err[must_be_finite]).all()

    for old, new in zip(before, arrays, strict=True):
        np.testing.assert_array_equal(new, old)  # inputs unchanged (NaN positions too)


@settings(SETTINGS, max_examples=60)
@given(scenes(constant_flux=True))
def check_linear_model_conserves_flux(scene):
    flux, alpha, regions, kwargs = scene
    kwargs["oversample"] = 3 if kwargs["oversample"] == 1 else kwargs["oversample"]
    n = kwargs["oversample"]
    res = adaptive_trace_model(flux, alpha, regions, **kwargs)
    near = nearest_native_row(flux.shape[0], n)
    reg = np.asarray(regions)
    f = np.asarray(flux, dtype=np.float64)
    reg_os = reg[near, :]
    for rid in np.unique(reg[reg > 0]):
        inside = reg_os == rid
        value = f[reg == rid][0]
        np.testing.assert_allclose(res.linear[inside], value, rtol=1e-6)
        if float(n).is_integer() and n % 2 == 1:  # N whole, odd: N rows per native row
            assert inside.sum() == n * np.count_nonzero(reg == rid)
            np.testing.assert_allclose(res.linear[inside].sum() / n, f[reg == rid].sum(),
                                       rtol=1e-6)


@pytest.mark.parametrize("check", ["check_core_invariants", "check_linear_model_conserves_flux"])
def test_core_properties(check):
    """Run one hypothesis check in a child process; report its falsifying example."""
    code = f"import test_core_properties as t; t.{check}(); print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), (
        f"{check} failed (exit status {proc.returncode}):\n{proc.stderr[-4000:]}"
    )


@pytest.mark.parametrize("n", [1, 2])
def test_properties_hold_on_a_fixed_case_with_every_feature(n):
    """One hand-made case with holes, a 1-row region, huge ids and NaNs (a smoke test
    that the property tests' checks see real fitted regions)."""
    ny, nx = 20, 60
    y, x = np.mgrid[:ny, :nx].astype(float)
    regions = np.where(y < 12, 2**31 - 1, np.where(y == 13, 5, np.where(y > 14, 9, 0)))
    alpha = np.where(y < 12, y + 0.05 * x, np.where(y > 14, y - 15 + 0.1 * x, 0.0))
    flux = 1000 * np.exp(-0.5 * ((y - 6 - 0.05 * x) / 1.2) ** 2) + 2.0
    flux[3, 10] = np.nan
    regions[7, 30] = 0
    res = adaptive_trace_model(flux, alpha, regions, oversample=n, fit_threshold=0)
    assert list(res.region_ids) == [5, 9, 2**31 - 1]
    assert list(res.fitted) == [False, True, True]  # the 1-row region has no alpha range
    near = nearest_native_row(ny, n)
    inside = (np.isfinite(flux) & (regions > 0))[near]
    assert inside.sum() > 0.7 * inside.size and np.isfinite(res.flux[inside]).all()
    assert np.isfinite(res.spline[(regions > 0)[near]]).mean() > 0.5  # models exist
