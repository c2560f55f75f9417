"""Each mechanism of the spline fit against the known truth of small synthetic slices.

One slice of 24 rows of 0.1" holds a Gaussian trace (sigma 0.09", FWHM ~2 rows) whose
pixel phase drifts by one row every 80 columns. Pixel values are the profile at the
pixel centre times a smooth spectrum, so the truth is known at any alpha, also between
the rows: every test compares the scaled model on an N = 3 grid with it, with the
mechanism on and off.
"""

import numpy as np
import pytest

from atm_step.core import FitParameters, combine, grid, linear, trace_fit

ROWS = 24
SIGMA = 0.09  # arcsec; rows are 0.1 arcsec
N = 3


def _profile(a):
    return np.exp(-0.5 * ((a - 1.1) / SIGMA) ** 2) + 0.01


def _slice(nx=240, noise=0.0, flat_from=None, seed=1, sigma=SIGMA):
    rng = np.random.default_rng(seed)
    ny = ROWS + 6
    x = np.arange(nx)
    shift = (x if flat_from is None else np.minimum(x, flat_from)) / 80.0
    alpha = (np.arange(ny)[:, None] - 2 - shift[None, :]) * 0.1
    inside = (alpha >= 0) & (alpha <= (ROWS - 1) * 0.1)
    spectrum = 1 + 0.2 * np.sin(x / 30.0)
    flux = np.exp(-0.5 * ((alpha - 1.1) / sigma) ** 2) + 0.01
    flux = flux * spectrum[None, :] + noise * rng.normal(size=alpha.shape)
    regions = np.where(inside, 7, 0).astype(np.int64)
    return np.where(inside, flux, np.nan), np.where(inside, alpha, np.nan), regions, spectrum


def _fit(flux, alpha, regions, **kw):
    """Fit on an N = 3 grid; returns the fit and the alpha of the oversampled pixels."""
    params = FitParameters(**dict(dict(nknots=46, window=25, min_good=5), **kw))
    ny = flux.shape[0]
    y_os = grid.oversampled_rows(ny, N)
    near = grid.nearest_native_row(ny, N)
    alpha_os = linear.linear_oversample(alpha, regions, y_os, near, preserve_nan=False,
                                        extrapolate=True)  # fmt: skip
    fit = trace_fit.fit_regions(flux, alpha, regions, np.array([7]), alpha_os, near, params)
    return fit, alpha_os


def _error(fit, alpha_os, spectrum, cols=slice(None), profile=_profile):
    """RMS of the oversampled scaled model against the truth on the trace core, / peak."""
    truth = profile(alpha_os) * spectrum[None, :]
    with np.errstate(invalid="ignore"):
        core = (truth > 0.05 * np.nanmax(truth)) & np.isfinite(fit.spline_os)
    sub = np.zeros_like(core)
    sub[:, cols] = True
    core &= sub
    return np.sqrt(np.mean((fit.spline_os - truth)[core] ** 2)) / np.nanmax(truth)


def test_rejection_keeps_hot_pixels_out_of_the_profile():
    flux, alpha, regions, spectrum = _slice(noise=0.002)
    rng = np.random.default_rng(5)
    flux[rng.integers(0, flux.shape[0], 20), rng.integers(0, flux.shape[1], 20)] += 0.5
    on = _error(*_fit(flux, alpha, regions), spectrum)
    off = _error(*_fit(flux, alpha, regions, sigma_reject=1e9), spectrum)
    # measured: 0.13% of the peak with rejection, 0.54% without
    assert on < 0.003
    assert off > 2 * on


def test_sampling_gap_test_reuses_the_last_well_sampled_fit():
    """Beyond column 160 the trace runs parallel to the rows: every window samples the
    profile at one phase only, and a fresh fit there cannot know it between the rows."""
    flux, alpha, regions, spectrum = _slice(nx=320, noise=0.001, flat_from=160)
    fit_on, aos = _fit(flux, alpha, regions)
    fit_off, _ = _fit(flux, alpha, regions, gap_ratio=1e9)
    assert fit_on.counts[0, 1] > 100  # the flat part reuses fits
    flat = slice(220, 320)
    on = _error(fit_on, aos, spectrum, flat)
    off = _error(fit_off, aos, spectrum, flat)
    # measured: 0.3% of the peak with the gap test, 8.4% without
    assert on < 0.01
    assert off > 4 * on


def test_penalty_weight_follows_the_noise_and_keeps_fine_knots_from_fitting_it():
    """Refined knots (3 per row) with the roughness penalty chosen by GCV: little
    smoothing for a clean profile, much more for a noisy one, where the unpenalised
    fine-knot spline follows the noise."""
    clean = _slice(noise=1e-4)
    noisy = _slice(noise=0.03, seed=2)
    fine = dict(knot_factor=1.5, penalty=None)
    fit_clean, aos = _fit(*clean[:3], **fine)
    fit_noisy, _ = _fit(*noisy[:3], **fine)
    assert fit_noisy.penalty[0] > 30 * fit_clean.penalty[0]
    gcv = _error(fit_noisy, aos, noisy[3])
    plain = _error(_fit(*noisy[:3], knot_factor=1.5, penalty=0.0)[0], aos, noisy[3])
    heavy = _error(_fit(*clean[:3], knot_factor=1.5, penalty=1.0)[0], aos, clean[3])
    print(f"weights clean {fit_clean.penalty[0]:.2g} noisy {fit_noisy.penalty[0]:.2g}; "
          f"noisy: gcv {gcv:.4f} unpenalised {plain:.4f}; clean: gcv "
          f"{_error(fit_clean, aos, clean[3]):.4f} heavy {heavy:.4f}")
    assert gcv < 0.8 * plain
    assert _error(fit_clean, aos, clean[3]) < 0.5 * heavy


@pytest.mark.parametrize("slope_limit", [0.0, 0.1])
def test_oversampled_model_keeps_each_columns_flux_so_noise_does_not_grow(slope_limit):
    """The fitted spline's noise below the pixel scale is integrated differently by the
    N-times finer grid than by the native rows: without a flux factor the slice-summed
    spectrum at N = 3 scatters more about the truth than the native one. The factor
    acts per column inside the compact-source band (`combine.conserve_band_flux`)."""
    from atm_step.core import adaptive_trace_model

    sharp = 0.045  # FWHM ~1 native row, as at the short-wavelength end of NIRSpec
    flux, alpha, regions, spectrum = _slice(nx=400, noise=0.01, seed=4, sigma=sharp)
    truth_cols = np.nansum(_slice(nx=400, sigma=sharp)[0], axis=0)
    native_err = np.nansum(flux, axis=0) - truth_cols

    def scatter_ratio(on):
        old = combine.CONSERVE_BAND_FLUX
        combine.CONSERVE_BAND_FLUX = on
        try:
            res = adaptive_trace_model(flux, alpha, regions, oversample=N, fit_threshold=0,
                                       slope_limit=slope_limit, nknots=46, window=25,
                                       min_good=5)  # fmt: skip
        finally:
            combine.CONSERVE_BAND_FLUX = old
        over_err = np.nansum(res.flux, axis=0) / N - truth_cols
        return np.std(over_err[5:-5]) / np.std(native_err[5:-5])

    on, off = scatter_ratio(True), scatter_ratio(False)
    # measured: 1.000 with the factor (slope_limit 0), 1.072 without
    assert on < 1.01
    assert off > on + 0.04
