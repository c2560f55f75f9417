"""Image statistics and the per-region fit threshold (paper sections II.1 and II.3)."""

import warnings
from dataclasses import dataclass

import numba
import numpy as np
from astropy.stats import sigma_clipped_stats
from astropy.utils.exceptions import AstropyUserWarning

__all__ = [
    "ImageStatistics", "image_statistics", "regions_over_threshold", "region_geometry",
    "region_ids",
]

#: A region's alpha range, in native alpha steps, is taken to span at most this many
#: times the detector rows the region covers. Real slices and slits span about their
#: row count (a tilted trace covers more rows, not fewer); only degenerate alpha (nearly
#: constant along the slice while changing across columns) goes beyond, and would
#: otherwise ask for millions of knots or histogram bins.
MAX_ROWS_PER_SPAN = 4


@dataclass
class ImageStatistics:
    """
    Sigma-clipped statistics of the pixels inside regions.

    Attributes
    ----------
    global_mean, global_rms : float
        Over all regions (the mean decides the negative-offset correction).
    group_mean, group_rms : dict of int to float
        Per region id: the statistics of the channel group it belongs to (MIRI MRS
        channels; one group holding every region by default).
    """

    global_mean: float
    global_rms: float
    group_mean: dict
    group_rms: dict


def region_ids(values):
    """
    The distinct positive ids among region-map values, sorted.

    Parameters
    ----------
    values : ndarray of int
        Region-map values (any shape); 0 and negative values are not regions.

    Returns
    -------
    ndarray, dtype of ``values``, shape (k,)
        ``np.unique(values[values > 0])``, counted with `numpy.bincount` when the ids
        are no larger than a few times the number of values (a count table is faster
        than sorting or hashing them).
    """
    values = np.asarray(values)
    ids = values[values > 0]
    if ids.size == 0 or values.dtype.kind != "i":
        return np.unique(ids)
    if int(ids.max()) > 4 * ids.size + 65536:
        return np.unique(ids)
    return np.flatnonzero(np.bincount(ids.ravel())).astype(values.dtype, copy=False)


def _clipped(values):
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        mean, _, rms = sigma_clipped_stats(values)
    mean = float(mean) if np.isfinite(mean) else 0.0
    rms = float(rms) if np.isfinite(rms) else 0.0
    return mean, rms


def image_statistics(flux, regions, channel_groups=None):
    """
    Sigma-clipped mean and rms of the image, overall and per channel group.

    Parameters
    ----------
    flux : ndarray of float, shape (ny, nx)
        Image; NaN pixels are ignored.
    regions : ndarray of int, shape (ny, nx)
        Region map (0 outside regions).
    channel_groups : sequence of sequence of int, optional
        Region ids whose statistics are pooled (e.g. one MIRI MRS channel each).
        Regions in no group use the overall statistics.

    Returns
    -------
    ImageStatistics

    Notes
    -----
    Source: paper section II.1 (statistics per MIRI channel), computed with
    `astropy.stats.sigma_clipped_stats` (3 sigma, median centre, 5 iterations).
    """
    inside = regions > 0
    mean, rms = _clipped(flux[inside])
    ids = region_ids(regions)
    group_mean = dict.fromkeys(ids.tolist(), mean)
    group_rms = dict.fromkeys(ids.tolist(), rms)
    for group in channel_groups or ():
        members = np.isin(regions, np.asarray(list(group)))
        if not members.any():
            continue
        gmean, grms = _clipped(flux[members])
        for rid in region_ids(np.where(members, regions, 0)).tolist():
            group_mean[rid] = gmean
            group_rms[rid] = grms
    return ImageStatistics(mean, rms, group_mean, group_rms)


@numba.njit(cache=True)
def _geometry_kernel(regions, alpha, lookup, nreg, rows, amin, amax, dsum, dcount):
    ny, nx = regions.shape
    for y in range(ny):
        for x in range(nx):
            r = regions[y, x]
            if r <= 0:
                continue
            k = lookup[r]
            if k < 0:
                continue
            if y < rows[k, 0]:
                rows[k, 0] = y
            if y > rows[k, 1]:
                rows[k, 1] = y
            a = alpha[y, x]
            if np.isfinite(a):
                if a < amin[k]:
                    amin[k] = a
                if a > amax[k]:
                    amax[k] = a
                if y + 1 < ny and regions[y + 1, x] == r and np.isfinite(alpha[y + 1, x]):
                    dsum[k] += abs(alpha[y + 1, x] - a)
                    dcount[k] += 1


@dataclass
class RegionGeometry:
    """Per-region extent: rows ``row0..row1``, alpha range, native alpha step per row."""

    ids: np.ndarray
    row0: np.ndarray
    row1: np.ndarray
    alpha_min: np.ndarray
    alpha_max: np.ndarray
    dalpha: np.ndarray


def region_geometry(regions, alpha, ids):
    """
    Row span, alpha range and native alpha step (per row) of each region.

    Parameters
    ----------
    regions : ndarray of int64, shape (ny, nx)
    alpha : ndarray of float64, shape (ny, nx)
    ids : ndarray of int64, shape (nreg,)
        Region ids to describe.

    Returns
    -------
    RegionGeometry
        Arrays of shape (nreg,); ``dalpha`` is the mean |alpha step| between
        vertically adjacent pixels of the region (NaN if it has no such pair).
    """
    ids = np.asarray(ids, dtype=np.int64)
    lookup = np.full(int(max(regions.max(), ids.max(initial=0))) + 1, -1, dtype=np.int64)
    lookup[ids] = np.arange(ids.size)
    rows = np.empty((ids.size, 2), dtype=np.int64)
    rows[:, 0] = regions.shape[0]
    rows[:, 1] = -1
    amin = np.full(ids.size, np.inf)
    amax = np.full(ids.size, -np.inf)
    dsum = np.zeros(ids.size)
    dcount = np.zeros(ids.size, dtype=np.int64)
    _geometry_kernel(regions, alpha, lookup, ids.size, rows, amin, amax, dsum, dcount)
    with np.errstate(invalid="ignore", divide="ignore"):
        dalpha = np.where(dcount > 0, dsum / np.maximum(dcount, 1), np.nan)
    return RegionGeometry(ids, rows[:, 0], rows[:, 1], amin, amax, dalpha)


def _binned_median_peak(values, alpha, a0, step, nbins):
    """
    Peak over alpha bins of the median of the values in each bin.

    NumPy only: sorting inside a Numba kernel would cost a user's first run several
    seconds of compilation for a step that takes milliseconds.
    """
    idx = np.clip(((alpha - a0) / step).astype(np.int64), 0, nbins - 1)
    # by bin, then by value (as np.lexsort((values, idx)), 4x faster): sort the values,
    # then stably by bin, which for 16-bit bin numbers NumPy does as a radix sort
    by_value = np.argsort(values)
    key = idx[by_value]
    if nbins <= 65536:
        key = key.astype(np.uint16)
    order = by_value[np.argsort(key, kind="stable")]
    idx = idx[order]
    vals = values[order]
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    counts = np.diff(np.r_[starts, idx.size])
    mid = starts + counts // 2
    med = np.where(counts % 2 == 1, vals[mid], 0.5 * (vals[mid - 1] + vals[mid]))
    return float(med.max(initial=-np.inf))


def regions_over_threshold(flux, alpha, regions, ids, stats, fit_threshold, offset=0.0):
    """
    Which regions hold a source bright enough to model (paper section II.3).

    The region is collapsed along wavelength: its pixels are binned in alpha (bins of
    half a native row) and the median of each bin taken. The region is fitted if the
    peak of that profile exceeds ``mean + fit_threshold * rms`` of its channel group.

    Parameters
    ----------
    flux : ndarray of float64, shape (ny, nx)
        Image, with any negative offset already removed.
    alpha : ndarray of float64, shape (ny, nx)
    regions : ndarray of int64, shape (ny, nx)
    ids : ndarray of int64, shape (nreg,)
    stats : ImageStatistics
        From `image_statistics` on the image before the offset was removed.
    fit_threshold : float
        Threshold in units of the rms.
    offset : float, optional
        The (negative) offset subtracted from ``flux``; thresholds are shifted by it.

    Returns
    -------
    ndarray of bool, shape (nreg,)
    """
    geom = region_geometry(regions, alpha, ids)
    over = np.zeros(len(ids), dtype=bool)
    for k, rid in enumerate(np.asarray(ids).tolist()):
        rows = slice(geom.row0[k], geom.row1[k] + 1)
        sel = (regions[rows] == rid) & np.isfinite(flux[rows]) & np.isfinite(alpha[rows])
        width = geom.alpha_max[k] - geom.alpha_min[k]
        if not sel.any() or not np.isfinite(geom.dalpha[k]) or geom.dalpha[k] <= 0:
            continue  # alpha does not change along the slice: no profile to collapse
        if not np.isfinite(width) or width <= 0:
            continue
        step = geom.dalpha[k] / 2.0
        # bins of half a native row; degenerate alpha is capped (MAX_ROWS_PER_SPAN)
        span = geom.row1[k] - geom.row0[k] + 1
        nbins = int(min(np.ceil(width / step), 2 * MAX_ROWS_PER_SPAN * span)) + 1
        step = max(step, width / (nbins - 1)) if nbins > 1 else step
        peak = _binned_median_peak(
            flux[rows][sel], alpha[rows][sel], geom.alpha_min[k], step, nbins
        )
        threshold = stats.group_mean[rid] - offset + fit_threshold * stats.group_rms[rid]
        over[k] = peak > threshold
    return over
