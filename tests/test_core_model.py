"""The ATM core against the simulator's noise-free truth (paper sections II.1-II.5, IV).

Scenes are small (500 columns, compact detector) but keep the NIRSpec-IFU geometry:
30 slices of 30 rows of 0.1", a trace phase cycling every 80 columns at the left and
flattening to parallel at the right. The PSF is the 6.5 m Airy pattern broadened by
0.07" (NIRSpec's IFU optics blur the PSF well beyond the diffraction limit at 1-2 um;
the pure Airy core, FWHM 0.45 native pixel, is studied in the validation suite).
"""

import numpy as np
import pytest

from atm_step.core import FitParameters, adaptive_trace_model
from atm_step.simulate import AiryPSF, make_scene

NX = 500
N = 3
NIRSPEC = FitParameters.nirspec_ifu("NRS1")


@pytest.fixture(scope="module")
def psf():
    return AiryPSF(jitter_fwhm=0.07, wavelength_range=(1.0, 1.8))


def scene(name, psf, seed=3, **options):
    return make_scene(name, nx=NX, ny=None, noise=0.01, seed=seed, psf=psf, **options)


def run(sc, **kw):
    return adaptive_trace_model(
        sc.flux, sc.alpha, sc.regions, err=sc.err, oversample=N, parameters=NIRSPEC, **kw
    )


@pytest.fixture(scope="module")
def point(psf):
    sc = scene("point_source", psf)
    return sc, run(sc), sc.truth_oversampled(N)


def test_bright_trace_much_closer_to_truth_than_linear(point):
    sc, res, truth = point
    peak = np.nanmax(truth)
    bright = res.band & (truth > 0.05 * peak)
    assert bright.sum() > 2000
    rms = {
        name: np.sqrt(np.nanmean((img - truth)[bright] ** 2)) / peak
        for name, img in (("combined", res.flux), ("linear", res.linear))
    }
    # measured: combined 0.4% of the peak, linear interpolation 7.6%
    assert rms["combined"] < 0.01
    assert rms["combined"] < 0.15 * rms["linear"]


def test_only_slices_with_the_source_are_fitted(point):
    sc, res, _ = point
    star_slice = int(np.argmin(np.abs(sc.beta - sc.sources[0].beta))) + 1
    fitted = set(res.region_ids[res.fitted].tolist())
    assert star_slice in fitted
    assert 3 <= len(fitted) <= 8  # the core and the wings' neighbouring slices
    # the flat right-hand side of the detector reuses earlier fits (gap test, II.3)
    k = list(res.region_ids).index(star_slice)
    assert res.n_columns_reused[k] > 0 and res.n_columns_fitted[k] > NX // 3


def test_slice_summed_flux_per_column_is_conserved(point):
    sc, res, _ = point
    for k in np.nonzero(res.fitted)[0]:
        rid = res.region_ids[k]
        native = np.nansum(np.where(sc.regions == rid, sc.flux, 0.0), axis=0)
        over = np.nansum(np.where(sc.regions[res.near_row] == rid, res.flux, 0.0), axis=0) / N
        bright = native > 0.2 * native.max()
        ratio = over[bright] / native[bright]
        assert abs(np.median(ratio) - 1) < 0.005
        assert np.percentile(np.abs(ratio - 1), 90) < 0.05  # measured: up to 3.5%


def test_errors_are_inflated_by_the_covariance_factor(point):
    sc, res, _ = point
    x = 0.23 * N + 0.77
    assert res.inflation == pytest.approx(x)
    inside = np.isfinite(res.err)
    # the input error is a constant 0.01 MJy/sr: interpolation keeps it, X scales it
    np.testing.assert_allclose(res.err[inside], 0.01 * x, rtol=1e-12)
    res_var = adaptive_trace_model(
        sc.flux, sc.alpha, sc.regions, variances={"var_rnoise": sc.err**2}, oversample=N,
        parameters=NIRSPEC,
    )  # fmt: skip
    var = res_var.variances["var_rnoise"]
    np.testing.assert_allclose(var[np.isfinite(var)], (0.01 * x) ** 2, rtol=1e-12)


def test_oversample_one_keeps_the_data_and_adds_the_trace(psf):
    sc = scene("point_source", psf, seed=4)
    res = adaptive_trace_model(sc.flux, sc.alpha, sc.regions, err=sc.err, parameters=NIRSPEC)
    np.testing.assert_array_equal(res.flux, sc.flux)
    np.testing.assert_array_equal(res.err, sc.err)
    assert res.flux.shape == sc.flux.shape
    used = np.isfinite(res.trace)
    assert used.sum() > 1000
    peak = np.nanmax(sc.truth_native)
    # the trace model at native pixels reproduces the noise-free truth on the core
    core = used & (sc.truth_native > 0.05 * peak)
    assert np.sqrt(np.mean((res.trace - sc.truth_native)[core] ** 2)) / peak < 0.01


def test_emission_line_keeps_its_flux_away_from_the_star(psf):
    """Spline everywhere (crowded-field settings): the nebula's lines deviate from the
    slowly varying profile, and the residual model (II.4) must restore them."""
    sc = scene("nebula", psf, seed=2)
    truth = sc.truth_oversampled(N)
    star_slice = int(np.argmin(np.abs(sc.beta - sc.sources[0].beta))) + 1
    away = np.abs(sc.regions - star_slice) >= 5
    away = away & (sc.regions > 0)

    def line_flux(img, mask):
        col = np.nansum(np.where(mask, img, 0.0), axis=0)
        cont = np.median(col)
        return col - cont

    res = run(sc, fit_threshold=0, slope_limit=0)
    mask = away[res.near_row]
    t = line_flux(truth, mask)
    lines = t > 0.5 * t.max()
    assert lines.sum() >= 4
    with_residual = line_flux(res.flux, mask)[lines].sum() / t[lines].sum()
    no_residual = run(sc, psf_optimal=True)
    without = line_flux(no_residual.flux, mask)[lines].sum() / t[lines].sum()
    assert res.n_fitted == 30
    assert abs(with_residual - 1) < 0.01
    assert abs(without - 1) > 2 * abs(with_residual - 1)


def test_bad_pixel_cluster_on_the_trace_is_filled_close_to_truth(psf):
    sc = scene("bad_pixels", psf)
    res = run(sc)
    truth = sc.truth_oversampled(N)
    bad = sc.bad_pixel_mask[res.near_row]
    assert np.isfinite(res.flux[bad]).all()
    assert res.estimated[bad].all() and res.n_estimated == bad.sum()
    peak = np.nanmax(truth)
    core = bad & (truth > 0.1 * peak)
    # measured: median 0.8% error, worst 1.4% of the peak
    assert np.median(np.abs(res.flux[core] / truth[core] - 1)) < 0.02
    assert np.max(np.abs(res.flux[bad] - truth[bad])) / peak < 0.03
    # the slice-summed flux of every damaged column is recovered
    rid = sc.regions[sc.bad_pixel_mask][0]
    slice_rows = sc.regions[res.near_row] == rid
    for x in np.unique(np.nonzero(sc.bad_pixel_mask)[1]):
        got = np.nansum(res.flux[slice_rows[:, x], x])
        want = np.nansum(truth[slice_rows[:, x], x])
        assert got == pytest.approx(want, rel=0.03)


def test_negative_offset_is_removed_for_modelling_and_restored(psf):
    sc = scene("negative_offset", psf)
    res = run(sc)
    truth = sc.truth_oversampled(N)
    assert sc.offset < 0
    assert res.mean_offset == pytest.approx(sc.offset, rel=0.05)
    finite = np.isfinite(res.flux) & np.isfinite(truth)
    # the output sits at the input's level, offset included, everywhere
    assert abs(np.median((res.flux - truth)[finite & ~res.band])) < 0.002
    assert abs(np.median((res.flux - truth)[finite & res.band])) < 0.005
    assert res.n_fitted >= 3


@pytest.mark.parametrize("name", ["point_source", "negative_offset"])
def test_without_intermediates_every_output_is_the_same(psf, name):
    """``intermediates=False`` (the step without save_intermediate_results) writes the
    trace model into the spline's buffer and keeps no linear model: the outputs are
    bit-identical, the intermediate images absent (also with the negative offset,
    which is added back to the trace model)."""
    sc = scene(name, psf)
    var = {"var_rnoise": sc.err**2}
    full = run(sc, variances=var)
    lean = run(sc, variances=var, intermediates=False)
    for key in ("flux", "err", "trace", "band", "estimated"):
        a, b = getattr(full, key), getattr(lean, key)
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), key
    assert np.array_equal(full.variances["var_rnoise"], lean.variances["var_rnoise"], equal_nan=True)
    assert lean.spline is None and lean.linear is None and lean.residual is None
    # the full spline differs from the trace model outside the band
    assert np.isfinite(full.spline).sum() > np.isfinite(full.trace).sum()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(flux=np.zeros(5)), ValueError, "2-D"),
        (dict(alpha=np.zeros((3, 3))), ValueError, "alpha has shape"),
        (dict(regions=np.zeros((4, 6))), TypeError, "integer"),
        (dict(oversample=0.5), ValueError, "oversample"),
        (dict(nknots=0), ValueError, "nknots"),
        (dict(column_order="sideways"), ValueError, "column_order"),
        (dict(knots=3), TypeError, "unknown fit parameter"),
    ],
)
def test_bad_input_gets_a_clear_error(kwargs, error, match):
    args = dict(flux=np.ones((4, 6)), alpha=np.ones((4, 6)), regions=np.ones((4, 6), int))
    for key in ("flux", "alpha", "regions"):
        if key in kwargs:
            args[key] = kwargs.pop(key)
    with pytest.raises(error, match=match):
        adaptive_trace_model(args["flux"], args["alpha"], args["regions"], **kwargs)


def test_compact_source_band_covers_the_core_and_not_the_whole_slice(point):
    """Band selection (II.5): the spline is used where the profile is undersampled,
    the linear model elsewhere in the slice."""
    sc, res, truth = point
    star_slice = int(np.argmin(np.abs(sc.beta - sc.sources[0].beta))) + 1
    k = list(res.region_ids).index(star_slice)
    assert 3 <= res.n_band_rows[k] <= 12  # of the slice's 30 rows
    peak = np.nanmax(truth)
    core = truth > 0.1 * peak
    assert res.band[core].mean() > 0.99
    in_slice = sc.regions[res.near_row] == star_slice
    assert res.band[in_slice].mean() < 0.4
