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
Per region whose compact-source band (`atm_step.core.combine.compact_source_band`) is
one block leaving native rows outside it on both sides: a smooth model ``B(alpha)`` of
the emission *outside* the band, a cubic B-spline with one knot interval per
``background_rows`` native rows and a light second-difference penalty, so that it
bridges the band smoothly. Pixels enter its fit with a weight rising from 0 at the
band's edge to 1 two rows away (so that they drift in and out smoothly as the trace
tilts), with one pass of 4-sigma rejection. Its *shape* along the slice is the mean
over the ``2 window + 1`` columns of the trace fit's window of each column's
normalised fit; each column then fits only its amplitude, so that little of the pixel
noise enters. The trace model is fitted again to ``flux - B``, whose profile is the
compact source's alone, and the spline model becomes ``c S(alpha) + B(alpha)``; the
residual and linear models, the band and the combination are unchanged
(``_refit_without_background`` in `atm_step.core.api`).

When
----
Only where it is needed and safe: ``B`` must hold at least ``MIN_SHARE`` of the
region's flux (median over columns), the compact source left must have a per-column
signal-to-noise ratio of at least ``MIN_COMPACT_SNR`` (pixel noise estimated from
differences between neighbouring columns), and the refit must model the band's pixels
at least as well as the first fit (rms of the residuals). Otherwise the first fit is
kept. The validation (docs/validation.md) shows the gain on a star on a line-emitting
nebula at every PSF width, and where the refit is kept but does not help.
"""

import logging

import numba
import numpy as np

from atm_step.core.bspline import accumulate, basis, difference_penalty, evaluate, solve_banded
from atm_step.core.jit import HELPER

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
#: ... and where the compact source left after removing the background has at least
#: this signal-to-noise ratio per column (its sum over the pixel noise times the square
#: root of the pixel count, median over columns): otherwise the image minus the
#: background is mostly noise, and its normalised profile (divided by a sum near zero)
#: cannot be fitted
MIN_COMPACT_SNR = 25.0
#: ... and whose band covers at most this fraction of its rows (under a wider band the
#: background is too poorly anchored)
MAX_BAND_FRACTION = 0.4
#: a region needs at least this many native rows outside its band on each side
MIN_SIDE_ROWS = 3


@numba.njit(**HELPER)  # called from `_fit_columns` only
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
def _fit_columns(
    flux, alpha, regions, rid, row0, row1, a0, a1, nint, band_a0, band_step, wbin, pen,
    shape, coefs, ok, ata, aty, chol, coef, b, use, wgt,
):  # fmt: skip
    # per column: weighted least squares of the pixels outside the band, one pass of
    # rejection. With ``shape`` empty: a P-spline with free coefficients; otherwise
    # one amplitude times the spline with coefficients shape[x]. Writes coefs[x], ok[x].
    # ata .. wgt: work arrays (ncoef x 4, ncoef, ncoef x 4, ncoef, 4, rows, rows)
    nx = flux.shape[1]
    ncoef = nint + 3
    free = shape.shape[0] == 0
    inv_h = nint / (a1 - a0)
    for x in range(nx):
        ok[x] = False
        for it in range(2):
            npts = 0
            if free:
                for i in range(ncoef):
                    aty[i] = 0.0
                    for d in range(4):
                        ata[i, d] = 0.0
            smm = 0.0
            smd = 0.0
            for y in range(row0, row1 + 1):
                k = y - row0
                if it == 0:
                    a = alpha[y, x]
                    use[k] = regions[y, x] == rid and np.isfinite(flux[y, x]) and np.isfinite(a)
                    if use[k]:
                        wgt[k] = _weight(a, band_a0, band_step, wbin)
                        use[k] = wgt[k] > 0
                if use[k]:
                    npts += 1
                    if free:
                        i = basis(alpha[y, x], a0, inv_h, nint, b)
                        accumulate(ata, aty, i, b, flux[y, x], wgt[k])
                    else:
                        m = evaluate(alpha[y, x], a0, inv_h, nint, shape[x], b)
                        smm += wgt[k] * m * m
                        smd += wgt[k] * m * flux[y, x]
            if npts < (ncoef + 2 if free else 3):
                ok[x] = False
                break
            if free:
                dmax = 0.0
                for i in range(ncoef):
                    dmax = max(dmax, ata[i, 0])
                ok[x] = solve_banded(ata, pen, PENALTY * dmax, aty, chol, coef)
            else:
                ok[x] = smm > 0
                if ok[x]:
                    amp = smd / smm
                    for i in range(ncoef):
                        coef[i] = amp * shape[x, i]
            if not ok[x] or it == 1:
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
        if ok[x]:
            for i in range(ncoef):
                coefs[x, i] = coef[i]


@numba.njit(cache=True, nogil=True)
def _evaluate_columns(alpha, regions, rid, row0, row1, a0, a1, nint, coefs, ok, alpha_os, near,
                      j0, j1, bg_native, bg_os, b):
    # the background of each column (a column without a fit takes the previous one's);
    # b: work array of 4
    nx = alpha.shape[1]
    inv_h = nint / (a1 - a0)
    last = -1
    for x in range(nx):
        if ok[x]:
            last = x
        if last < 0:
            continue
        c = coefs[last]
        for y in range(row0, row1 + 1):
            if regions[y, x] == rid and np.isfinite(alpha[y, x]):
                bg_native[y, x] = evaluate(alpha[y, x], a0, inv_h, nint, c, b)
        for j in range(j0, j1):
            r = near[j]
            if regions[r, x] == rid and np.isfinite(alpha_os[j, x]):
                bg_os[j, x] = evaluate(alpha_os[j, x], a0, inv_h, nint, c, b)


def _window_shape(coefs, ok, window):
    """Mean over the columns ``x - window .. x + window`` with a fit of each column's
    coefficients divided by their norm: the background's shape along the slice, with
    the noise of ~``2 window + 1`` columns averaged out. Shape (nx, ncoef)."""
    norm = np.sqrt((coefs**2).sum(axis=1))
    sign = np.where(coefs.sum(axis=1) < 0, -1.0, 1.0)
    good = ok & (norm > 0)
    unit = np.where(good[:, None], coefs / np.where(good, norm * sign, 1.0)[:, None], 0.0)
    csum = np.vstack([np.zeros((1, coefs.shape[1])), np.cumsum(unit, axis=0)])
    ccnt = np.concatenate([[0], np.cumsum(good)])
    nx = coefs.shape[0]
    lo = np.clip(np.arange(nx) - window, 0, nx)
    hi = np.clip(np.arange(nx) + window + 1, 0, nx)
    cnt = (ccnt[hi] - ccnt[lo]).astype(np.float64)
    shape = (csum[hi] - csum[lo]) / np.maximum(cnt, 1.0)[:, None]
    return np.ascontiguousarray(shape), cnt > 0


def _share_and_snr(flux, bg, inside):
    """
    The background's share of a region's flux and the compact source's per-column SNR.

    Parameters
    ----------
    flux, bg : ndarray of float64, shape (nrow, nx)
        The rows holding the region: image and background model.
    inside : ndarray of bool, shape (nrow, nx)
        The region's pixels.

    Returns
    -------
    share : float
        Median over columns of the background's sum over the image's.
    snr : float
        Median over columns of the sum of ``flux - bg`` over the pixel noise times the
        square root of the pixel count; the pixel noise is the robust scatter of
        differences between neighbouring columns over sqrt(2).
    """
    good = inside & np.isfinite(flux)
    total = np.where(good, flux, 0.0).sum(axis=0)
    bsum = np.where(good, bg, 0.0).sum(axis=0)
    npix = good.sum(axis=0)
    cols = (total > 0) & (npix > 0)
    if not cols.any():
        return 0.0, 0.0
    share = float(np.median(bsum[cols] / total[cols]))
    diff = np.diff(np.where(good, flux, np.nan), axis=1)[good[:, 1:] & good[:, :-1]]
    sigma = 1.4826 * np.median(np.abs(diff - np.median(diff))) / np.sqrt(2.0) if diff.size else 0.0
    compact = float(np.median((total - bsum)[cols] / np.sqrt(npix[cols])))
    return share, (compact / sigma if sigma > 0 else np.inf)


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
        True where the band is one block of bins covering at most
        ``MAX_BAND_FRACTION`` of the region's rows, with ``min_side_rows`` rows outside
        it on both sides.
    """
    out = np.zeros(band.ids.size, dtype=bool)
    for k in range(band.ids.size):
        if band.whole[k] or band.rows[k] <= 0:
            continue
        bins = np.flatnonzero(band.inband[k])
        if bins.size == 0 or bins[-1] - bins[0] + 1 != bins.size:
            continue  # no band, or several: the background between them is not anchored
        lo = band.a0[k] + bins[0] * band.step[k]
        hi = band.a0[k] + (bins[-1] + 1) * band.step[k]
        need = min_side_rows * geometry.dalpha[k]
        span_rows = (geometry.alpha_max[k] - geometry.alpha_min[k]) / geometry.dalpha[k] + 1
        out[k] = ((lo - geometry.alpha_min[k] >= need) and (geometry.alpha_max[k] - hi >= need)
                  and band.rows[k] <= MAX_BAND_FRACTION * span_rows)
    return out


def extended_background(flux, alpha, regions, alpha_os, near, band, geometry, rows_per_interval,
                        window=50):
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
    window : int
        Half-width, in columns, of the window over which the background's shape along
        the slice is averaged; each column then fits only its amplitude.

    Returns
    -------
    ids : ndarray of int64
        Regions given a background model: those of `background_regions` that pass
        the ``MIN_SHARE`` and ``MIN_COMPACT_SNR`` gates.
    bg_native : ndarray of float64, shape (ny, nx)
        Background at the native pixels of those regions, in the units of ``flux``
        (e.g. MJy/sr), 0 elsewhere.
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
    keep = np.ones(ids.size, dtype=bool)
    for n, k in enumerate(np.flatnonzero(sel)):
        a0, a1 = float(geometry.alpha_min[k]), float(geometry.alpha_max[k])
        da = float(geometry.dalpha[k])
        # knot range half a row beyond the outer pixel centres, as the spline model's
        a0, a1 = a0 - 0.5 * da, a1 + 0.5 * da
        nint = max(2, int(round((a1 - a0) / da / rows_per_interval)))
        pen = difference_penalty(nint + 3, 2)
        row0, row1 = int(geometry.row0[k]), int(geometry.row1[k])
        j0 = int(np.searchsorted(near, row0, side="left"))
        j1 = int(np.searchsorted(near, row1, side="right"))
        rid = int(band.ids[k])
        wbin = _bin_weights(band.inband[k], float(band.step[k]), da, TAPER_ROWS)
        ncoef = nint + 3
        coefs = np.zeros((nx, ncoef))
        ok = np.zeros(nx, dtype=np.bool_)
        fargs = (flux, alpha, regions, rid, row0, row1, a0, a1, nint, float(band.a0[k]),
                 float(band.step[k]), wbin, pen)
        nrow = row1 - row0 + 1
        work = (np.empty((ncoef, 4)), np.empty(ncoef), np.empty((ncoef, 4)), np.empty(ncoef),
                np.empty(4), np.empty(nrow, dtype=np.bool_), np.empty(nrow))
        _fit_columns(*fargs, np.zeros((0, ncoef)), coefs, ok, *work)
        shape, has = _window_shape(coefs, ok, window)
        _fit_columns(*fargs, shape, coefs, ok, *work)
        ok &= has
        _evaluate_columns(alpha, regions, rid, row0, row1, a0, a1, nint, coefs, ok, alpha_os, near,
                          j0, j1, bg_native, bg_os, work[4])
        # keep it where the extended emission is a substantial part of the flux and the
        # compact source left after removing it is well measured
        rows = slice(row0, row1 + 1)
        inside = regions[rows] == rid
        share, snr = _share_and_snr(flux[rows], bg_native[rows], inside)
        log.debug("region %d: background share %.3f, compact SNR %.1f", rid, share, snr)
        if not (share >= MIN_SHARE and snr >= MIN_COMPACT_SNR):
            keep[n] = False
            bg_native[rows][inside] = 0.0
            if bg_os is not bg_native:
                bg_os[j0:j1][inside[near[j0:j1] - row0]] = 0.0
    log.debug("Extended-emission background modelled under the band of %d regions", keep.sum())
    return ids[keep], bg_native, bg_os
