"""Residual model and the combined image (paper sections II.4 and II.5).

The compact-source band of a region is where the normalised spline model is steep:
for every column, the change of the normalised model between vertically adjacent
native pixels is compared with ``slope_limit``; steep pairs are histogrammed in alpha
(bins of half a native row, at the pair's mid-point). Bins holding at least 20% of
the fullest bin's count, widened by ``pad`` native rows on each side, form the band.
Because the band is defined in alpha, which is fixed on the sky, it is the same for
every column of the region (paper II.5, footnote 6). jwst keeps only the histogram's
local peaks (``scipy.signal.find_peaks``) and pads around those; keeping every bin
above the level instead also covers a broad or double-peaked core (two close
sources) without gaps between the peaks. As in jwst, fewer than 50 steep pairs in a
region give no band at all.
"""

from dataclasses import dataclass

import numba
import numpy as np

from atm_step.core.linear import linear_oversample

__all__ = ["CombinedModels", "combine_models"]

BAND_LEVEL = 0.2
BAND_MIN_POINTS = 50


@numba.njit(cache=True)
def _steep_histogram(model, alpha, regions, rid, row0, row1, a0, step, nbins, limit, hist):
    nx = model.shape[1]
    total = 0
    for x in range(nx):
        for y in range(row0, row1):
            if regions[y, x] != rid or regions[y + 1, x] != rid:
                continue
            m0 = model[y, x]
            m1 = model[y + 1, x]
            if not (np.isfinite(m0) and np.isfinite(m1)):
                continue
            if abs(m1 - m0) > limit:
                amid = 0.5 * (alpha[y, x] + alpha[y + 1, x])
                k = min(max(int((amid - a0) / step), 0), nbins - 1)
                hist[k] += 1
                total += 1
    return total


@numba.njit(cache=True)
def _mark_band(alpha_os, regions, near, rid, j0, j1, a0, step, inband, band):
    nx = alpha_os.shape[1]
    nbins = inband.shape[0]
    for x in range(nx):
        for j in range(j0, j1):
            if regions[near[j], x] != rid:
                continue
            a = alpha_os[j, x]
            if not np.isfinite(a):
                continue
            k = int(np.floor((a - a0) / step))
            if 0 <= k < nbins and inband[k]:
                band[j, x] = True


@numba.njit(cache=True)
def _mark_region(regions, near, rid, j0, j1, band):
    nx = band.shape[1]
    for x in range(nx):
        for j in range(j0, j1):
            if regions[near[j], x] == rid:
                band[j, x] = True


@dataclass
class CombinedModels:
    """
    Oversampled models and their combination; arrays of shape (ny_os, nx).

    ``band_rows`` maps region id to the band width in native rows.
    """

    flux: np.ndarray
    trace: np.ndarray
    spline: np.ndarray
    linear: np.ndarray
    residual: np.ndarray
    band: np.ndarray
    estimated: np.ndarray
    band_rows: dict

    def band_rows_for(self, ids):
        """Band widths (native rows) aligned to ``ids``; 0 for regions without a band."""
        return np.array([self.band_rows.get(int(r), 0.0) for r in ids], dtype=np.float64)


def compact_source_band(fit, regions, alpha, alpha_os, near, slope_limit, pad):
    """
    Oversampled pixels inside each fitted region's compact-source band (paper II.5).

    Parameters
    ----------
    fit : TraceFit
        Spline models (normalised model at native pixels, region geometry).
    regions : ndarray of int64, shape (ny, nx)
    alpha : ndarray of float64, shape (ny, nx)
    alpha_os : ndarray of float64, shape (ny_os, nx)
    near : ndarray of int64, shape (ny_os,)
    slope_limit : float
        Limit on the normalised model's change per native pixel; ``<= 0`` makes the
        whole region the band.
    pad : float
        Band padding in native pixels.

    Returns
    -------
    band : ndarray of bool, shape (ny_os, nx)
    band_rows : dict of int to float
        Band width of each fitted region, in native rows.
    """
    geom = fit.geometry
    band = np.zeros(alpha_os.shape, dtype=bool)
    band_rows = {}
    for k, rid in enumerate(geom.ids.tolist()):
        j0 = int(np.searchsorted(near, geom.row0[k], side="left"))
        j1 = int(np.searchsorted(near, geom.row1[k], side="right"))
        dalpha = geom.dalpha[k]
        if slope_limit <= 0:
            _mark_region(regions, near, rid, j0, j1, band)
            band_rows[rid] = (geom.alpha_max[k] - geom.alpha_min[k]) / dalpha + 1
            continue
        step = dalpha / 2.0
        a0 = geom.alpha_min[k] - 0.5 * dalpha
        nbins = int(np.ceil((geom.alpha_max[k] + 0.5 * dalpha - a0) / step)) + 1
        hist = np.zeros(nbins, dtype=np.int64)
        total = _steep_histogram(
            fit.model_native, alpha, regions, rid, geom.row0[k], geom.row1[k],
            a0, step, nbins, float(slope_limit), hist,
        )  # fmt: skip
        if total < BAND_MIN_POINTS:
            band_rows[rid] = 0.0
            continue
        steep = hist >= BAND_LEVEL * hist.max()
        # widen by pad native rows = 2 * pad bins each side
        widen = int(round(2 * pad))
        inband = steep.copy()
        for s in range(1, widen + 1):
            inband[s:] |= steep[:-s]
            inband[:-s] |= steep[s:]
        band_rows[rid] = float(inband.sum()) / 2.0
        _mark_band(alpha_os, regions, near, rid, j0, j1, a0, step, inband, band)
    return band, band_rows


def combine_models(
    flux, regions, alpha, alpha_os, y_os, near, fit, *, oversample, slope_limit, pad, psf_optimal
):
    """
    Build the linear and residual models and combine them with the spline model.

    Parameters
    ----------
    flux : ndarray of float64, shape (ny, nx)
        Image (negative offset removed).
    regions : ndarray of int64, shape (ny, nx)
    alpha : ndarray of float64, shape (ny, nx)
    alpha_os : ndarray of float64, shape (ny_os, nx)
    y_os, near : ndarray, shape (ny_os,)
        Oversampled row coordinates and nearest native rows (`atm_step.core.grid`).
    fit : TraceFit
        Spline models from `atm_step.core.trace_fit.fit_regions`.
    oversample : float
    slope_limit : float
    pad : float
    psf_optimal : bool
        Leave out the residual model inside the band.

    Returns
    -------
    CombinedModels

    Notes
    -----
    Inside the band: spline + residual (spline alone with ``psf_optimal``); where the
    residual is undefined (no native residual to interpolate) the spline alone. Outside
    the band, or where the spline is undefined: the linear model, in which NaN input
    pixels stay NaN. NaN input pixels inside the band are thus filled by the model, the
    residual being interpolated from their neighbours.
    """
    linear = linear_oversample(flux, regions, y_os, near, preserve_nan=True)
    resid_native = flux - fit.spline_native
    residual = linear_oversample(resid_native, regions, y_os, near, preserve_nan=False)
    residual[~np.isfinite(fit.spline_os)] = np.nan

    band, band_rows = compact_source_band(fit, regions, alpha, alpha_os, near, slope_limit, pad)
    use = band & np.isfinite(fit.spline_os)
    model = fit.spline_os.copy()
    if not psf_optimal:
        has_resid = use & np.isfinite(residual)
        model[has_resid] += residual[has_resid]
    combined = linear.copy()
    combined[use] = model[use]
    trace = np.where(use, fit.spline_os, np.nan)
    native_nan = ~np.isfinite(flux[near, :])
    estimated = np.isfinite(combined) & native_nan
    return CombinedModels(
        flux=combined,
        trace=trace,
        spline=fit.spline_os.copy(),
        linear=linear,
        residual=residual,
        band=use,
        estimated=estimated,
        band_rows=band_rows,
    )
