"""Extended emission under compact sources, modelled apart from the trace (an addition
to the paper's method).

Why
---
The spline model (`atm_step.core.trace_fit`) fits one normalised along-slice profile to
the ~100 columns of its window. Its sub-pixel detail comes from the trace's tilt: each
alpha between two pixel centres is sampled by only a column or two of the window. When
the profile *changes* across the window, the change is read as sub-pixel structure:
the fit aliases it into wiggles with a period of one native pixel. That happens
whenever two components with different spectra share a slice, the commonest case being
a star on extended emission (a nebula, a galaxy's disc, a bright background), because
the share of the star in each column's sum then follows the ratio of the two spectra
(absorption lines of the star, emission lines of the gas). On the validation's star on
a line-emitting nebula (FWHM 1.5 native pixels) this took the noise-free artifact
half-amplitude from the ideal 0.57% to 2.2%.

What
----
Per region that has a compact-source band (`atm_step.core.combine.compact_source_band`)
and native rows outside it on both sides, and per column: a smooth model ``B(alpha)``
of the emission *outside* the band, a cubic B-spline with one knot interval per
``background_rows`` native rows and a light second-difference penalty (so it bridges
the band smoothly), fitted by least squares with one pass of 4-sigma rejection. The
trace model is then fitted again to ``flux - B``, whose profile is the compact
source's alone, and the spline model becomes ``c S(alpha) + B(alpha)``. The residual
and linear models, the band and the combination are unchanged (`_model_image` in
`atm_step.core.api`).
"""

import logging

import numba
import numpy as np

from atm_step.core.bspline import accumulate, basis, difference_penalty, evaluate, solve_banded

__all__ = ["extended_background", "background_regions"]

log = logging.getLogger(__name__)

#: penalty weight relative to the largest diagonal element of the normal equations
PENALTY = 1e-3
#: rejection threshold of the background fit, in rms of its residuals
REJECT_SIGMA = 4.0
#: weights of the background fit rise from 0 at the band's edge to 1 this many native
#: rows away, so that pixels drift in and out of the fit smoothly as the trace tilts
TAPER_ROWS = 2.0
#: the background is used where it holds at least this share of the region's flux
#: (median over columns); below it, the compact source dominates and a background fit
#: only adds its noise to the trace model
MIN_SHARE = 0.1
#: a region needs at least this many native rows outside its band on each side
MIN_SIDE_ROWS = 3


@numba.njit(cache=True, nogil=True)
def _weight(a, band_a0, band_step, wbin):
    b = int(np.floor((a - band_a0) / band_step))
    if b < 0:
        b = 0
    elif b >= wbin.shape[0]:
        b = wbin.shape[0] - 1
    return wbin[b]


def _bin_weights(inband, step, dalpha, taper_rows):
    """Weight of each alpha bin in the background fit: 0 in the band, rising as the
    square of the distance from it to 1 at ``taper_rows`` native rows."""
    idx = np.arange(inband.size)
    inside = np.flatnonzero(inband)
    if inside.size == 0:
        return np.ones(inband.size)
    dist = np.min(np.abs(idx[:, None] - inside[None, :]), axis=1) * step / dalpha
    return np.clip(dist / taper_rows, 0.0, 1.0) ** 2


@numba.njit(cache=True, nogil=True)
def _fit_background(
    flux, alpha, regions, rid, row0, row1, a0, a1, nint, band_a0, band_step, wbin,
    pen, alpha_os, near, j0, j1, bg_native, bg_os,
):  # fmt: skip
    # per column: P-spline least squares of the pixels outside the band, one rejection
    # pass; columns with too few points reuse the previous column's coefficients
    nx = flux.shape[1]
    ncoef = nint + 3
    inv_h = nint / (a1 - a0)
    ata = np.empty((ncoef, 4))
    aty = np.empty(ncoef)
    chol = np.empty((ncoef, 4))
    coef = np.zeros(ncoef)
    prev = np.zeros(ncoef)
    have_prev = False
    b = np.empty(4)
    nrow = row1 - row0 + 1
    use = np.empty(nrow, dtype=np.bool_)
    wgt = np.empty(nrow)
    for x in range(nx):
        ok = False
        for it in range(2):
            ata[:, :] = 0.0
            aty[:] = 0.0
            npts = 0
            for y in range(row0, row1 + 1):
                k = y - row0
                if it == 0:
                    a = alpha[y, x]
                    use[k] = regions[y, x] == rid and np.isfinite(flux[y, x]) and np.isfinite(a)
                    if use[k]:
                        wgt[k] = _weight(a, band_a0, band_step, wbin)
                        use[k] = wgt[k] > 0
                if use[k]:
                    i = basis(alpha[y, x], a0, inv_h, nint, b)
                    accumulate(ata, aty, i, b, flux[y, x], wgt[k])
                    npts += 1
            if npts < ncoef + 2:
                ok = False
                break
            dmax = 0.0
            for i in range(ncoef):
                dmax = max(dmax, ata[i, 0])
            ok = solve_banded(ata, pen, PENALTY * dmax, aty, chol, coef)
            if not ok or it == 1:
                break
            # rejection: residuals beyond REJECT_SIGMA rms
            ss = 0.0
            for y in range(row0, row1 + 1):
                if use[y - row0]:
                    r = flux[y, x] - evaluate(alpha[y, x], a0, inv_h, nint, coef, b)
                    ss += r * r
            lim = REJECT_SIGMA * np.sqrt(ss / npts)
            nrej = 0
            for y in range(row0, row1 + 1):
                if use[y - row0]:
                    r = flux[y, x] - evaluate(alpha[y, x], a0, inv_h, nint, coef, b)
                    if abs(r) > lim:
                        use[y - row0] = False
                        nrej += 1
            if nrej == 0:
                break
        if ok:
            for i in range(ncoef):
                prev[i] = coef[i]
            have_prev = True
        elif have_prev:
            for i in range(ncoef):
                coef[i] = prev[i]
        else:
            continue  # no background for this column (stays 0)
        for y in range(row0, row1 + 1):
            if regions[y, x] == rid and np.isfinite(alpha[y, x]):
                bg_native[y, x] = evaluate(alpha[y, x], a0, inv_h, nint, coef, b)
        for j in range(j0, j1):
            r = near[j]
            if regions[r, x] == rid and np.isfinite(alpha_os[j, x]):
                bg_os[j, x] = evaluate(alpha_os[j, x], a0, inv_h, nint, coef, b)


def background_regions(band, geometry, min_side_rows=MIN_SIDE_ROWS):
    """
    Regions whose band leaves native rows outside it on both sides.

    Parameters
    ----------
    band : BandTable
        Compact-source bands (`atm_step.core.combine.compact_source_band`).
    geometry : RegionGeometry
        Geometry of the fitted regions (same order as ``band.ids``).
    min_side_rows : int
        Rows required outside the band below and above it.

    Returns
    -------
    ndarray of bool, shape (nreg,)
    """
    out = np.zeros(band.ids.size, dtype=bool)
    for k in range(band.ids.size):
        if band.whole[k] or band.rows[k] <= 0:
            continue
        bins = np.flatnonzero(band.inband[k])
        if bins.size == 0:
            continue
        lo = band.a0[k] + bins[0] * band.step[k]
        hi = band.a0[k] + (bins[-1] + 1) * band.step[k]
        need = min_side_rows * geometry.dalpha[k]
        out[k] = (lo - geometry.alpha_min[k] >= need) and (geometry.alpha_max[k] - hi >= need)
    return out


def extended_background(flux, alpha, regions, alpha_os, near, band, geometry, rows_per_interval):
    """
    Smooth model of the emission outside each region's compact-source band.

    Parameters
    ----------
    flux : ndarray of float64, shape (ny, nx)
        Image (negative offset removed), dispersion along x.
    alpha : ndarray of float64, shape (ny, nx)
        Along-slice coordinate, NaN outside regions.
    regions : ndarray of int64, shape (ny, nx)
    alpha_os : ndarray of float64, shape (ny_os, nx)
        Along-slice coordinate of the oversampled pixels.
    near : ndarray of int64, shape (ny_os,)
        Nearest native row of each oversampled row (non-decreasing).
    band : BandTable
        Compact-source bands of the fitted regions.
    geometry : RegionGeometry
        Geometry of the same regions, in the same order.
    rows_per_interval : float
        Native rows per knot interval of the background spline (at least 2 intervals).

    Returns
    -------
    ids : ndarray of int64
        Regions given a background model (see `background_regions`).
    bg_native : ndarray of float64, shape (ny, nx)
        Background at the native pixels of those regions, 0 elsewhere.
    bg_os : ndarray of float64, shape (ny_os, nx)
        The same at the oversampled pixels.

    Notes
    -----
    Not in the paper: see this module's docstring for why and how.
    """
    ny, nx = flux.shape
    bg_native = np.zeros((ny, nx))
    bg_os = np.zeros(alpha_os.shape) if alpha_os is not alpha else bg_native
    sel = background_regions(band, geometry)
    ids = band.ids[sel].astype(np.int64)
    for k in np.flatnonzero(sel):
        a0, a1 = float(geometry.alpha_min[k]), float(geometry.alpha_max[k])
        da = float(geometry.dalpha[k])
        # knot range half a row beyond the outer pixel centres, as the spline model's
        a0, a1 = a0 - 0.5 * da, a1 + 0.5 * da
        nint = max(2, int(round((a1 - a0) / da / rows_per_interval)))
        pen = difference_penalty(nint + 3, 2)
        row0, row1 = int(geometry.row0[k]), int(geometry.row1[k])
        j0 = int(np.searchsorted(near, row0, side="left"))
        j1 = int(np.searchsorted(near, row1, side="right"))
        _fit_background(flux, alpha, regions, int(band.ids[k]), row0, row1, a0, a1, nint,
                        float(band.a0[k]), float(band.step[k]),
                        _bin_weights(band.inband[k], float(band.step[k]), da, TAPER_ROWS),
                        pen, alpha_os, near, j0, j1, bg_native, bg_os)
    # keep the regions where the extended emission is a substantial part of the flux
    keep = np.ones(ids.size, dtype=bool)
    for n, rid in enumerate(ids.tolist()):
        inside = regions == rid
        total = np.where(inside & np.isfinite(flux), flux, 0.0).sum(axis=0)
        bsum = np.where(inside & np.isfinite(flux), bg_native, 0.0).sum(axis=0)
        good = total > 0
        share = np.median(bsum[good] / total[good]) if good.any() else 0.0
        if not share >= MIN_SHARE:
            keep[n] = False
            bg_native[inside] = 0.0
            if bg_os is not bg_native:
                bg_os[inside[near]] = 0.0
    log.debug("Extended-emission background modelled under the band of %d regions", keep.sum())
    return ids[keep], bg_native, bg_os
