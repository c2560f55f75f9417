"""Residual model and the combined image (paper sections II.4 and II.5).

The compact-source band of a region is where the normalised spline model is steep:
for every column, the change of the normalised model between vertically adjacent
native pixels is compared with ``slope_limit``; steep pairs are histogrammed in alpha
(bins of half a native row, at the pair's mid-point). Bins holding at least 20% of
the fullest bin's count, widened by ``pad`` native rows on each side, form the band.
Because the band is defined in alpha, which is fixed on the sky, it is the same for
every column of the region (paper II.5, footnote 6). jwst keeps only the histogram's
local peaks (``scipy.signal.find_peaks``) and pads around those; keeping every bin
above the level instead also covers a broad or double-peaked core. Two sources
closer than about 1.5 PSF widths have a plateau between their peaks that is not
steep, and the padded band can keep a hole there; such a hole is filled where the
region's mean normalised model stays above ``HOLE_LEVEL`` (10%) of its peak across
it (this package). Left open, the linear model would fill the plateau between two
stretches of the trace model: the switch between the models sits in the core, and
the column's flux is no longer kept (+0.9% on two stars 0.33" apart at FWHM 2.5
native pixels; the gap between separate sources, where the profile falls to its
wings, stays out of the band). As in jwst, fewer than 50 steep pairs in a region
give no band at all.

A pair of pixels is steep where the normalised model changes by more than
``slope_limit`` (the paper's test) *or* by more than half the larger of the two values
and more than ``0.3 slope_limit`` (this package). The paper's test is absolute in units
of the column's sum, so a faint star beside a bright one, or on bright extended
emission, whose share of the sum is small, never passes it and is linearly
interpolated with its full artifact; the relative test finds it (and the wings of a
sharp PSF).
"""

from dataclasses import dataclass

import numba
import numpy as np

from atm_step.core.jit import HELPER as _HELPER
from atm_step.core.linear import in_row_chunks, interpolate_pixel, lerp, row_neighbours

__all__ = ["CombinedModels", "combine_models"]

BAND_LEVEL = 0.2
BAND_MIN_POINTS = 50
#: a pair is also steep where the model changes by more than this fraction of the larger
#: of the two values (a faint source beside a bright one, or on a bright background) ...
REL_SLOPE = 0.5
#: ... and by more than this fraction of ``slope_limit`` (not in flat, faint wings, nor
#: from the noise of a faint region's model)
REL_FLOOR = 0.3
#: a hole between two stretches of the band is filled where the region's mean normalised
#: profile stays above this fraction of its peak across it (the plateau of a blended core)
HOLE_LEVEL = 0.1
#: scale the oversampled spline model inside each column's band to the native model's
#: flux (see `conserve_band_flux`)
CONSERVE_BAND_FLUX = True
#: ... unless that would change it by more than this factor, or the native model's
#: samples cancel (a faint column whose sums are mostly noise)
MAX_FLUX_CORRECTION = 1.1


@numba.njit(cache=True)
def _steep_histogram(model, alpha, regions, rid, row0, row1, a0, step, nbins, limit, rel_slope,
                     hist):
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
            dm = abs(m1 - m0)
            if dm > limit or (dm > REL_FLOOR * limit and dm > rel_slope * max(abs(m0), abs(m1))):
                amid = 0.5 * (alpha[y, x] + alpha[y + 1, x])
                k = min(max(int((amid - a0) / step), 0), nbins - 1)
                hist[k] += 1
                total += 1
    return total


@numba.njit(cache=True)
def _mean_profile(model, alpha, regions, rid, row0, row1, a0, step, nbins, sums, counts):
    # mean normalised model of the region in each alpha bin (of `_steep_histogram`)
    nx = model.shape[1]
    for x in range(nx):
        for y in range(row0, row1 + 1):
            m = model[y, x]
            if regions[y, x] != rid or not (np.isfinite(m) and np.isfinite(alpha[y, x])):
                continue
            k = min(max(int((alpha[y, x] - a0) / step), 0), nbins - 1)
            sums[k] += m
            counts[k] += 1


def mean_profile(model, alpha, regions, rid, row0, row1, a0, step, nbins):
    """
    A region's normalised model averaged over its columns in bins of alpha.

    Parameters
    ----------
    model : ndarray of float64, shape (ny, nx)
        Normalised model at the native pixels (`TraceFit.model_native`; NaN where none).
    alpha : ndarray of float64, shape (ny, nx)
        Along-slice coordinate (e.g. arcsec).
    regions : ndarray of int, shape (ny, nx)
        Region map.
    rid, row0, row1 : int
        Region id and its first and last native rows.
    a0, step : float
        First bin edge and bin width (alpha units); pixels outside go to the end bins.
    nbins : int
        Number of bins.

    Returns
    -------
    ndarray of float64, shape (nbins,)
        Mean model per bin; NaN where a bin holds no pixel.

    Notes
    -----
    Used for the compact-source band's holes (paper II.5) and the split point of
    `atm_step.core.two_profile`.
    """
    sums = np.zeros(int(nbins))
    counts = np.zeros(int(nbins), dtype=np.int64)
    _mean_profile(model, alpha, regions, int(rid), int(row0), int(row1), float(a0), float(step),
                  int(nbins), sums, counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def _fill_core_holes(band, profile, level):
    """
    Fill the holes of ``band`` (bool, per alpha bin) between its first and last bin
    where ``profile`` (mean normalised model per bin, NaN where empty) stays at or above
    ``level`` times its peak; in place. Returns the number of bins filled.
    """
    inside = np.flatnonzero(band)
    if inside.size == 0:
        return 0
    peak = np.nanmax(profile)
    filled = 0
    start = None
    for i in range(inside[0], inside[-1] + 1):
        if not band[i] and start is None:
            start = i
        elif band[i] and start is not None:
            hole = profile[start:i]
            if np.all(np.isnan(hole) | (hole >= level * peak)) and not np.all(np.isnan(hole)):
                band[start:i] = True
                filled += i - start
            start = None
    return filled


# no explicit signature: compiled with the kernels that call it (by the compile helper
# on a first run, `atm_step.core.precompile`), not at import; they pass variables only
@numba.njit(**_HELPER)
def band_bin(a, a0, step, nbins):
    """
    The compact-source band's alpha bin of a pixel, or -1 outside the bins.

    The one binning of the band: the combination and the band's flux factor (each
    oversampled pixel) and `band_pixels` (each native pixel) all test
    ``whole[k] or inband[k, band_bin(...)]``, so that they act on the same pixels.
    Scalars only (see `atm_step.core.linear.lerp`).

    Parameters
    ----------
    a : float
        Along-slice coordinate of the pixel (the unit of the region's alpha, e.g.
        arcsec); NaN gives -1.
    a0, step : float
        The region's first bin edge and bin width (`BandTable.a0`, `BandTable.step`:
        half a native row), same unit.
    nbins : int
        Number of bins (`BandTable.inband`'s second axis).

    Returns
    -------
    int
        ``floor((a - a0) / step)`` if it lies in ``0 .. nbins - 1``, else -1.

    Notes
    -----
    Source: paper II.5 (the band is defined in alpha, the same for every column).
    """
    if not np.isfinite(a):
        return -1
    b = np.floor((a - a0) / step)
    if b < 0 or b >= nbins:
        return -1
    return int(b)


@numba.njit(cache=True, nogil=True)
def _combine_kernel(
    flux, resid_native, regions, y_os, near, spline_os, alpha_os, lookup, whole, inband,
    band_a0, band_step, psf_optimal, sigmas, squared, inflation, keep_linear,
    out_linear, out_resid, out_comb, out_trace, out_band, out_est, out_sigmas, j0, j1,
):  # fmt: skip
    # One pass over the oversampled rows j0..j1-1: each pixel's native neighbours are
    # found once and shared by the flux, the residual and every error/variance image
    # (`lerp` where both are in the region and finite, else the full search).
    # ``out_linear`` is written only with ``keep_linear``; ``out_trace`` may be
    # ``spline_os`` itself (each pixel is read before it is written).
    ny, nx = flux.shape
    nbins = inband.shape[1]
    n_sig = sigmas.shape[0]
    off = np.bool_(False)  # typed, not literal: one compiled `interpolate_pixel` for all
    for j in range(j0, j1):
        r = near[j]
        t = y_os[j]
        lo, hi, w, inside = row_neighbours(t, ny)
        for x in range(nx):
            reg = regions[r, x]
            if reg <= 0:
                if keep_linear:
                    out_linear[j, x] = np.nan
                out_resid[j, x] = np.nan
                out_comb[j, x] = np.nan
                out_trace[j, x] = np.nan
                out_band[j, x] = False
                out_est[j, x] = False
                for i in range(n_sig):
                    out_sigmas[i, j, x] = np.nan
                continue
            ok = inside and regions[lo, x] == reg and regions[hi, x] == reg
            lin = np.nan  # a NaN native pixel stays NaN in the linear model
            if np.isfinite(flux[r, x]):
                lin = lerp(flux[lo, x], flux[hi, x], w) if ok else np.nan
                if np.isnan(lin):
                    lin = interpolate_pixel(flux, regions, r, x, t, off, off)
            s = spline_os[j, x]
            res = np.nan
            inb = False
            if np.isfinite(s):
                res = lerp(resid_native[lo, x], resid_native[hi, x], w) if ok else np.nan
                if np.isnan(res):
                    res = interpolate_pixel(resid_native, regions, r, x, t, off, off)
                k = lookup[reg] if reg < lookup.shape[0] else -1
                if k >= 0:
                    inb = whole[k]
                    if not inb:
                        b = band_bin(alpha_os[j, x], band_a0[k], band_step[k], nbins)
                        inb = b >= 0 and inband[k, b]
            if keep_linear:
                out_linear[j, x] = lin
            out_resid[j, x] = res
            if inb:
                comb = s
                if not psf_optimal and np.isfinite(res):
                    comb += res
                out_trace[j, x] = s
            else:
                comb = lin
                out_trace[j, x] = np.nan
            out_comb[j, x] = comb
            out_band[j, x] = inb
            est = np.isfinite(comb) and not np.isfinite(flux[r, x])
            out_est[j, x] = est
            # errors (paper IV): interpolated across NaN pixels, NaN where the nearest
            # native error is NaN unless the model filled the pixel; inflated
            for i in range(n_sig):
                v = np.nan
                if est or np.isfinite(sigmas[i, r, x]):
                    v = lerp(sigmas[i, lo, x], sigmas[i, hi, x], w) if ok else np.nan
                    if np.isnan(v):
                        v = interpolate_pixel(sigmas[i], regions, r, x, t, off, off)
                    v = v * inflation
                    if squared[i]:
                        v = v * v
                out_sigmas[i, j, x] = v


@dataclass
class CombinedModels:
    """
    Oversampled models and their combination; arrays of shape (ny_os, nx).

    ``band_rows`` maps region id to the band width in native rows. ``spline``,
    ``linear`` and ``residual`` are None when `combine_models` was asked for no
    intermediate images.
    """

    flux: np.ndarray
    trace: np.ndarray
    spline: np.ndarray | None
    linear: np.ndarray | None
    residual: np.ndarray | None
    band: np.ndarray
    estimated: np.ndarray
    band_rows: dict
    sigmas: np.ndarray | None = None

    def band_rows_for(self, ids):
        """Band widths (native rows) aligned to ``ids``; 0 for regions without a band."""
        return np.array([self.band_rows.get(int(r), 0.0) for r in ids], dtype=np.float64)


def compact_source_band(fit, regions, alpha, slope_limit, pad, rel_slope=REL_SLOPE,
                        hole_level=None):
    """
    The compact-source band of each fitted region, as alpha bins (paper II.5).

    Parameters
    ----------
    fit : TraceFit
        Spline models (normalised model at native pixels, region geometry).
    regions : ndarray of int64, shape (ny, nx)
    alpha : ndarray of float64, shape (ny, nx)
    slope_limit : float
        Limit on the normalised model's change per native pixel; ``<= 0`` makes the
        whole region the band.
    pad : float
        Band padding in native pixels.
    rel_slope : float, optional
        The relative steepness test (see the module docstring): a pair is also steep
        where the model changes by more than this fraction of the larger value (and by
        more than ``REL_FLOOR * slope_limit``); ``inf`` switches it off (the paper).
    hole_level : float, optional
        A hole left between two stretches of the padded band is filled where the
        region's mean normalised model stays at or above this fraction of its peak
        across the hole (a blended core, see the module docstring); default
        `HOLE_LEVEL`; ``inf`` leaves every hole.

    Returns
    -------
    BandTable
        Per fitted region: whether the whole region is the band, else which alpha bins
        (half a native row wide, from ``a0``) are in it; and its width in native rows.
    """
    hole_level = HOLE_LEVEL if hole_level is None else float(hole_level)
    geom = fit.geometry
    nreg = geom.ids.size
    steps = geom.dalpha / 2.0
    a0 = geom.alpha_min - 0.5 * geom.dalpha
    nbins = (np.ceil((geom.alpha_max + 0.5 * geom.dalpha - a0) / steps) + 1).astype(np.int64)
    inband = np.zeros((nreg, int(nbins.max(initial=1))), dtype=bool)
    whole = np.zeros(nreg, dtype=bool)
    rows = np.zeros(nreg)
    for k, rid in enumerate(geom.ids.tolist()):
        if slope_limit <= 0:
            whole[k] = True
            rows[k] = (geom.alpha_max[k] - geom.alpha_min[k]) / geom.dalpha[k] + 1
            continue
        hist = np.zeros(nbins[k], dtype=np.int64)
        total = _steep_histogram(
            fit.model_native, alpha, regions, rid, geom.row0[k], geom.row1[k],
            a0[k], steps[k], nbins[k], float(slope_limit), float(rel_slope), hist,
        )  # fmt: skip
        if total < BAND_MIN_POINTS:
            continue
        steep = hist >= BAND_LEVEL * hist.max()
        widen = int(round(2 * pad))  # pad native rows = 2 * pad bins each side
        band = steep.copy()
        for s in range(1, widen + 1):
            band[s:] |= steep[:-s]
            band[:-s] |= steep[s:]
        inner = np.flatnonzero(band)
        if inner.size and not band[inner[0] : inner[-1] + 1].all():
            # a hole between stretches: filled where it is the plateau of a blended core
            profile = mean_profile(fit.model_native, alpha, regions, rid, geom.row0[k],
                                   geom.row1[k], a0[k], steps[k], nbins[k])
            _fill_core_holes(band, profile, hole_level)
        inband[k, : nbins[k]] = band
        rows[k] = band.sum() / 2.0
    return BandTable(geom.ids, whole, inband, a0, steps, rows)


@dataclass
class BandTable:
    """Compact-source bands of the fitted regions (see `compact_source_band`)."""

    ids: np.ndarray
    whole: np.ndarray
    inband: np.ndarray
    a0: np.ndarray
    step: np.ndarray
    rows: np.ndarray


@numba.njit(cache=True, nogil=True)
def _band_flux_kernel(spline_native, spline_os, regions, alpha_os, near, lookup, whole, inband, a0,
                      step, oversample, max_corr, sum_nat, sum_abs, sum_os):
    # per column and region: scale the oversampled spline model of the band's pixels so
    # that it sums to the native model of their parent pixels. The band's pixels are
    # those the combination puts in the band (its test, with `band_bin`). Row by row
    # (contiguous reads), with the sums of every (region, column) kept side by side:
    # each sum still adds its samples in row order.
    nx = spline_native.shape[1]
    nos = spline_os.shape[0]
    nbins = inband.shape[1]
    sum_nat[:, :] = 0.0
    sum_abs[:, :] = 0.0
    sum_os[:, :] = 0.0
    # each oversampled sample with a model is paired with 1/N of its parent's
    # native model, so that both sums cover the same pixels: pass 0 sums, pass 1 scales
    for pass_ in range(2):
        for j in range(nos):
            r = near[j]
            for x in range(nx):
                reg = regions[r, x]
                if reg <= 0:
                    continue
                v = spline_os[j, x]
                p = spline_native[r, x]
                if not (np.isfinite(p) and np.isfinite(v)):
                    continue
                k = lookup[reg] if reg < lookup.shape[0] else -1
                if k < 0:
                    continue
                if not whole[k]:
                    b = band_bin(alpha_os[j, x], a0[k], step[k], nbins)
                    if b < 0 or not inband[k, b]:
                        continue
                if pass_ == 0:
                    sum_nat[reg, x] += p / oversample
                    sum_abs[reg, x] += abs(p) / oversample
                    sum_os[reg, x] += v / oversample
                    continue
                a, o = sum_nat[reg, x], sum_os[reg, x]
                # not where the native model's samples cancel (a faint column, mostly noise)
                if not (a > 0.9 * sum_abs[reg, x] and o > 0):
                    continue
                f = a / o
                if 1.0 / max_corr < f < max_corr:
                    spline_os[j, x] = v * f


@numba.njit(cache=True, nogil=True)
def _band_pixels_kernel(regions, alpha, lookup, whole, rows, inband, a0, step, out):
    nbins = inband.shape[1]
    ny, nx = regions.shape
    for y in range(ny):
        for x in range(nx):
            reg = regions[y, x]
            k = lookup[reg] if 0 < reg < lookup.shape[0] else -1
            inb = False
            if k >= 0:
                inb = whole[k]
                if not inb and rows[k] > 0:
                    b = band_bin(alpha[y, x], a0[k], step[k], nbins)
                    inb = b >= 0 and inband[k, b]
            out[y, x] = inb


def band_pixels(band, regions, alpha):
    """
    Native pixels whose alpha falls in their region's compact-source band.

    Parameters
    ----------
    band : BandTable
    regions : ndarray of int64, shape (ny, nx)
    alpha : ndarray of float64, shape (ny, nx)

    Returns
    -------
    ndarray of bool, shape (ny, nx)
        True for the native pixels whose alpha bin is in the band (every pixel of a
        region whose band is the whole region).

    Notes
    -----
    The same bins as the oversampled pixels' test in the combination (paper II.5),
    applied to the native pixel centres.
    """
    regions = np.ascontiguousarray(regions, dtype=np.int64)
    alpha = np.ascontiguousarray(alpha, dtype=np.float64)
    out = np.empty(regions.shape, dtype=bool)
    _band_pixels_kernel(regions, alpha, _band_lookup(band, regions), band.whole,
                        np.asarray(band.rows, dtype=np.float64), band.inband,
                        np.asarray(band.a0, dtype=np.float64),
                        np.asarray(band.step, dtype=np.float64), out)
    return out


def _band_lookup(band, regions):
    """Index into ``band``'s tables of each region id (-1: no band), length max id + 1."""
    lookup = np.full(int(regions.max(initial=0)) + 1, -1, dtype=np.int64)
    lookup[band.ids] = np.arange(band.ids.size)
    return lookup


def conserve_band_flux(fit, band, regions, alpha_os, near, oversample):
    """
    Scale the oversampled spline model inside each column's band to the native model's flux.

    The spline models the pixel-convolved profile, for which the ``N`` samples of a
    native pixel and the native sample give the same flux; a fitted spline's errors
    and noise below the pixel scale do not, and the difference (shared by the ~100
    columns of the fit's window) becomes a slow ripple in aperture spectra that grows
    their noise with ``N``. Per column and region, the oversampled pixels in the band
    (the pixels the combination takes from the model, `band_bin`) are multiplied by the
    one factor that makes them sum to ``1/N`` of their parent native pixels' model.
    Columns where that factor is beyond ``MAX_FLUX_CORRECTION`` either way, or where
    the native model's samples cancel, are left alone. Modifies ``fit.spline_os`` in
    place (not with ``N = 1``, where it is the native model itself).

    Parameters
    ----------
    fit : TraceFit
    band : BandTable
    regions : ndarray of int64, shape (ny, nx)
    alpha_os : ndarray of float64, shape (ny_os, nx)
        Along-slice coordinate of each oversampled pixel (what the band is tested on).
    near : ndarray of int64, shape (ny_os,)
        Nearest native row (the parent) of each oversampled row.
    oversample : float
        ``N``; nothing is done at ``N = 1``.

    Notes
    -----
    Not in the paper (whose oversampled model need not keep the column's flux); the
    measured effect on aperture noise is in docs/algorithm.md. In 0.1.0 the sums
    took the oversampled pixels whose *parent* lies in the band, which differ from the
    combination's at the band's edges; where an edge falls on bright pixels (a hole in
    a blended core, a faint source's band at low SNR) the column's flux then moved by
    up to 1% (docs/algorithm.md, "Compact-source band").
    """
    if oversample == 1.0 or fit.spline_os is fit.spline_native:
        return
    work = [np.empty((int(regions.max(initial=0)) + 1, regions.shape[1])) for _ in range(3)]
    _band_flux_kernel(fit.spline_native, fit.spline_os, regions,
                      np.ascontiguousarray(alpha_os, dtype=np.float64), near,
                      _band_lookup(band, regions), band.whole, band.inband,
                      np.asarray(band.a0, dtype=np.float64),
                      np.asarray(band.step, dtype=np.float64), float(oversample),
                      MAX_FLUX_CORRECTION, *work)  # fmt: skip


#: columns handled side by side by `_shrink_kernel`: the rows are swept in order, so
#: each cache line of the oversampled images serves this many columns
SHRINK_BLOCK = 512
#: band runs a column of a `_shrink_kernel` block keeps for its second, row-ordered
#: sweep; a column with more (many regions, or a band with many holes) spreads the
#: rest back at once, down the column (`_spread_back`)
SHRINK_RUNS = 64


@numba.njit(**_HELPER)
def _spread_back(comb, resid, trace, x, j0, j1, lost, n):
    # close one band run (rows j0..j1-1 of column x) at once: the residual flux the
    # weights removed is spread evenly over the run's finite residuals
    if n == 0:
        return
    back = lost / n
    for j in range(j0, j1):
        if not np.isfinite(resid[j, x]):
            continue
        resid[j, x] += back
        comb[j, x] = trace[j, x] + resid[j, x]


@numba.njit(**_HELPER)
def _close_run(comb, resid, trace, x, q, j0, j1, lost, n, runs, backs, nrun):
    # close one band run: keep it for the block's row-ordered second sweep
    # (`_spread_back_rows`), or, with the column's run list full, spread it back now
    if n == 0:
        return
    k = nrun[q]
    if k < runs.shape[1]:
        runs[q, k, 0] = j0
        runs[q, k, 1] = j1
        backs[q, k] = lost / n
        nrun[q] = k + 1
    else:
        _spread_back(comb, resid, trace, x, j0, j1, lost, n)


@numba.njit(**_HELPER)
def _spread_back_rows(comb, resid, trace, xb, xe, runs, backs, nrun, ptr):
    # the kept runs of columns xb..xe-1 spread back in one sweep along the rows
    # (contiguous reads; the same sums as `_spread_back`, run by run)
    j_lo = comb.shape[0]
    j_hi = 0
    for q in range(xe - xb):
        ptr[q] = 0
        if nrun[q] > 0:
            j_lo = min(j_lo, runs[q, 0, 0])
            j_hi = max(j_hi, runs[q, nrun[q] - 1, 1])
    for j in range(j_lo, j_hi):
        for x in range(xb, xe):
            q = x - xb
            k = ptr[q]
            if k >= nrun[q]:
                continue
            if j >= runs[q, k, 1]:  # runs of a column are ordered and disjoint
                k += 1
                ptr[q] = k
                if k >= nrun[q]:
                    continue
            if j < runs[q, k, 0] or not np.isfinite(resid[j, x]):
                continue
            resid[j, x] += backs[q, k]
            comb[j, x] = trace[j, x] + resid[j, x]


@numba.njit(cache=True, nogil=True)
def _shrink_kernel(comb, resid, trace, band, err, regions, y_os, near, k, x0, x1, start, rid,
                   lost, count, runs, backs, nrun, ptr):  # fmt: skip
    # A band run is the consecutive band pixels of one region in one column. The rows
    # are swept in order for SHRINK_BLOCK columns at a time (contiguous reads), each
    # column keeping its open run's start, region, removed flux and count; a run is
    # closed (`_close_run`) where the band or the region ends, and the removed flux
    # is spread back over it in a second sweep along the rows (`_spread_back_rows`).
    # Each run's sum adds its rows in order, as a column-by-column sweep would.
    # start, rid, lost, count, nrun, ptr: SHRINK_BLOCK per-column work values (ptr: the
    # run each column is at in the second sweep); runs, backs: the kept runs.
    ny_os = comb.shape[0]
    off = np.bool_(False)  # typed, not literal (see `_combine_kernel`)
    for xb in range(x0, x1, SHRINK_BLOCK):
        xe = min(xb + SHRINK_BLOCK, x1)
        for x in range(xb, xe):
            start[x - xb] = -1
            nrun[x - xb] = 0
        for j in range(ny_os):
            r = near[j]
            t = y_os[j]
            lo, hi, w, inside = row_neighbours(t, err.shape[0])
            for x in range(xb, xe):
                q = x - xb
                reg = regions[r, x]
                inb = band[j, x]
                if start[q] >= 0 and not (inb and reg == rid[q]):
                    _close_run(comb, resid, trace, x, q, start[q], j, lost[q], count[q],
                               runs, backs, nrun)  # fmt: skip
                    start[q] = -1
                if not inb:
                    continue
                if start[q] < 0:
                    start[q] = j
                    rid[q] = reg
                    lost[q] = 0.0
                    count[q] = 0
                v = resid[j, x]
                if not np.isfinite(v):
                    continue
                count[q] += 1
                e = np.nan
                if inside and reg > 0 and regions[lo, x] == reg and regions[hi, x] == reg:
                    e = lerp(err[lo, x], err[hi, x], w)
                if np.isnan(e):
                    e = interpolate_pixel(err, regions, r, x, t, off, off)
                e = k * e
                if np.isfinite(e) and e > 0.0:
                    g = v * v / (v * v + e * e)
                    lost[q] += (1.0 - g) * v
                    resid[j, x] = g * v
        for x in range(xb, xe):
            q = x - xb
            if start[q] >= 0:
                _close_run(comb, resid, trace, x, q, start[q], ny_os, lost[q], count[q],
                           runs, backs, nrun)  # fmt: skip
        # a residual is read (its weight) before its run closes, and a closed run is
        # not read again in the first sweep: spreading back after it changes nothing
        _spread_back_rows(comb, resid, trace, xb, xe, runs, backs, nrun, ptr)


def shrink_band_residual(parts, err, regions, y_os, near, residual_shrinkage):
    """
    Wiener-weight the residual model inside the compact-source band, keeping each
    band's flux per column.

    Parameters
    ----------
    parts : CombinedModels
        From `combine_models`; ``flux`` and ``residual`` are changed in place inside
        the band.
    err : ndarray of float64, shape (ny, nx)
        1-sigma errors of the image, MJy/sr (or the image's unit).
    regions : ndarray of int64, shape (ny, nx)
    y_os, near : ndarray, shape (ny_os,)
        Oversampled row coordinates and nearest native rows (`atm_step.core.grid`).
    residual_shrinkage : float
        ``k`` > 0 (`atm_step.core.FitParameters.residual_shrinkage`).

    Notes
    -----
    Not in the paper. Each oversampled residual ``r`` (the native residual
    interpolated, paper II.5) is weighted by ``r**2 / (r**2 + (k sigma)**2)``,
    ``sigma`` the error interpolated in the same way (before the error inflation of
    paper IV): structure well above the noise passes, residuals at the noise level,
    which the interpolation would copy into N oversampled rows, are damped. A Wiener
    weight is not linear, so on its own it would move flux where the residual has a
    mean (a faint source's band at low SNR: +0.3% aperture flux at peak SNR 100). The
    residual flux it removes from a band run (the consecutive band pixels of one
    region in one column) is therefore spread evenly over the run, so the run's
    flux is unchanged. (Spread along the trace model instead, it concentrates faint
    diffuse emission under a star onto the star.) Measured on the issue-9 grid, with
    its costs, in docs/algorithm.md; on in the NIRSpec IFU and MIRI MRS presets.
    """
    err = np.ascontiguousarray(err, dtype=np.float64)
    args = (parts.flux, parts.residual, parts.trace, parts.band, err, regions, y_os, near,
            float(residual_shrinkage))

    def run(x0, x1):  # each thread its own run state (SHRINK_BLOCK columns)
        _shrink_kernel(*args, x0, x1, np.empty(SHRINK_BLOCK, dtype=np.int64),
                       np.empty(SHRINK_BLOCK, dtype=np.int64), np.empty(SHRINK_BLOCK),
                       np.empty(SHRINK_BLOCK, dtype=np.int64),
                       np.empty((SHRINK_BLOCK, SHRINK_RUNS, 2), dtype=np.int64),
                       np.empty((SHRINK_BLOCK, SHRINK_RUNS)),
                       np.empty(SHRINK_BLOCK, dtype=np.int64),
                       np.empty(SHRINK_BLOCK, dtype=np.int64))

    in_row_chunks(parts.flux.shape[1], run)


def combine_models(
    flux, regions, alpha, alpha_os, y_os, near, fit, band, *, oversample, psf_optimal,
    sigmas=None, squared=None, inflation=1.0, resid_native=None, err=None,
    residual_shrinkage=0.0, intermediates=True,
):  # fmt: skip
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
    band : BandTable
        The regions' compact-source bands (`compact_source_band`).
    psf_optimal : bool
        Leave out the residual model inside the band.
    sigmas : ndarray of float64, shape (k, ny, nx), optional
        1-sigma images (errors, square roots of variances) oversampled in the same
        pass (paper IV); see `atm_step.core.errors.oversample_errors`.
    squared : ndarray of bool, shape (k,), optional
        Which of ``sigmas`` are returned squared (variances).
    inflation : float, optional
        Factor ``X`` applied to the oversampled ``sigmas``.
    resid_native : ndarray of float64, shape (ny, nx), optional
        The native residual ``flux - fit.spline_native`` (paper II.4), if the caller
        has it already (e.g. in a buffer it no longer needs); computed here otherwise.
    err : ndarray of float64, shape (ny, nx), optional
        1-sigma errors of ``flux``, for ``residual_shrinkage``.
    residual_shrinkage : float, optional
        Wiener weight of the residual inside the band (`shrink_band_residual`);
        0, no ``err`` or ``psf_optimal``: off.
    intermediates : bool, optional
        If False, the linear model is not kept, the trace model is written into
        ``fit.spline_os`` (which then no longer holds the full spline model), and the
        residual is dropped once the Wiener weight has used it: two fewer oversampled
        images to make and one fewer to return (time and memory). The combined image, the
        errors and the trace model are the same either way.

    Returns
    -------
    CombinedModels
        ``sigmas`` holds the oversampled, inflated ``sigmas``, shape (k, ny_os, nx).

    Notes
    -----
    Inside the band: spline + residual (spline alone with ``psf_optimal``); where the
    residual is undefined (no native residual to interpolate) the spline alone. Outside
    the band, or where the spline is undefined: the linear model, in which NaN input
    pixels stay NaN. NaN input pixels inside the band are thus filled by the model, the
    residual being interpolated from their neighbours.
    """
    if CONSERVE_BAND_FLUX:
        conserve_band_flux(fit, band, regions, alpha_os, near, oversample)
    lookup = _band_lookup(band, regions)
    shape = fit.spline_os.shape
    linear = np.empty(shape) if intermediates else np.empty((1, 1))
    residual = np.empty(shape)
    combined = np.empty(shape)
    # in place where the spline model has an array of its own (not the native one)
    in_place = not intermediates and fit.spline_os is not fit.spline_native
    trace = fit.spline_os if in_place else np.empty(shape)
    use = np.empty(shape, dtype=bool)
    estimated = np.empty(shape, dtype=bool)
    if sigmas is None:
        sigmas = np.empty((0,) + flux.shape)
        squared = np.zeros(0, dtype=bool)
    out_sigmas = np.empty((sigmas.shape[0],) + shape)
    if resid_native is None:
        resid_native = flux - fit.spline_native
    args = (
        flux, resid_native, regions, y_os, near, fit.spline_os, alpha_os,
        lookup, band.whole, band.inband, band.a0, band.step, bool(psf_optimal),
        sigmas, np.asarray(squared, dtype=np.bool_), float(inflation), bool(intermediates),
        linear, residual, combined, trace, use, estimated, out_sigmas,
    )  # fmt: skip
    in_row_chunks(shape[0], lambda j0, j1: _combine_kernel(*args, j0, j1))
    band_rows = dict(zip(band.ids.tolist(), band.rows.tolist(), strict=True))
    parts = CombinedModels(
        flux=combined,
        trace=trace,
        spline=fit.spline_os if intermediates else None,
        linear=linear if intermediates else None,
        residual=residual,
        band=use,
        estimated=estimated,
        band_rows=band_rows,
        sigmas=out_sigmas,
    )
    if residual_shrinkage > 0 and err is not None and not psf_optimal:
        shrink_band_residual(parts, err, regions, y_os, near, residual_shrinkage)
    if not intermediates:
        parts.residual = None
    return parts
