"""Tests of the scene simulator (atm_step.simulate)."""

import numpy as np
import pytest
from astropy.stats import sigma_clipped_stats

from atm_step.simulate import ARCSEC2_TO_SR, SCENES, AiryPSF, SliceGeometry, make_scene

NX = 300
SIGMA = 0.01


@pytest.fixture(scope="module")
def scenes():
    """One small scene of each kind (built once: ~0.3 s each once the PSF table exists)."""
    return {name: make_scene(name, nx=NX, ny=None, noise=SIGMA, seed=3) for name in SCENES}


def _in_slices(scene):
    m = scene.regions > 0
    rows, cols = np.nonzero(m)
    return m, rows, cols


def _brightest_slice(scene, index=0):
    src = scene.source_truth_native(index)
    sums = [np.nansum(src[scene.regions == s]) for s in range(1, scene.geometry.n_slices + 1)]
    return int(np.argmax(sums)) + 1


# ------------------------------------------------------------------ API errors
def test_unknown_scene_lists_valid_names():
    with pytest.raises(ValueError) as exc:
        make_scene("galaxy", nx=50, ny=None)
    for name in SCENES:
        assert name in str(exc.value)


def test_unknown_option_lists_valid_ones():
    with pytest.raises(TypeError, match="valid options: .*alpha"):
        make_scene("point_source", nx=50, ny=None, n_clusters=3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="noise"):
        make_scene("point_source", nx=50, ny=None, noise=-1)
    with pytest.raises(ValueError, match="need ny >= "):
        make_scene("point_source", nx=50, ny=500)
    psf = AiryPSF(wavelength_range=(1.0, 2.0))
    with pytest.raises(ValueError, match="wavelength outside"):
        psf.integral(-1, 1, -1, 1, 2.5)


# ------------------------------------------------------------------- geometry
def test_full_detector_geometry():
    geo = SliceGeometry.build(nx=2048, ny=2048)
    regions, alpha = geo.maps()
    assert regions.shape == (2048, 2048) and regions.dtype == np.int32
    assert set(np.unique(regions)) == set(range(31))
    # every slice has exactly 30 rows in every column, separated by NaN gap rows
    for s in (1, 15, 30):
        assert np.all((regions == s).sum(axis=0) == 30)
    assert geo.gap_rows >= 2
    assert np.array_equal(np.isnan(alpha), regions == 0)
    assert np.nanmin(alpha) >= -1.5 and np.nanmax(alpha) < 1.5
    assert np.allclose(geo.beta, (np.arange(30) - 14.5) * 0.1)


def test_alpha_increases_with_row_and_wavelength_map(scenes):
    sc = scenes["point_source"]
    geo = sc.geometry
    for s in (1, 17):
        rows = geo.slice_rows(s)
        a = sc.alpha[rows, np.arange(geo.nx)]
        assert np.allclose(np.diff(a, axis=0), 0.1)
        assert np.all(sc.regions[rows, np.arange(geo.nx)] == s)
    m = sc.regions > 0
    assert np.array_equal(np.isfinite(sc.wavelength), m)
    assert np.allclose(sc.wavelength[m], np.broadcast_to(sc.column_wavelength, sc.shape)[m])
    assert sc.column_wavelength[0] == 1.0 and sc.column_wavelength[-1] == 1.8
    assert sc.beta.shape == (30,)


@pytest.mark.parametrize("nx", [300, 2048])
def test_trace_pixel_phase(nx):
    geo = SliceGeometry.build(nx=nx, ny=None)
    y = geo.y_of(10, np.arange(nx), 0.0)
    left = y[80] - y[0]
    right = y[-1] - y[-81]
    assert 0.85 < left <= 1.0  # ~one full pixel-phase cycle over the first 80 columns
    assert 0.0 <= right < 0.05  # nearly parallel to the rows at the right edge
    assert geo.trace_slope_at(0) == pytest.approx(1 / 80)
    # the alpha map agrees: a fixed pixel sees alpha fall by ~0.1" over the first 80 columns
    regions, alpha = geo.maps()
    r = geo.slice_rows(10)[15, 80]
    assert regions[r, 0] == regions[r, 80] == 10
    assert alpha[r, 0] - alpha[r, 80] == pytest.approx(0.1 * left)
    mirrored = SliceGeometry.build(nx=nx, ny=None, steep_side="right")
    ym = mirrored.y_of(10, np.arange(nx), 0.0)
    assert ym[-1] - ym[-81] == pytest.approx(left)


def test_trace_phase_visible_in_data(scenes):
    """The peak's sub-pixel phase in the data follows the geometric trace."""
    sc = scenes["point_source"]
    src = sc.sources[0]
    s = _brightest_slice(sc)
    rows = sc.geometry.slice_rows(s)
    x = np.arange(sc.geometry.nx)
    prof = sc.source_truth_native(0)[rows, x]
    peak = rows[np.argmax(prof, axis=0), x]
    expected = np.round(sc.geometry.y_of(s, x, src.alpha))
    assert np.mean(peak == expected) > 0.97
    assert len(np.unique(peak[:80])) == 2  # the peak row steps within the first 80 columns


# ------------------------------------------------------------------------ PSF
def test_psf_normalisation_and_scaling():
    psf = AiryPSF(jitter_fwhm=0.0, wavelength_range=(1.0, 2.0))
    lam = np.array([1.0, 1.37, 2.0])
    total = psf.integral(-np.inf, np.inf, -np.inf, np.inf, lam)
    assert np.all(total > 0.995) and np.all(total <= 1.0 + 1e-6)
    # Airy: 83.8 % of the light inside the first dark ring (1.22 lambda/D)
    r = np.linspace(0, 1.2197 * psf.lambda_over_d(1.5), 4001)
    ee = np.trapezoid(2 * np.pi * r * psf.radial_profile(r, 1.5), r)
    assert ee == pytest.approx(0.838, abs=0.003)
    # the core fraction in a 0.1" square falls as the PSF grows with wavelength
    core = psf.integral(-0.05, 0.05, -0.05, 0.05, lam)
    assert np.all(np.diff(core) < 0)
    # symmetric, and additive over adjacent rectangles
    a = psf.integral(0.02, 0.09, -0.03, 0.04, 1.5)
    assert a == pytest.approx(psf.integral(-0.09, -0.02, -0.04, 0.03, 1.5), rel=1e-12)
    left = psf.integral(-0.3, 0.017, -0.2, 0.1, 1.5)
    right = psf.integral(0.017, 0.25, -0.2, 0.1, 1.5)
    assert left + right == pytest.approx(psf.integral(-0.3, 0.25, -0.2, 0.1, 1.5), rel=1e-12)
    # vectorised with broadcasting
    out = psf.integral(np.zeros((4, 1)), np.linspace(0.1, 0.4, 5), -0.05, 0.05, 1.2)
    assert out.shape == (4, 5) and np.all(np.diff(out, axis=1) > 0)


def test_total_flux_over_all_slices(scenes):
    """Summed over every slice pixel a source's flux is the PSF integral over the field (~0.99)."""
    sc = scenes["point_source"]
    src = sc.sources[0]
    geo = sc.geometry
    img = sc.source_truth_native(0)
    pix_sr = geo.row_height * geo.slice_width * ARCSEC2_TO_SR
    for x in (0, 150, NX - 1):
        total = np.nansum(img[:, x]) * pix_sr / (src.flux[x] * 1e-9)
        a_lo = geo.alpha_min - src.alpha + (np.ceil(geo.y_low(1, x)) - geo.y_low(1, x) - 0.5) * 0.1
        b_lo = geo.beta[0] - 0.05 - src.beta
        b_hi = geo.beta[-1] + 0.05 - src.beta
        expected = sc.psf.integral(a_lo, a_lo + 3.0, b_lo, b_hi, sc.column_wavelength[x])
        assert total == pytest.approx(expected, rel=1e-9)
        assert 0.98 < total < 1.0


def test_psf_wings_reach_neighbouring_slices(scenes):
    sc = scenes["point_source"]
    img = sc.source_truth_native(0)
    s0 = _brightest_slice(sc)
    peak = np.nanmax(img[sc.regions == s0])
    for ds in (1, 2, 3):
        for s in (s0 - ds, s0 + ds):
            wing = np.nanmax(img[sc.regions == s])
            assert wing > (10 if ds <= 2 else 3) * SIGMA
            assert wing < 0.05 * peak
    # faint wings reach every slice (out to 1.5")
    assert all(np.nanmax(img[sc.regions == s]) > 1e-6 * peak for s in range(1, 31))
    # Airy rings: the profile of a wing slice has several local maxima along alpha
    rows = sc.geometry.slice_rows(s0 + 3)
    prof = img[rows, 150]
    n_max = np.sum((prof[1:-1] > prof[:-2]) & (prof[1:-1] > prof[2:]))
    assert n_max >= 2


def test_pixels_equal_psf_integral(scenes):
    """A simulated pixel is the source flux times the PSF integral over its footprint."""
    sc = scenes["two_sources"]
    src = sc.sources[1]
    m, rows, cols = _in_slices(sc)
    pick = np.arange(0, rows.size, 997)
    r, c = rows[pick], cols[pick]
    reg = sc.regions[r, c]
    a = sc.alpha[r, c] - src.alpha
    b = sc.beta[reg - 1] - src.beta
    frac = sc.psf.integral(a - 0.05, a + 0.05, b - 0.05, b + 0.05, sc.column_wavelength[c])
    expected = src.flux[c] * 1e-9 * frac / (0.01 * ARCSEC2_TO_SR)
    got = sc.source_truth(1, reg, c, sc.alpha[r, c])
    assert np.allclose(got, expected, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------- truth
@pytest.mark.parametrize("name", ["nebula", "two_sources", "negative_offset"])
def test_truth_at_native_centres_equals_truth_native(scenes, name):
    sc = scenes[name]
    m, rows, cols = _in_slices(sc)
    t = sc.truth(sc.regions[m], cols, sc.alpha[m])
    assert np.max(np.abs(t - sc.truth_native[m])) < 1e-10
    assert np.all(np.isfinite(sc.truth_native[m]))
    assert np.all(np.isnan(sc.truth_native[~m]))
    # components add up
    parts = sum(sc.source_truth_native(k) for k in range(len(sc.sources)))
    parts = parts + sc.nebula_truth(sc.regions, np.broadcast_to(np.arange(NX), sc.shape), np.nan_to_num(sc.alpha))
    assert np.allclose(parts[m] + sc.offset, sc.truth_native[m], rtol=1e-12, atol=1e-12)
    # region 0 gives NaN
    assert np.isnan(sc.truth(0, 5, 0.0))


def test_truth_oversampled(scenes):
    sc = scenes["nebula"]
    m = sc.regions > 0
    os1 = sc.truth_oversampled(1)
    assert np.allclose(os1[m], sc.truth_native[m], rtol=1e-12, atol=1e-12)
    os2 = sc.truth_oversampled(2)
    assert os2.shape == (2 * sc.shape[0], NX)
    assert np.array_equal(np.isnan(os2[0::2]), ~m) and np.array_equal(np.isnan(os2[1::2]), ~m)
    # half-row windows average back to the native pixel (j = 2i, 2i+1 sit at y = i -+ 0.25)
    half = sc.truth_oversampled(2, width=0.05)
    avg = 0.5 * (half[0::2] + half[1::2])
    assert np.allclose(avg[m], sc.truth_native[m], rtol=1e-9, atol=1e-9)
    # the oversampled profile is sharper: it peaks at least as high as the native one
    assert np.nanmax(os2) >= np.nanmax(sc.truth_native)
    os3 = sc.truth_oversampled(3)
    assert os3.shape == (3 * sc.shape[0], NX)
    reg, alpha = sc.oversampled_alpha(3)
    assert np.allclose(np.diff(alpha[reg[:, 7] == 12, 7]), 0.1 / 3)
    s2 = sc.source_truth_oversampled(0, 2)
    assert np.all(s2[m.repeat(2, axis=0)] > 0)


def test_two_sources_have_different_spectra(scenes):
    sc = scenes["two_sources"]
    assert len(sc.sources) == 2
    a, b = sc.sources
    assert 0.1 < np.hypot(a.alpha - b.alpha, a.beta - b.beta) < 0.4
    ratio = a.flux / b.flux
    assert ratio.max() / ratio.min() > 3
    assert a["name"] != b["name"] and callable(a["spectrum"])
    assert np.allclose(a.spectrum(sc.column_wavelength), a.flux)


def test_nebula_fills_field_with_narrow_lines(scenes):
    sc = scenes["nebula"]
    m = sc.regions > 0
    cols = np.broadcast_to(np.arange(NX), sc.shape)
    neb = sc.nebula_truth(sc.regions, cols, np.nan_to_num(sc.alpha))
    assert np.all(neb[m] > 0)
    # every slice shows the lines; a line is ~2 columns wide (FWHM)
    spec = np.nanmean(np.where(sc.regions == 3, neb, np.nan), axis=0)
    x0 = int(np.argmax(spec))
    above = spec > 0.5 * (spec[x0] + np.median(spec))
    width = np.sum(above[max(x0 - 6, 0) : x0 + 7])
    assert 1 <= width <= 3
    assert spec[x0] > 20 * np.median(spec)
    # spatially smooth but not flat
    col = neb[sc.geometry.slice_rows(3)[:, x0], x0]
    assert np.max(np.abs(np.diff(col))) < 0.1 * col.max() and col.max() / col.min() > 1.1


def test_crowded_field():
    sc = make_scene("crowded", nx=120, ny=None, noise=SIGMA, seed=5)
    assert len(sc.sources) == 40
    pos = np.array([(s.alpha, s.beta) for s in sc.sources])
    assert np.all(np.abs(pos[:, 0]) < 1.5) and np.all(np.abs(pos[:, 1]) < 1.5)
    assert len({s.name for s in sc.sources}) == 40
    lit = [np.nanmax(sc.truth_native[sc.regions == s]) > 10 * SIGMA for s in range(1, 31)]
    assert all(lit)
    again = make_scene("crowded", nx=120, ny=None, noise=SIGMA, seed=5, n_sources=40)
    assert np.array_equal(np.nan_to_num(again.flux), np.nan_to_num(sc.flux))


# ---------------------------------------------------------------------- noise
def test_noise_matches_sigma_and_is_seeded(scenes):
    sc = scenes["point_source"]
    m = sc.regions > 0
    resid = (sc.flux - sc.truth_native)[m]
    assert np.std(resid) == pytest.approx(SIGMA, rel=0.02)
    assert abs(np.mean(resid)) < 0.05 * SIGMA
    assert np.all(sc.err[m] == SIGMA) and np.all(np.isnan(sc.err[~m]))
    assert np.all(np.isnan(sc.flux[~m]))
    same = make_scene("point_source", nx=NX, ny=None, noise=SIGMA, seed=3)
    other = make_scene("point_source", nx=NX, ny=None, noise=SIGMA, seed=4)
    assert np.array_equal(same.flux[m], sc.flux[m])
    assert not np.array_equal(other.flux[m], sc.flux[m])
    clean = make_scene("point_source", nx=NX, ny=None, noise=0.0)
    assert np.array_equal(clean.flux[m], clean.truth_native[m])


def test_negative_offset(scenes):
    sc = scenes["negative_offset"]
    assert sc.offset == -0.1
    mean, _, std = sigma_clipped_stats(sc.flux[np.isfinite(sc.flux)])
    assert mean < -5 * SIGMA
    m = sc.regions > 0
    assert np.allclose((sc.truth_native - sc.source_truth_native(0))[m], -0.1)
    assert sigma_clipped_stats(scenes["point_source"].flux[m])[0] > -SIGMA


def test_bad_pixels_on_brightest_trace(scenes):
    sc = scenes["bad_pixels"]
    mask = sc.bad_pixel_mask
    assert mask.dtype == bool and mask.shape == sc.shape
    assert mask.sum() == 6 * 9
    assert np.array_equal(np.isnan(sc.flux) & (sc.regions > 0), mask)
    assert np.all(np.isnan(sc.err[mask]))
    s0 = _brightest_slice(sc)
    assert np.all(sc.regions[mask] == s0)
    rows = sc.geometry.slice_rows(s0)
    src = sc.source_truth_native(0)
    for c in np.unique(np.nonzero(mask)[1]):
        peak_row = rows[np.argmax(src[rows[:, c], c]), c]
        if mask[:, c].sum() == 3 and mask[:, max(c - 1, 0)].sum() == 3 and mask[:, min(c + 1, NX - 1)].sum() == 3:
            assert mask[peak_row, c]  # the cluster's centre column holds the trace peak
    assert not scenes["point_source"].bad_pixel_mask.any()
