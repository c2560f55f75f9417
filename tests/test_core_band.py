"""The compact-source band of two blended sources, and the band's flux factor.

One slice of 30 rows of 0.1" holds two Gaussian traces (sigma 0.12", FWHM 2.8 rows)
0.4" apart with different spectra, tilted by one row per 80 columns: the plateau
between the peaks is not steep, so the padded band of steep pixel pairs keeps a
hole there unless it is filled (`combine.HOLE_LEVEL`). Noise-free, so every column's
flux is known exactly.
"""

import numpy as np
import pytest

from atm_step.core import adaptive_trace_model, combine, grid, linear, trace_fit
from atm_step.core.parameters import FitParameters

N = 3


def _blend(nx=300, sep=0.4, sigma=0.12):
    ny = 36
    x = np.arange(nx)
    alpha = (np.arange(ny)[:, None] - 3 - x[None, :] / 80.0) * 0.1
    inside = (alpha >= 0) & (alpha <= 2.9)
    s1 = 1 + 0.3 * np.sin(x / 40.0)
    s2 = 0.7 - 0.2 * np.cos(x / 25.0)
    flux = (s1 * np.exp(-0.5 * ((alpha - 1.3) / sigma) ** 2)
            + s2 * np.exp(-0.5 * ((alpha - 1.3 - sep) / sigma) ** 2) + 0.002)  # fmt: skip
    regions = np.where(inside, 3, 0).astype(np.int64)
    return np.where(inside, flux, np.nan), np.where(inside, alpha, np.nan), regions


def _has_hole(band_column):
    rows = np.flatnonzero(band_column)
    return rows.size > 0 and not band_column[rows[0] : rows[-1] + 1].all()


@pytest.mark.parametrize("level", [combine.HOLE_LEVEL, np.inf])
def test_blended_core_stays_in_the_band_and_columns_keep_their_flux(monkeypatch, level):
    """With the hole filled (the default) the band covers the plateau between the two
    peaks and every column of the N = 3 image keeps its flux; with holes left
    (``HOLE_LEVEL = inf``) the linear model fills the plateau between two stretches of
    the trace model and the columns gain flux."""
    monkeypatch.setattr(combine, "HOLE_LEVEL", level)
    flux, alpha, regions = _blend()
    res = adaptive_trace_model(flux, alpha, regions, oversample=N, fit_threshold=0,
                               slope_limit=0.1, pad=2)  # fmt: skip
    holes = sum(_has_hole(res.band[:, x]) for x in range(flux.shape[1]))
    dev = np.abs(np.nansum(res.flux, axis=0) / N / np.nansum(flux, axis=0) - 1)
    print(f"HOLE_LEVEL {level}: columns with a hole {holes}, largest flux change {dev.max():.2e}")
    if np.isfinite(level):
        # measured: no hole, 1.0e-4
        assert holes == 0
        assert dev.max() < 5e-4
    else:
        # measured: a hole in every column, 1.4e-2
        assert holes == flux.shape[1]
        assert dev.max() > 5e-3


def test_band_flux_factor_acts_on_the_pixels_the_combination_takes_from_the_model():
    """`combine.conserve_band_flux` scales the oversampled model of the band so that it
    sums to 1/N of its parent native pixels' model, per column, over the very pixels
    the combination puts in the band. Tested where the band's edges fall on bright
    pixels (the blended core with its hole left open), where the parents' band and
    the combination's differ: taking the pixels whose parent is in the band (as in
    0.1.0) leaves the two sums 1% apart there."""
    flux, alpha, regions = _blend()
    ny = flux.shape[0]
    y_os = grid.oversampled_rows(ny, N)
    near = grid.nearest_native_row(ny, N)
    alpha_os = linear.linear_oversample(alpha, regions, y_os, near, preserve_nan=False,
                                        extrapolate=True)  # fmt: skip
    fit = trace_fit.fit_regions(flux, alpha, regions, np.array([3]), alpha_os, near,
                                FitParameters())  # fmt: skip
    band = combine.compact_source_band(fit, regions, alpha, 0.1, 2, hole_level=np.inf)
    before = fit.spline_os.copy()
    parts = combine.combine_models(flux, regions, alpha, alpha_os, y_os, near, fit, band,
                                   oversample=N, psf_optimal=False)  # fmt: skip
    use = parts.band & np.isfinite(parts.spline)
    parents = np.where(use, fit.spline_native[near, :], 0.0)
    model = np.where(use, parts.spline, 0.0)
    unscaled = np.where(use, before, 0.0)
    rel = np.abs(model.sum(axis=0) / parents.sum(axis=0) - 1)
    rel_before = np.abs(unscaled.sum(axis=0) / parents.sum(axis=0) - 1)
    print(f"band model / parents' model: before the factor up to {rel_before.max():.2e}, "
          f"after {rel.max():.2e}")
    assert all(_has_hole(parts.band[:, x]) for x in range(flux.shape[1]))
    assert rel.max() < 1e-12
    assert rel_before.max() > 1e-3  # the factor had something to do


def test_fill_core_holes_fills_a_bright_plateau_not_a_faint_gap():
    band = np.array([0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0], dtype=bool)
    profile = np.array([0.0, 0.4, 0.9, 0.5, 0.45, 1.0, 0.6, 0.05, 0.01, 0.05, 0.3, 0.2, 0.0])
    filled = band.copy()
    n = combine._fill_core_holes(filled, profile, 0.1)
    # bins 3-4 lie on the plateau (>= 10% of the peak) and are filled; bins 7-9 drop to
    # 1% of the peak between separate sources and stay out; nothing outside the band
    assert n == 2
    assert filled.tolist() == [0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0]
    # a hole of bins with no pixels (NaN profile) stays as it is
    gap = np.array([1, 0, 0, 1], dtype=bool)
    assert combine._fill_core_holes(gap, np.array([1.0, np.nan, np.nan, 1.0]), 0.1) == 0
    assert gap.tolist() == [1, 0, 0, 1]
