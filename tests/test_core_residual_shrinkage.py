"""The Wiener-weighted residual model (on in the NIRSpec IFU and MIRI MRS presets), against a
readable reference and against the truth of the issue-9 grid.

Inside the compact-source band the oversampled image is trace model + residual; the
residual is interpolated from the native pixels and carries their noise into the N
oversampled rows. `FitParameters.residual_shrinkage` weights it by
``r**2 / (r**2 + (k sigma)**2)`` and spreads the residual flux it removes evenly over
the band run (`atm_step.core.combine.shrink_band_residual`).
"""

from dataclasses import replace

import numpy as np
import pytest

from atm_step.core import FitParameters
from atm_step.core.reference import reference_shrink_band_residual
from atm_step.validation import grid as G
from atm_step.validation import methods as M

PRESET = FitParameters.nirspec_ifu("NRS1")


def _scene(recipe, snr=None):
    return G.build_scene(G.Case(recipe, 1.0, snr or G.RECIPES[recipe].peak_snr))


@pytest.fixture(scope="module")
def star():
    """The grid's bright isolated star (peak SNR 5000), PSF FWHM 1 native pixel."""
    return _scene("isolated")


def _run(scene, shrinkage, flux=None):
    return M.run_ours(scene, 3, flux=flux, parameters=replace(PRESET, residual_shrinkage=shrinkage)).extra["result"]


def test_on_in_the_ifu_presets_only():
    """Validated on the NIRSpec-IFU-like grid (docs/validation.md) and the MIRI MRS
    matrix (docs/validation_miri.md) with the offset column scale; not for slits."""
    assert PRESET.residual_shrinkage == 1.0
    assert FitParameters.nirspec_ifu("NRS2").residual_shrinkage == 1.0
    assert FitParameters.miri_mrs("MIRIFULONG").residual_shrinkage == 1.0
    assert FitParameters.miri_mrs("MIRIFUSHORT").residual_shrinkage == 1.0
    for p in (FitParameters.nirspec_slit(), FitParameters.miri_lrs(), FitParameters()):
        assert p.residual_shrinkage == 0.0
    with pytest.raises(ValueError, match="residual_shrinkage"):
        FitParameters(residual_shrinkage=-1.0)


@pytest.mark.parametrize("recipe", ["isolated", "crowded"])
def test_kernel_matches_the_reference(recipe):
    """Against `reference_shrink_band_residual` applied to the unweighted result; the
    band's flux per column is kept; outside the band nothing changes."""
    scene = _scene(recipe)
    plain = _run(scene, 0.0)
    regions_os = scene.regions[plain.near_row]
    band = plain.band & np.isfinite(plain.residual)
    assert band.sum() > 1000
    for k in (1.0, 2.5):
        shrunk = _run(scene, k)
        flux, res = reference_shrink_band_residual(plain.trace, plain.residual, plain.band,
                                                   plain.err / plain.inflation, regions_os, k)
        np.testing.assert_allclose(shrunk.flux[band], flux[band], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(shrunk.residual[band], res[band], rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(shrunk.flux[~band], plain.flux[~band])
        np.testing.assert_array_equal(shrunk.err, plain.err)
        col = lambda r: np.where(band, r.flux, 0.0).sum(axis=0)  # noqa: E731
        np.testing.assert_allclose(col(shrunk), col(plain), rtol=1e-10, atol=1e-9)
        changed = np.abs(shrunk.flux - plain.flux)[band] > 1e-6 * np.nanmax(plain.flux)
        assert changed.mean() > 0.5


def test_run_list_overflow_gives_the_same_bits(monkeypatch):
    """The band runs are spread back in a second sweep along the rows; a column with
    more runs than its list holds (`combine.SHRINK_RUNS`) spreads the rest back at once,
    down the column. Both ways give the same bits. The crowded scene's columns cross
    up to 30 slices' bands: with a list of one run almost every run takes the
    column-wise path, with the default almost none."""
    from atm_step.core import combine

    scene = _scene("crowded")
    kept = _run(scene, 1.0)
    monkeypatch.setattr(combine, "SHRINK_RUNS", 1)
    direct = _run(scene, 1.0)
    plain = _run(scene, 0.0)
    band = plain.band & np.isfinite(plain.residual)
    runs = np.diff(band.astype(np.int8), axis=0, prepend=0) == 1  # run starts per column
    assert runs.sum(axis=0).max() > 1  # columns with several runs: the overflow is reached
    assert not np.array_equal(kept.flux, plain.flux, equal_nan=True)
    np.testing.assert_array_equal(direct.flux, kept.flux)
    np.testing.assert_array_equal(direct.residual, kept.residual)


def test_weighted_residual_removes_copied_noise(star):
    """Noisy star, N = 3. The noise the image carries into the band (noisy minus
    noise-free output, rms over the band, in units of the pixel noise) drops, and the
    error against the truth on the oversampled rows (rms over pixels above 5% of the
    peak, where the model, not the noise, sets it) does not grow, noisy or not."""
    truth = star.truth_oversampled(3)
    bright = truth > 0.05 * np.nanmax(truth)
    nf = G.noise_free_flux(star)
    k1 = 1.0
    out = {(k, v): _run(star, k, flux=f) for k in (0.0, k1) for v, f in (("noisy", None), ("noise-free", nf))}

    def error(res):
        ok = bright & np.isfinite(res.flux)
        return float(np.sqrt(np.mean(((res.flux - truth)[ok] / truth[ok]) ** 2)))

    def copied(k):
        a, b = out[(k, "noisy")], out[(k, "noise-free")]
        band = a.band & b.band & np.isfinite(a.flux) & np.isfinite(b.flux)
        return float(np.std((a.flux - b.flux)[band]) / star.noise)

    # measured: copied noise 1.047 -> 0.917 sigma; errors 1.402 -> 1.402% noisy,
    # 1.337 -> 1.342% noise-free
    assert copied(k1) < 0.9 * copied(0.0)
    for v in ("noisy", "noise-free"):
        assert error(out[(k1, v)]) < 1.05 * error(out[(0.0, v)])
