"""The two-profile trace model (`atm_step.core.two_profile`): its compiled window fit
against the dense reference, its gates, and its accuracy against truth on a binary
with different spectra and on a single star (docs/algorithm.md, "Two profiles").
"""

import copy
from dataclasses import replace

import numpy as np
import pytest

from atm_step.core import FitParameters, adaptive_trace_model, grid, trace_fit, two_profile
from atm_step.core.bspline import difference_penalty
from atm_step.core.reference import reference_two_profile_column
from atm_step.validation import grid as G

PRESET = FitParameters.nirspec_ifu("NRS1")


def _scene(recipe, fwhm):
    return G.build_scene(G.Case(recipe, fwhm, G.RECIPES[recipe].peak_snr))


@pytest.fixture(scope="module")
def binary():
    """The grid's 0.33" binary (blue absorption-line star, red emission-line source)
    at FWHM 2 native pixels, noise-free."""
    scene = _scene("binary", 2.0)
    return scene, G.noise_free_flux(scene)


def _first_fit(scene, flux):
    """The brightest slice's id and rows, the core's arrays and the first (single-profile)
    fit of that slice."""
    rid, row0, row1 = _slice_of_peak(scene, flux)
    regions = scene.regions.astype(np.int64)
    alpha = np.where(regions > 0, scene.alpha, np.nan)
    _, alpha_os = scene.oversampled_alpha(3)
    near = grid.nearest_native_row(flux.shape[0], 3)
    fit = trace_fit.fit_regions(flux, alpha, regions, np.array([rid]), alpha_os, near, PRESET)
    return (rid, row0, row1), (alpha, regions, alpha_os, near), fit


def _slice_of_peak(scene, flux):
    y, x = np.unravel_index(np.nanargmax(flux), flux.shape)
    rid = int(scene.regions[y, x])
    rows = np.flatnonzero((scene.regions == rid).any(axis=1))
    return rid, int(rows[0]), int(rows[-1])


def test_window_fit_equals_the_dense_reference(binary):
    scene, flux = binary
    rid, row0, row1 = _slice_of_peak(scene, flux)
    alpha, regions = scene.alpha, scene.regions.astype(np.int64)
    inside = regions == rid
    a0, a1 = float(np.nanmin(alpha[inside])), float(np.nanmax(alpha[inside]))
    nknots, window, lam = 68, 50, 0.37
    drow = scene.geometry.row_height
    total, share, complete, _ = two_profile.column_shares(flux, alpha, regions, rid, row0, row1,
                                                       0.0, 0.5 * drow)
    keep = np.ones(flux.shape, dtype=bool)
    keep[row0 + 12, 200] = False  # a rejected pixel stays out of the fit
    nx, ncoef = flux.shape[1], nknots + 3
    cum_a = np.zeros((nx + 1, 2 * ncoef, 8))
    cum_b = np.zeros((nx + 1, 2 * ncoef))
    two_profile._column_normals(flux, alpha, regions, rid, row0, row1, a0, a1, nknots, total,
                                share, complete, keep, cum_a, cum_b)
    mean_share, kappa = 0.4, 3e-3  # the mean and difference profiles' penalties
    pen = two_profile.interleaved_penalty(difference_penalty(ncoef, 2), mean_share, kappa)
    source = np.minimum(np.arange(nx), 300)  # the columns beyond 300 reuse its window
    old = np.where(inside, 1.1 * flux, np.nan)
    new = old[row0:row1 + 1].copy()
    chosen = np.zeros(nx, dtype=np.int64)
    near = np.arange(flux.shape[0], dtype=np.int64)
    rss = np.zeros((nx, 2))
    two_profile._fit_two_profiles(flux, alpha, regions, alpha, near, rid, row0, row1, row0,
                                  row1 + 1, a0, a1, nknots, total, share, complete, keep, source,
                                  window, lam, pen, cum_a, cum_b, old, old, new, new, chosen, rss)
    assert chosen.sum() == nx
    # the new model fits the binary's columns better than one 10% off
    assert np.all(rss[:, 0] < rss[:, 1])
    for x in (0, 30, 200, 301, 399):
        rows, model = reference_two_profile_column(flux, alpha, regions, rid, row0, row1, a0, a1,
                                                   nknots, total, share, complete, keep, window,
                                                   lam, 2, x, mean_share, kappa, source[x])
        np.testing.assert_allclose(new[rows - row0, x], model, rtol=1e-7,
                                   atol=1e-9 * np.abs(model).max())


def test_the_default_penalty_is_half_the_weight_on_each_profile():
    pen = difference_penalty(12, 2)
    band = two_profile.interleaved_penalty(pen)
    assert np.all(band[:, 1::2] == 0)  # no coupling between the two profiles
    np.testing.assert_array_equal(band[0::2, 0::2], 0.5 * pen)
    np.testing.assert_array_equal(band[1::2, 0::2], 0.5 * pen)


def test_source_columns_apply_the_first_fits_sampling_gap_test(binary):
    """Where the NRS1-like trace flattens (the right-hand columns), the windows miss
    phases of the profile: exactly the columns where the first fit reused an earlier
    column's profile take the two profiles of the last column it fitted, the nearest."""
    scene, flux = binary
    (rid, _, _), _, fit = _first_fit(scene, flux)
    # the first fit's record: as many columns as it counts as fitted, in every region
    np.testing.assert_array_equal(fit.fitted_columns.sum(axis=1), fit.counts[:, 0])
    k = int(np.flatnonzero(fit.geometry.ids == rid)[0])
    source = two_profile.source_columns(fit.fitted_columns[k])
    x = np.arange(flux.shape[1])
    moved = np.flatnonzero(source != x)
    reused = int(fit.counts[k, 1])
    assert 100 < reused == moved.size
    # one run at the right-hand end, all given the column just before it
    np.testing.assert_array_equal(moved, x[-reused:])
    assert np.all(source[moved] == x[-reused] - 1)


def test_source_columns_take_the_nearest_fitted_column():
    fitted = np.array([0, 1, 0, 0, 0, 1, 0, 0], dtype=bool)
    np.testing.assert_array_equal(two_profile.source_columns(fitted), [1, 1, 1, 1, 5, 5, 5, 5])
    np.testing.assert_array_equal(two_profile.source_columns(np.zeros(3, bool)), [-1, -1, -1])


def test_a_region_keeps_a_first_fit_that_fits_better(binary):
    """The region takes the two profiles only if they fit its pixels no worse: a first
    fit equal to the data is kept, untouched (and the binary's real first fit is not)."""
    scene, flux = binary
    (rid, _, _), (alpha, regions, alpha_os, near), fit = _first_fit(scene, flux)
    assert two_profile.two_profile_refit(copy.deepcopy(fit), flux, scene.err, alpha, regions,
                                         alpha_os, near, PRESET) > 300
    inside = (regions == rid) & np.isfinite(fit.spline_native)
    fit.spline_native[inside] = flux[inside]
    before = (fit.spline_native.copy(), fit.spline_os.copy())
    assert two_profile.two_profile_refit(fit, flux, scene.err, alpha, regions, alpha_os, near,
                                         PRESET) == 0
    np.testing.assert_array_equal(fit.spline_native, before[0])
    np.testing.assert_array_equal(fit.spline_os, before[1])


def _rms_error(scene, result):
    truth = scene.truth_oversampled(3)
    good = truth > 0.05 * np.nanmax(truth)
    err = (result.flux - truth)[good] / truth[good]
    return 100 * np.sqrt(np.nanmean(err**2))


def _legacy_scene(name):
    """The G395H-like scenes of docs/validation.md sections 1-3 (Airy PSF blurred by
    0.08", pixel-integrated FWHM 1.43 native rows)."""
    from atm_step.simulate import make_scene

    return make_scene(name, nx=400, noise=0.01, seed=1, wave_range=(2.9, 3.35),
                      jitter_fwhm=0.08)


@pytest.mark.parametrize("recipe, fwhm, off_min, on_max", [("binary", 2.0, 1.6, 0.52),
                                                          ("binary_0.5", 2.0, 1.9, 0.2),
                                                          ("binary", 1.0, 2.8, 1.0),
                                                          ("two_sources", None, 3.3, 2.0)])
def test_two_profiles_model_a_binary_with_different_spectra(recipe, fwhm, off_min, on_max):
    """Noise-free, N = 3: the oversampled image's rms error against the pixel-integrated
    truth at the oversampled rows (pixels above 5% of the peak), one profile -> two
    (measured): the 0.33" binary at FWHM 2 px 1.87 -> 0.46%, the 0.5" one 2.11 -> 0.14%,
    the 0.33" binary at FWHM 1 px 3.09 -> 0.84%, the G395H-like two sources 3.60 ->
    1.63%. Without the sampling-gap rule (`two_profile.source_columns`) the two profiles
    give 0.86, 1.17, 7.1 and 8.9%; with half the first fit's penalty on each profile
    instead of the mean/difference penalty, 0.58 and 0.30% at FWHM 2 px."""
    scene = _legacy_scene(recipe) if fwhm is None else _scene(recipe, fwhm)
    flux = G.noise_free_flux(scene)
    _, alpha_os = scene.oversampled_alpha(3)
    run = {}
    for on in (False, True):
        res = adaptive_trace_model(flux, scene.alpha, scene.regions, err=scene.err, oversample=3,
                                   alpha_os=alpha_os, parameters=replace(PRESET, two_profiles=on))
        run[on] = _rms_error(scene, res)
    print(f"{recipe} FWHM {fwhm}: one profile {run[False]:.2f}%, two {run[True]:.2f}%")
    assert run[False] > off_min
    assert run[True] < on_max


@pytest.mark.parametrize("recipe, fwhm, noisy", [("isolated", 2.0, True), ("isolated", 2.0, False),
                                                 ("isolated", 1.0, True), ("nan_clusters", 2.0, True)])
def test_gates_keep_one_profile_where_two_do_not_help(recipe, fwhm, noisy):
    """A single star at FWHM 2 and 1 px, noisy and noise-free (its shares change only
    with the pixel phase), and a star with NaN clusters: bit-identical to the
    single-profile model."""
    scene = _scene(recipe, fwhm)
    flux = scene.flux if noisy else G.noise_free_flux(scene)
    _, alpha_os = scene.oversampled_alpha(3)
    out = [adaptive_trace_model(flux, scene.alpha, scene.regions, err=scene.err,
                                oversample=3, alpha_os=alpha_os,
                                parameters=replace(PRESET, two_profiles=on)).flux
           for on in (False, True)]
    np.testing.assert_array_equal(out[0], out[1])


def test_a_sharp_single_peak_keeps_one_profile():
    """The G395H-like star on a line nebula (no background model there): its lines
    change the shares, but the split runs through the star's 1.43-row peak, below
    `two_profile.MIN_FWHM_ROWS`. With two profiles its rms error against truth went
    from 1.5% to 4.6%."""
    scene = _legacy_scene("nebula")
    _, alpha_os = scene.oversampled_alpha(3)
    out = [adaptive_trace_model(scene.flux, scene.alpha, scene.regions, err=scene.err,
                                oversample=3, alpha_os=alpha_os,
                                parameters=replace(PRESET, two_profiles=on)).flux
           for on in (False, True)]
    np.testing.assert_array_equal(out[0], out[1])


def test_weak_share_changes_keep_one_profile():
    """The benchmark's crowded scene (40 faint stars, sharp PSF, 2048 x 2048): five slices
    change their shares by 0.31-0.38%, above 5x their noise, and two profiles made them
    worse (rms error against truth 12-17% -> 14-32%, noise-free too); below
    `two_profile.MIN_SHARE_CHANGE` they keep one profile, bit-identical."""
    from atm_step.simulate import make_scene

    scene = make_scene("crowded", nx=2048, ny=2048, seed=1)
    out = [adaptive_trace_model(scene.flux, scene.alpha, scene.regions, err=scene.err,
                                oversample=3, fit_threshold=0.0, slope_limit=0.0,
                                parameters=replace(PRESET, two_profiles=on)).flux
           for on in (False, True)]
    np.testing.assert_array_equal(out[0], out[1])


def test_undersampled_peaks_keep_one_profile():
    """The crowded scene on 256 columns (sharp PSF, many faint stars with lines): nine
    slices change their shares by 0.6-1.3% with peaks 0.77-0.99 native rows wide, and
    two profiles made eight of them worse (rms error against truth at the oversampled
    pixels above 5% of the slice's peak, e.g. 10.8% -> 33.6%, 26.6% -> 92%). Below
    `two_profile.MIN_FWHM_ROWS_DIP` they keep one profile; the one slice above it (1.54
    rows) gains: 31% -> 23%."""
    from atm_step.simulate import make_scene

    scene = make_scene("crowded", nx=256, ny=2048, seed=1)
    reg_os, alpha_os = scene.oversampled_alpha(3)
    truth = scene.truth_oversampled(3)
    out = [adaptive_trace_model(scene.flux, scene.alpha, scene.regions, err=scene.err,
                                oversample=3, alpha_os=alpha_os, fit_threshold=0.0,
                                parameters=replace(PRESET, two_profiles=on)).flux
           for on in (False, True)]
    for rid in np.unique(reg_os[reg_os > 0]):
        inside = reg_os == rid
        good = inside & (truth > 0.05 * np.nanmax(np.where(inside, truth, 0.0)))
        err = [100 * np.sqrt(np.nanmean(((o - truth)[good] / truth[good]) ** 2)) for o in out]
        assert err[1] <= err[0] + 0.01, (rid, err)


@pytest.mark.parametrize("fwhm", [1.5, 2.0, 2.5])
def test_a_star_on_a_line_nebula_keeps_its_accuracy(fwhm):
    """The nebula's lines change the shares, so the star's slices pass the share test.
    Their second component is the background model (`atm_step.core.background`), and
    two profiles would model the nebula's changing share as sub-pixel structure, so
    those regions are left out; the per-column test (no worse on the native pixels)
    guards the others."""
    scene = _scene("star_on_nebula", fwhm)
    _, alpha_os = scene.oversampled_alpha(3)
    for flux in (G.noise_free_flux(scene), scene.flux):
        out = [adaptive_trace_model(flux, scene.alpha, scene.regions, err=scene.err, oversample=3,
                                    alpha_os=alpha_os, parameters=replace(PRESET, two_profiles=on))
               for on in (False, True)]
        err = [_rms_error(scene, r) for r in out]
        print(f"star on nebula FWHM {fwhm}: one profile {err[0]:.3f}%, two {err[1]:.3f}%")
        assert err[1] <= err[0] + 0.01


def test_outliers_are_rejected_from_the_two_profile_fit(binary):
    """Hot pixels (cosmic-ray residues, 30x the local flux) in six columns of the
    binary's brightest slice, the same first fit: away from them (more than 3 columns)
    the two-profile model stays close to the one made without them. Measured: 99th
    percentile of the change 0.7% of the truth, largest 2.2% (20% and 183% without the
    rejection; 3.1% and 84% with the outliers left in their columns' sums and shares).
    """
    scene, flux = binary
    (_, row0, row1), (alpha, regions, alpha_os, near), fit = _first_fit(scene, flux)
    rng = np.random.default_rng(4)
    hot = flux.copy()
    cols = rng.choice(np.arange(60, 340), 6, replace=False)
    for c in cols:
        y = row0 + int(np.nanargmax(flux[row0:row1 + 1, c]))
        hot[y + 2, c] = 30 * max(flux[y + 2, c], 0.05 * flux[y, c])
    out = {}
    for name, image in (("clean", flux), ("hot", hot)):
        f = copy.deepcopy(fit)
        two_profile.two_profile_refit(f, image, scene.err, alpha, regions, alpha_os, near, PRESET)
        out[name] = f.spline_os
    far = np.ones(flux.shape[1], dtype=bool)
    for c in cols:
        far[max(c - 3, 0):c + 4] = False
    j = np.flatnonzero((near >= row0) & (near <= row1))
    t = scene.truth_oversampled(3)[np.ix_(j, far)]
    good = t > 0.05 * np.nanmax(t)
    dev = np.abs(out["hot"][np.ix_(j, far)] - out["clean"][np.ix_(j, far)])[good] / t[good]
    print(f"hot pixels: change elsewhere p99 {100 * np.percentile(dev, 99):.1f}%, "
          f"largest {100 * dev.max():.1f}% of the truth")
    assert np.percentile(dev, 99) < 0.02  # 3.1% with the outliers left in the sums
    assert dev.max() < 0.2


def test_split_point_share_change_and_peak_width():
    a = np.linspace(-1.5, 1.5, 301)
    two = np.exp(-0.5 * ((a + 0.3) / 0.1) ** 2) + 0.6 * np.exp(-0.5 * ((a - 0.3) / 0.1) ** 2)
    assert two_profile.split_point(a, two) == pytest.approx(0.0, abs=0.03)
    one = np.exp(-0.5 * ((a - 0.2) / 0.1) ** 2)
    assert two_profile.split_point(a, one) is None
    assert two_profile.split_point(a, one, centroid=True) == pytest.approx(0.2, abs=1e-6)
    assert two_profile.peak_fwhm(a, one) == pytest.approx(2.3548 * 0.1, abs=0.011)
    rng = np.random.default_rng(1)
    smooth = 0.4 + 0.05 * np.sin(np.arange(400) / 40)
    complete = np.ones(400, dtype=bool)
    change, noise = two_profile.share_change(smooth, complete, np.full(400, 1e-3))
    assert change < 1e-3 and noise == pytest.approx(1e-3)
    lines = smooth.copy()
    lines[::37] += 0.1  # one source's emission lines
    change, _ = two_profile.share_change(lines + rng.normal(0, 1e-4, 400), complete)
    assert change > 0.01


def test_step_parameter_switches_the_preset():
    from atm_step import AdaptiveTraceModelStep

    assert PRESET.two_profiles is True
    assert FitParameters.miri_mrs("MIRIFULONG").two_profiles is False
    assert FitParameters.nirspec_slit().two_profiles is False
    step = AdaptiveTraceModelStep(two_profiles=False)
    assert step._tuning() == {"two_profiles": False}
    assert PRESET.with_overrides(**step._tuning()).two_profiles is False
    assert AdaptiveTraceModelStep()._tuning() == {}
    with pytest.raises(ValueError, match="two_profiles"):
        FitParameters(two_profiles=1)
