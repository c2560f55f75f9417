"""The spline model (paper section II.3): a robust B-spline fit of the normalised
along-slice profile for every column of a region, in one compiled pass per region.

How it works, and where it departs from jwst's ``adaptive_trace_model`` step
----------------------------------------------------------------------------
- Each column is divided by its sum over the region (the "normalised image").
- The knots of a region are fixed: ``nknots`` uniform intervals across the region's
  alpha range. Every pixel's four basis values are computed once. The normal
  equations of the fit of column ``i`` (all pixels of columns ``i - window .. i +
  window``) are then *updated* as the window slides, one column in and one out,
  instead of being rebuilt; they are refreshed from scratch every 128 columns to stop
  round-off from accumulating. jwst refits ~3000 sorted points per column with scipy.
- Iterative rejection (points beyond ``sigma_reject`` rms, ``max_iter`` fits, at most
  ``max_reject_fraction`` of the points) starts afresh for every column, as in the
  paper, but from a copy of the window's normal equations: each rejected point is a
  rank-one downdate, not a refit, and the rms of a pass comes from sums the
  equations already hold (`_residual_spread`), so a pass is one sweep over the
  window's points. (Carrying rejections over from the previous column
  was tried and rejected: on bright, narrow traces, where the model's mismatch
  rather than noise sets the rms, the peak pixels once rejected stay rejected.
  Skipping, in a pass, the points provably inside the limit was tried too: a
  point's margin to the limit, against a clock of how far the fit and the limit
  have moved since its last test, left 9% of the points to test on a crowded field
  with the same outliers, but its unpredictable branch made the fits slower
  (about 1.0 s to 1.2 s of CPU on one thread, crowded 2048-column scene).)
- The sampling-gap test (paper: reuse the previous column's fit when the largest gap
  between sampled alpha positions exceeds ``gap_ratio`` knot intervals) uses an
  occupancy histogram of eight bins per knot interval, maintained with the window.
  Columns that fail it before any column of their sweep was fitted (at a slice's
  edge, where the window is one-sided) take the sweep's first fit; the paper is
  silent there, and jwst models them too, from a fit with fewer knots.
- The scale of the normalised model to the column is the weighted mean ratio of
  II.3, but its outlier clip is centred on the median of the five highest-weight
  ratios rather than their sigma-clipped mean, which cannot reject a single hot
  pixel among five (see `column_scale`). With fewer than
  ``scale_top`` usable pixels the seed uses those there are (jwst raises IndexError).
- A column's normalisation is corrected for the flux its missing pixels held,
  judged from the region's wavelength-collapsed profile; a column that lost most of
  its flux (a bad-pixel cluster on the trace) is left out of the fits but still
  modelled, with a scale interpolated from the intact columns beside it (see
  `column_norms`, `_rescale_lost_columns`). The paper relies on rejection alone, which lets
  such columns' wings, divided by a sum that lost its peak, bias the fit.
- Optionally (``FitParameters.knot_factor``, ``penalty``) the fit is a P-spline:
  refined knots and a difference penalty whose weight GCV chooses per region
  (`_choose_penalty`); off by default.
- jwst trims slice edges whose collapsed signal-to-noise ratio is low and error high;
  in crowded fields this discards most of some slices. Here no pixels are trimmed:
  edge pixels are fitted like any other and outliers are left to the rejection.
- The fit is a set of one-idea kernels (`_pixel_table`, `_move_window`,
  `_sampled_range`, `_robust_fit`, `_model_column`, `_rescale_lost_columns`), with
  the region's scalars in one `RegionSetup`; the per-column loop is one compiled
  kernel (`_fit_columns`, one column chunk), and the Python driver `_RegionJob`
  calls the per-region kernels one after the other. A kernel is compiled on its
  first use, together with every kernel it calls: keeping the per-region kernels
  apart compiles each once, and `_choose_penalty` (GCV) only when a call asks for
  it, which keeps the first, uncached run short.
  `atm_step.core.reference.reference_fit_region` is the same recipe in NumPy/scipy.
- Threads share out column chunks, not only regions, so that one exposure with one
  bright slice, or a single slit, also runs on every core. The column loop of a
  sweep is cut into chunks of a multiple of ``REFRESH_EVERY + 1`` columns, so that
  each chunk starts where the serial loop rebuilds the window's sums anyway; the
  only state carried from one column to the next is the last fit, reused by
  columns that fail the sampling-gap test. A chunk's leading columns that need it
  are modelled once every chunk of the region is done (`_RegionJob.finish`), from the
  last fit of the chunks before (or the sweep's first fit, before it). The output
  is the same, bit for bit, on any number of threads. The compiled kernels release
  the GIL; a thread pool (``maximum_cores`` threads) runs the tasks
  (`_run_regions`). (A Numba ``prange`` does the same but adds ~8 s to the first,
  uncached compilation.)
"""

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np

from atm_step.core.bspline import accumulate, basis, basis_values, difference_penalty, solve_banded
from atm_step.core.jit import HELPER as _HELPER
from atm_step.core.stats import MAX_ROWS_PER_SPAN, RegionGeometry, region_geometry

__all__ = ["TraceFit", "RegionSetup", "fit_regions", "column_scale", "column_norms"]

log = logging.getLogger(__name__)

ORDER_CODES = {"ascending": 0, "descending": 1, "outside_in": 2}
FINE_BINS_PER_KNOT = 8
REFRESH_EVERY = 128
#: a column whose missing pixels held more than this fraction of its flux is left out
#: of the fits (see `column_norms`)
MAX_MISSING_FLUX = 0.5


class RegionSetup(NamedTuple):
    """
    The scalars of one region's fit, passed to the compiled kernels as one argument.

    Every field has one fixed type (int, float or bool), so every region and every
    call share a single compiled specialisation of the kernels.
    """

    rid: int  #: region id
    row0: int  #: first and last native row holding the region
    row1: int
    j0: int  #: oversampled rows ``j0 .. j1 - 1`` whose nearest native row is in the region
    j1: int
    a0: float  #: alpha range of the region = the knot range
    a1: float
    nknots: int  #: knot intervals of the fit
    gap_h: float  #: the sampling-gap test's unit (alpha), ``(a1 - a0) / params.nknots``
    penalty: float  #: relative roughness-penalty weight; < 0: chosen by GCV
    penalty_order: int
    min_good: int
    window: int
    sigma: float
    max_iter: int
    gap_ratio: float
    order_code: int
    max_reject_fraction: float
    scale_top: int
    scale_sigma: float
    scale_offset: bool  #: fit the column scale with a constant offset (`column_scale_offset`)
    shared: bool  #: the oversampled output array is the native one (N = 1)


def region_setup(geom, k, nknots, min_good, j0, j1, params, shared):
    """The `RegionSetup` of fitted region ``k`` of ``geom`` (plain Python scalars);
    ``nknots`` is the base knot count, refined by ``params.knot_factor``."""
    a0, a1 = float(geom.alpha_min[k]), float(geom.alpha_max[k])
    return RegionSetup(
        rid=int(geom.ids[k]), row0=int(geom.row0[k]), row1=int(geom.row1[k]),
        j0=int(j0), j1=int(j1), a0=a0, a1=a1,
        nknots=max(int(round(params.knot_factor * nknots)), 1), gap_h=(a1 - a0) / int(nknots),
        penalty=-1.0 if params.penalty is None else float(params.penalty),
        penalty_order=int(params.penalty_order),
        min_good=int(min_good), window=int(params.window),
        sigma=float(params.sigma_reject), max_iter=int(params.max_iter),
        gap_ratio=float(params.gap_ratio), order_code=ORDER_CODES[params.column_order],
        max_reject_fraction=float(params.max_reject_fraction),
        scale_top=int(params.scale_top), scale_sigma=float(params.scale_sigma),
        scale_offset=bool(params.scale_offset),
        shared=bool(shared),
    )  # fmt: skip


@numba.njit(cache=True, nogil=True)
def column_scale(data, model, n, top, clip, seed):
    """
    Scale of a normalised model to one column (paper II.3).

    Weights are the model values, zero where the data or model are negative or NaN.
    The ratios data/model of the ``top`` highest-weight pixels seed a centre and an
    rms; pixels whose ratio lies more than ``clip`` rms from the centre get zero
    weight, and the scale is the weighted mean ratio of the rest.

    The paper seeds with the sigma-clipped mean and rms of the five ratios. With five
    values a 3-sigma clip can never reject one (the largest possible deviation is
    1.79 sigma), so a single hot or saturated pixel on the trace peak drags both the
    centre and the rms and survives. Here the centre is the median of the five ratios
    and the rms their standard deviation: one outlier at distance D from the others
    makes the standard deviation about 0.4 D, so it always lies beyond 2 rms of the
    median and is rejected, while for well-behaved pixels the clip stays as wide as
    the paper's (a median absolute deviation of five values is often tiny by chance,
    which would reject good pixels and make the scale noisier). With fewer than
    ``top`` usable pixels the seed uses those there are (jwst raises IndexError).

    Parameters
    ----------
    data, model : ndarray of float64, shape (>= n,), C-contiguous
        Column pixels (flux units) and the normalised model at them; the first ``n``
        are used.
    n, top : int
    clip : float
    seed : ndarray of float64, shape (2, >= top), C-contiguous
        Work space (highest weights and their ratios); nothing is allocated here.

    Returns
    -------
    float
        The scale, NaN if no pixel is usable.
    """
    # the `top` highest weights and their ratios, highest first (insertion)
    ntop = 0
    for k in range(n):
        d = data[k]
        m = model[k]
        if not (np.isfinite(d) and np.isfinite(m) and m > 0 and d >= 0):
            continue
        if ntop == top and m <= seed[0, top - 1]:
            continue
        pos = ntop if ntop < top else top - 1
        while pos > 0 and seed[0, pos - 1] < m:
            seed[0, pos] = seed[0, pos - 1]
            seed[1, pos] = seed[1, pos - 1]
            pos -= 1
        seed[0, pos] = m
        seed[1, pos] = d / m
        if ntop < top:
            ntop += 1
    if ntop == 0:
        return np.nan
    mean = 0.0
    for k in range(ntop):
        mean += seed[1, k]
    mean /= ntop
    var = 0.0
    for k in range(ntop):
        var += (seed[1, k] - mean) ** 2
    rms = np.sqrt(var / ntop)
    # median of the seed ratios (sorted in place: the weights are no longer needed)
    for k in range(1, ntop):
        r = seed[1, k]
        pos = k
        while pos > 0 and seed[1, pos - 1] > r:
            seed[1, pos] = seed[1, pos - 1]
            pos -= 1
        seed[1, pos] = r
    half = ntop // 2
    centre = seed[1, half] if ntop % 2 == 1 else 0.5 * (seed[1, half - 1] + seed[1, half])
    tol = clip * rms if rms > 0 else 1e-9 * abs(centre)
    sw = 0.0
    swr = 0.0
    for k in range(n):
        d = data[k]
        m = model[k]
        if np.isfinite(d) and np.isfinite(m) and m > 0 and d >= 0:
            r = d / m
            if abs(r - centre) <= tol:
                sw += m
                swr += m * r
    if sw <= 0:
        return centre
    return swr / sw


#: `column_scale_offset`: the least share of the column's profile (sum of the model)
#: its finite pixels must hold, and of the profile's power that must lie in its shape
#: (not in a constant)
OFFSET_MIN_PROFILE = 0.9
OFFSET_MIN_SHAPE = 0.5


# no explicit signature: compiled on first use (from `_model_column`), not at import;
# its one caller passes variables, so there is one specialisation
@numba.njit(cache=True, nogil=True)
def column_scale_offset(data, model, n, fallback):
    """
    Scale of a normalised model to one column, fitted together with a constant
    offset: ``data = scale * model + offset`` by least squares.

    The paper's scale (`column_scale`) is a weighted mean of ``data / model``: emission
    spread along the slice under a compact source (a nebula, a galaxy's disc, another
    source's wing, a pedestal) raises every ratio, so the compact source's trace model
    takes part of that emission and puts it where the source is. With the offset the
    scale follows the compact source alone; the offset is not kept, so the emission
    is left to the residual model, which spreads it as the data do. Not in the paper.
    The paper's ratio clip is not repeated: it would cut a neighbour's wing that the
    offset takes up, and rejection against the rms of noise-free data removes good
    pixels.

    Parameters
    ----------
    data, model : ndarray of float64, shape (>= n,), C-contiguous
        Column pixels (flux units) and the normalised model at them.
    n : int
    fallback : float
        `column_scale`'s value, returned when the fit is not well posed: fewer than 6
        finite pixels, finite pixels holding less than `OFFSET_MIN_PROFILE` of the
        column's profile (a hole in the core), a profile whose power lies mostly in a
        constant (less than `OFFSET_MIN_SHAPE` in its shape: extended emission alone),
        or a scale that is not positive.

    Returns
    -------
    float
    """
    total = 0.0
    present = 0.0
    cnt = 0
    sm = 0.0
    sd = 0.0
    smm = 0.0
    smd = 0.0
    for k in range(n):
        m = model[k]
        if not np.isfinite(m):
            continue
        total += max(m, 0.0)
        d = data[k]
        if not np.isfinite(d):
            continue
        present += max(m, 0.0)
        cnt += 1
        sm += m
        sd += d
        smm += m * m
        smd += m * d
    if cnt < 6 or not total > 0 or present < OFFSET_MIN_PROFILE * total:
        return fallback
    sxx = smm - sm * sm / cnt
    if not sxx > OFFSET_MIN_SHAPE * smm:
        return fallback
    scale = (smd - sm * sd / cnt) / sxx
    return scale if scale > 0 else fallback


def column_norms(flux, alpha, regions, rid, row0, row1, a0, a1, nbins, max_missing):
    """
    Normalisation of each column of a region: its sum, corrected for missing pixels.

    A column's sum over the region is the paper's normalisation (II.3). A bad pixel
    or cosmic-ray hole on the trace removes most of that sum, so the column's other
    pixels would enter the fit many times too bright. The wavelength-collapsed
    profile of the region (mean normalised value in ``nbins`` alpha bins, from the
    columns with no missing pixel) tells which fraction ``f`` of a column's flux its
    missing pixels held; the sum is divided by ``1 - f``, and a column missing more
    than ``max_missing`` of its flux is left out of the fits (it is still modelled,
    from its neighbours, and scaled to its remaining pixels).

    Parameters
    ----------
    flux, alpha : ndarray of float64, shape (ny, nx), C-contiguous
        Image (flux units) and along-slice coordinate.
    regions : ndarray of int64, shape (ny, nx), C-contiguous
        Region map.
    rid, row0, row1 : int
        Region id and its first and last row.
    a0, a1 : float
        Alpha range of the region.
    nbins : int
        Alpha bins of the collapsed profile.
    max_missing : float
        Largest fraction of a column's flux its missing pixels may hold.

    Returns
    -------
    norm : ndarray, shape (nx,)
        Corrected sum; NaN for columns left out of the fits.
    ngood : ndarray of int64, shape (nx,)
        Finite pixels of the region in each column.
    """
    # the arrays are made here, not in the compiled kernel: array creation inside a
    # kernel adds to its first, uncached compilation
    nx = flux.shape[1]
    ngood = np.zeros(nx, dtype=np.int64)
    ninside = np.zeros(nx, dtype=np.int64)
    total = np.zeros(nx)
    psum = np.zeros(int(nbins))
    pcnt = np.zeros(int(nbins))
    norm = np.full(nx, np.nan)
    _column_norms_kernel(flux, alpha, regions, int(rid), int(row0), int(row1), float(a0),
                         float(a1), float(max_missing), ngood, ninside, total, psum, pcnt,
                         norm)  # fmt: skip
    return norm, ngood


@numba.njit(cache=True, nogil=True)
def _column_norms_kernel(flux, alpha, regions, rid, row0, row1, a0, a1, max_missing, ngood,
                         ninside, total, psum, pcnt, norm):  # fmt: skip
    """`column_norms` into the given zeroed arrays (``norm`` NaN)."""
    nx = flux.shape[1]
    nbins = psum.shape[0]
    for x in range(nx):
        for y in range(row0, row1 + 1):
            if regions[y, x] == rid and np.isfinite(alpha[y, x]):
                ninside[x] += 1
                if np.isfinite(flux[y, x]):
                    total[x] += flux[y, x]
                    ngood[x] += 1
    scale = nbins / (a1 - a0)
    for x in range(nx):
        if ngood[x] == ninside[x] and total[x] > 0:
            for y in range(row0, row1 + 1):
                if regions[y, x] == rid and np.isfinite(alpha[y, x]):
                    k = min(max(int((alpha[y, x] - a0) * scale), 0), nbins - 1)
                    psum[k] += flux[y, x] / total[x]
                    pcnt[k] += 1
    for k in range(nbins):
        psum[k] = max(psum[k] / pcnt[k], 0.0) if pcnt[k] > 0 else 0.0
    for x in range(nx):
        if not total[x] > 0:
            continue
        if ngood[x] == ninside[x]:
            norm[x] = total[x]
            continue
        expect = 0.0
        missing = 0.0
        for y in range(row0, row1 + 1):
            if regions[y, x] == rid and np.isfinite(alpha[y, x]):
                k = min(max(int((alpha[y, x] - a0) * scale), 0), nbins - 1)
                expect += psum[k]
                if not np.isfinite(flux[y, x]):
                    missing += psum[k]
        f = missing / expect if expect > 0 else 0.0
        if f <= max_missing:
            norm[x] = total[x] / (1.0 - f)


@numba.njit(cache=True, nogil=True)
def _rescale_lost_columns(norm, col_scale, window, row0, row1, rid, regions, near, j0, j1,
                          out_native, out_os, shared):
    """Columns that lost most of their flux (``norm`` NaN: e.g. a bad-pixel cluster on
    the trace core) take their scale from the nearest intact columns on each side,
    interpolated linearly, instead of from their few remaining wing pixels, whose
    ratio to the model is a poor measure of the column's total."""
    nx = norm.shape[0]
    for c in range(nx):
        if np.isfinite(norm[c]) or not np.isfinite(col_scale[c]):
            continue
        left = -1
        for x in range(c - 1, max(c - window, 0) - 1, -1):
            if np.isfinite(norm[x]) and np.isfinite(col_scale[x]):
                left = x
                break
        right = -1
        for x in range(c + 1, min(c + window, nx - 1) + 1):
            if np.isfinite(norm[x]) and np.isfinite(col_scale[x]):
                right = x
                break
        if left < 0 and right < 0:
            continue
        if left < 0:
            new = col_scale[right]
        elif right < 0:
            new = col_scale[left]
        else:
            t = (c - left) / (right - left)
            new = col_scale[left] * (1.0 - t) + col_scale[right] * t
        f = new / col_scale[c]
        for y in range(row0, row1 + 1):
            if regions[y, c] == rid:
                out_native[y, c] *= f
        if shared:  # out_os is out_native (N = 1): already rescaled
            continue
        for j in range(j0, j1):
            if regions[near[j], c] == rid:
                out_os[j, c] *= f


def _new_pixel_table(nx, cfg):
    """The arrays `_pixel_table` fills, in their initial state."""
    nr = cfg.row1 - cfg.row0 + 1
    return (np.full((nx, nr), np.nan), np.full((nx, nr), -1, dtype=np.int64),
            np.zeros((nx, nr, 4)), np.zeros((nx, nr), dtype=np.int64), np.full(nx, np.inf),
            np.full(nx, -np.inf))  # fmt: skip


@numba.njit(cache=True, nogil=True)
def _pixel_table(flux, alpha, regions, norm, cfg, v, bidx, bval, fbin, clo, chi, b):
    """
    Per-pixel quantities of a region, computed once: normalised value ``v``, index
    ``bidx`` (-1: pixel not fitted) and values ``bval`` of its four B-splines, its bin
    ``fbin`` in the sampling histogram; per column, the alpha range ``clo .. chi`` of
    its fitted pixels. Arrays are indexed ``[column, row - row0]`` and come from
    `_new_pixel_table`; ``b`` is work space (4 values).
    """
    nx = flux.shape[1]
    nr = cfg.row1 - cfg.row0 + 1
    h = (cfg.a1 - cfg.a0) / cfg.nknots
    inv_h = 1.0 / h
    nfine = cfg.nknots * FINE_BINS_PER_KNOT + 1
    binw = h / FINE_BINS_PER_KNOT
    for x in range(nx):
        s = norm[x]
        if not s > 0:
            continue
        for rr in range(nr):
            y = cfg.row0 + rr
            if regions[y, x] == cfg.rid and np.isfinite(flux[y, x]) and np.isfinite(alpha[y, x]):
                a = alpha[y, x]
                v[x, rr] = flux[y, x] / s
                bidx[x, rr] = basis(a, cfg.a0, inv_h, cfg.nknots, b)
                for p in range(4):
                    bval[x, rr, p] = b[p]
                fbin[x, rr] = min(max(int((a - cfg.a0) / binw), 0), nfine - 1)
                clo[x] = min(clo[x], a)
                chi[x] = max(chi[x], a)


@numba.njit(**_HELPER)
def _window_column(x, sign, bidx, bval, fbin, v, occ, ata, aty, sums):
    """Add (``sign`` = 1) or remove (-1) the pixels of column ``x`` to the window's
    normal equations, point sums ``(n, sum v, sum v**2)`` and sampling histogram."""
    for rr in range(bidx.shape[1]):
        i = bidx[x, rr]
        if i >= 0:
            occ[fbin[x, rr]] += sign
            y = v[x, rr]
            # `bspline.accumulate`, written out: a call per point passing array views
            # costs more than the arithmetic
            for p in range(4):
                wp = sign * bval[x, rr, p]
                aty[i + p] += wp * y
                for q in range(p, 4):
                    ata[i + p, q - p] += wp * bval[x, rr, q]
            sums[0] += sign
            sums[1] += sign * y
            sums[2] += sign * y * y


@numba.njit(**_HELPER)
def _move_window(c, window, wl, wr, since_refresh, bidx, bval, fbin, v, occ, ata, aty, sums):
    """
    Bring the window's sums from columns ``wl .. wr`` to those of column ``c``:
    remove the columns that left, add those that entered, or rebuild from scratch
    every `REFRESH_EVERY` moves (and at the start, ``wl < 0``) against round-off.
    Returns the new ``wl, wr, since_refresh``.
    """
    nx = bidx.shape[0]
    tl = max(c - window, 0)
    tr = min(c + window, nx - 1)
    add = np.int64(1)  # typed, not literal: a literal argument gets a version of its own
    if since_refresh >= REFRESH_EVERY or wl < 0:
        ata[:, :] = 0.0
        aty[:] = 0.0
        sums[:] = 0.0
        occ[:] = 0
        for x in range(tl, tr + 1):
            _window_column(x, add, bidx, bval, fbin, v, occ, ata, aty, sums)
        return tl, tr, 0
    for x in range(wl, wr + 1):
        if x < tl or x > tr:
            _window_column(x, -add, bidx, bval, fbin, v, occ, ata, aty, sums)
    for x in range(tl, tr + 1):
        if x < wl or x > wr:
            _window_column(x, add, bidx, bval, fbin, v, occ, ata, aty, sums)
    return tl, tr, since_refresh + 1


@numba.njit(**_HELPER)
def _sampled_range(occ, clo, chi, wl, wr, a0, binw):
    """
    Alpha range ``lo .. hi`` sampled by the window's columns, its number of points,
    and its largest sampling gap (paper II.3), from the occupancy histogram.
    """
    nfine = occ.shape[0]
    lo = np.inf
    hi = -np.inf
    for x in range(wl, wr + 1):
        lo = min(lo, clo[x])
        hi = max(hi, chi[x])
    blo = min(max(int((lo - a0) / binw), 0), nfine - 1)
    bhi = min(max(int((hi - a0) / binw), 0), nfine - 1)
    npts = 0
    run = 0
    longest = 0
    for k in range(blo, bhi + 1):
        npts += occ[k]
        if occ[k] == 0:
            run += 1
            longest = max(longest, run)
        else:
            run = 0
    gap = (longest + 1) * binw if longest > 0 else 0.0
    return lo, hi, npts, gap


@numba.njit(**_HELPER)
def _residual_spread(ata, aty, sums, coef):
    """
    Number, mean, rms and sum of squares of the fit residuals of the points in normal equations
    ``ata, aty`` with point sums ``sums = (n, sum v, sum v**2)``, without visiting
    the points: with ``u = A^T A c``, ``sum (v - f)**2 = sum v**2 - 2 c.A^T v + c.u``
    and, because the four B-spline values at any point sum to one (``A 1 = 1``),
    ``sum f = 1.u``.
    """
    n = ata.shape[0]
    sf = 0.0
    cau = 0.0
    cay = 0.0
    for i in range(n):
        u = ata[i, 0] * coef[i]
        for d in range(1, 4):
            if i + d < n:
                u += ata[i, d] * coef[i + d]
            if i - d >= 0:
                u += ata[i - d, d] * coef[i - d]
        sf += u
        cau += coef[i] * u
        cay += coef[i] * aty[i]
    npts = sums[0]
    ss = max(sums[2] - 2.0 * cay + cau, 0.0)
    if npts < 1:
        return npts, 0.0, 0.0, ss
    mean = (sums[1] - sf) / npts
    return npts, mean, np.sqrt(max(ss / npts - mean * mean, 0.0)), ss


@numba.njit(**_HELPER)
def _robust_fit(c, wl, wr, npts, v, bidx, bval, rej, ata_all, aty_all, sums_all,
                ata, aty, sums, pen, lam, chol, coef, trial, cand, cfg):  # fmt: skip
    """
    Fit of column ``c``: the window's equations (penalised by ``lam pen``), then up
    to ``max_iter - 1`` passes that reject points beyond ``sigma`` rms (rms from the
    sums, one sweep over the window's points per pass to find the outliers, a
    rank-one downdate of a copy of the equations per rejected point). Rejections are
    marked ``rej = c``.

    Returns ``(fitted, n_rejected)``; ``coef`` holds the fit when ``fitted``.
    """
    # explicit loops: a slice assignment from an array compiles Numba's broadcasting
    # and shape checks (seconds of first-run compilation), for the same copy
    for i in range(ata.shape[0]):
        aty[i] = aty_all[i]
        for d in range(4):
            ata[i, d] = ata_all[i, d]
    for i in range(3):
        sums[i] = sums_all[i]
    if not solve_banded(ata, pen, lam, aty, chol, coef):
        return False, 0
    nr = bidx.shape[1]
    nrej = 0
    for _ in range(cfg.max_iter - 1):
        nkept, _mean, rms, _ss = _residual_spread(ata, aty, sums, coef)
        if nkept < 2:
            break
        limit = cfg.sigma * rms
        nnew = 0
        for x in range(wl, wr + 1):
            for rr in range(nr):
                i = bidx[x, rr]
                if i < 0 or rej[x, rr] == c:
                    continue
                f = (coef[i] * bval[x, rr, 0] + coef[i + 1] * bval[x, rr, 1]
                     + coef[i + 2] * bval[x, rr, 2] + coef[i + 3] * bval[x, rr, 3])
                if abs(v[x, rr] - f) > limit:
                    cand[nnew] = x * nr + rr
                    nnew += 1
        if nnew == 0:
            break
        if nrej + nnew > cfg.max_reject_fraction * npts:
            break  # too many outliers: keep the current fit
        for k in range(nnew):
            x = cand[k] // nr
            rr = cand[k] % nr
            y = v[x, rr]
            accumulate(ata, aty, bidx[x, rr], bval[x, rr], y, -1.0)
            sums[0] -= 1.0
            sums[1] -= y
            sums[2] -= y * y
            rej[x, rr] = c
        nrej += nnew
        if not solve_banded(ata, pen, lam, aty, chol, trial):
            break  # keep the last good fit
        for i in range(coef.shape[0]):
            coef[i] = trial[i]
    return True, nrej


#: Relative penalty weights tried by generalised cross-validation (log10 grid), and the
#: weight used when no window of a region can be fitted to choose one.
GCV_LOG_GRID = np.arange(-6.0, 2.01, 0.5)
GCV_FALLBACK = 1e-2
#: Windows per region on which the penalty weight is chosen.
GCV_WINDOWS = 5


@numba.njit(**_HELPER)
def _penalty_trace(chol, order, z):
    """
    ``trace(M^-1 D^T D)`` for ``M = L L^T`` factored in ``chol`` and ``D`` the
    ``order``-th difference matrix: the squared Frobenius norm of ``L^-1 D^T``, one
    banded forward substitution per row of ``D`` (``z``: work, size ncoef).
    """
    n = chol.shape[0]
    total = 0.0
    for r in range(n - order):
        z[:] = 0.0
        # row r of D: binomial coefficients with alternating signs at r .. r + order
        coeff = 1.0
        for q in range(order + 1):
            z[r + q] = coeff if (order - q) % 2 == 0 else -coeff
            coeff = coeff * (order - q) / (q + 1)
        for i in range(r, n):
            acc = z[i]
            for k in range(max(r, i - 3), i):
                acc -= chol[k, i - k] * z[k]
            z[i] = acc / chol[i, 0]
            total += z[i] * z[i]
    return total


@numba.njit(cache=True, nogil=True)
def _choose_penalty(norm, ngood, v, bidx, bval, fbin, clo, chi, pen, scale, cfg, work, z,
                    chosen):  # fmt: skip
    """
    Relative roughness-penalty weight of a region by generalised cross-validation.

    In each of `GCV_WINDOWS` stretches of columns the window of the column with the
    largest norm (the best-exposed profile) is fitted, with rejection, for every
    weight of `GCV_LOG_GRID`; the weight minimising ``GCV = n RSS / (n - tr H)**2``
    (Craven & Wahba 1979; ``tr H = ncoef - lam tr(M^-1 D^T D)``, the effective number
    of parameters) is kept, and the region uses the median over the stretches. A
    sharp, well-sampled, bright profile gets a small weight (resolution); a faint or
    noisy one a large weight (smoothness). Returns the relative weight.

    Called from Python only when the weight is to be chosen (``cfg.penalty < 0``), so
    that a default call never compiles it. ``work`` (`column_work`), ``z`` (ncoef)
    and ``chosen`` (`GCV_WINDOWS`) are work arrays; the column fits that follow get
    fresh ones (rejection marks here are never a column index, and the window's sums
    are rebuilt at the first column anyway).
    """
    nx = v.shape[0]
    ncoef = cfg.nknots + 3
    rej = work.rej
    occ = work.occ
    ata_all = work.ata_all
    aty_all = work.aty_all
    sums_all = work.sums_all
    ata = work.ata
    aty = work.aty
    sums = work.sums
    chol = work.chol
    coef = work.coef
    trial = work.trial
    cand = work.cand
    binw = (cfg.a1 - cfg.a0) / cfg.nknots / FINE_BINS_PER_KNOT
    ngrid = GCV_LOG_GRID.shape[0]
    nchosen = 0
    for q in range(GCV_WINDOWS):
        best_c = np.int64(-1)  # typed, not literal (see `_move_window`)
        for c in range(q * nx // GCV_WINDOWS, (q + 1) * nx // GCV_WINDOWS):
            if ngood[c] > cfg.min_good and norm[c] > 0 and (best_c < 0 or norm[c] > norm[best_c]):
                best_c = c
        if best_c < 0:
            continue
        # from an empty window, rebuilt (typed constants, as in `_fit_columns`)
        wl, wr, since = np.int64(-1), np.int64(-2), np.int64(0)
        wl, wr, _ = _move_window(best_c, cfg.window, wl, wr, since, bidx, bval, fbin, v, occ,
                                 ata_all, aty_all, sums_all)  # fmt: skip
        lo, hi, npts, gap = _sampled_range(occ, clo, chi, wl, wr, cfg.a0, binw)
        if gap > cfg.gap_ratio * cfg.gap_h or npts <= ncoef:
            continue
        best = np.inf
        best_g = 0.0
        for gi in range(ngrid):
            lam = 10.0 ** GCV_LOG_GRID[gi] * scale
            marker = nx + (q * ngrid + gi)  # never a column index: rejections stay local
            fitted, _ = _robust_fit(marker, wl, wr, npts, v, bidx, bval, rej, ata_all, aty_all,
                                    sums_all, ata, aty, sums, pen, lam, chol, coef, trial,
                                    cand, cfg)  # fmt: skip
            if not fitted or not solve_banded(ata, pen, lam, aty, chol, coef):
                continue
            nkept, _mean, _rms, rss = _residual_spread(ata, aty, sums, coef)
            edf = ncoef - lam * _penalty_trace(chol, cfg.penalty_order, z)
            if nkept <= edf:
                continue
            gcv = nkept * rss / (nkept - edf) ** 2
            if gcv < best:
                best = gcv
                best_g = GCV_LOG_GRID[gi]
        if np.isfinite(best):
            chosen[nchosen] = best_g
            nchosen += 1
    if nchosen == 0:
        return GCV_FALLBACK
    # median of the chosen log weights (insertion sort: a handful of values)
    for k in range(1, nchosen):
        g = chosen[k]
        pos = k
        while pos > 0 and chosen[pos - 1] > g:
            chosen[pos] = chosen[pos - 1]
            pos -= 1
        chosen[pos] = g
    half = nchosen // 2
    mid = chosen[half] if nchosen % 2 == 1 else 0.5 * (chosen[half - 1] + chosen[half])
    return 10.0**mid


@numba.njit(**_HELPER)
def _model_column(c, coef, lo, hi, flux, alpha, regions, alpha_os, near, cfg,
                  seed, col_d, col_m, out_native, out_norm, out_os):  # fmt: skip
    """
    Evaluate the normalised model at column ``c``'s pixels inside the sampled range
    ``lo .. hi``, scale it to the column (`column_scale`) and write the scaled model
    at the native and oversampled pixels. Returns the scale (NaN: none written).
    """
    inv_h = cfg.nknots / (cfg.a1 - cfg.a0)
    n = np.int64(0)  # not a literal 0: Numba would compile `column_scale_offset` for it too
    for y in range(cfg.row0, cfg.row1 + 1):
        a = alpha[y, c]
        if regions[y, c] == cfg.rid and np.isfinite(a) and lo <= a <= hi:
            # `bspline.evaluate` without passing arrays (the cost of a per-pixel call)
            i, b0, b1, b2, b3 = basis_values(a, cfg.a0, inv_h, cfg.nknots)
            m = coef[i] * b0 + coef[i + 1] * b1 + coef[i + 2] * b2 + coef[i + 3] * b3
            out_norm[y, c] = m
            col_d[n] = flux[y, c]
            col_m[n] = m
            n += 1
    scale = column_scale(col_d, col_m, n, cfg.scale_top, cfg.scale_sigma, seed)
    if cfg.scale_offset and np.isfinite(scale):
        scale = column_scale_offset(col_d, col_m, n, scale)
    if not np.isfinite(scale):
        return scale
    for y in range(cfg.row0, cfg.row1 + 1):
        if np.isfinite(out_norm[y, c]) and regions[y, c] == cfg.rid:
            out_native[y, c] = scale * out_norm[y, c]
    if cfg.shared:  # N = 1: the oversampled pixels are the native ones, already written
        return scale
    # the flux of the oversampled model is kept per column inside the compact-source
    # band, after the fits (`atm_step.core.combine.conserve_band_flux`)
    for j in range(cfg.j0, cfg.j1):
        if regions[near[j], c] != cfg.rid:
            continue
        a = alpha_os[j, c]
        if np.isfinite(a) and lo <= a <= hi:
            i, b0, b1, b2, b3 = basis_values(a, cfg.a0, inv_h, cfg.nknots)
            out_os[j, c] = scale * (coef[i] * b0 + coef[i + 1] * b1 + coef[i + 2] * b2
                                    + coef[i + 3] * b3)
    return scale


def _sweep_bounds(order_code, sweep, nx):
    """Columns ``start, stop, step`` of sweep ``sweep`` in the column order."""
    if order_code == 0:
        return 0, nx, 1
    if order_code == 1:
        return nx - 1, -1, -1
    if sweep == 0:
        return 0, nx // 2 + 1, 1
    return nx - 1, nx // 2, -1


def column_chunks(order_code, nx, refreshes):
    """
    The column chunks of a region's fit, in the serial order.

    Parameters
    ----------
    order_code : int
        `ORDER_CODES` value of ``FitParameters.column_order``.
    nx : int
        Columns of the region.
    refreshes : int
        Chunk length in units of ``REFRESH_EVERY + 1`` columns (the serial loop
        rebuilds the window's sums at the first column of a sweep and every
        ``REFRESH_EVERY + 1`` columns after it, so a chunk starts at such a column).

    Returns
    -------
    list of tuple of int
        ``(sweep, start, stop, step)`` per chunk: columns ``range(start, stop, step)``.
    """
    length = max(int(refreshes), 1) * (REFRESH_EVERY + 1)
    chunks = []
    for sweep in range(2 if order_code == 2 else 1):
        cols = range(*_sweep_bounds(order_code, sweep, nx))
        for p in range(0, len(cols), length):
            part = cols[p: p + length]
            chunks.append((sweep, part.start, part.stop, part.step))
    return chunks


class ColumnWork(NamedTuple):
    """Work arrays of `_fit_columns` for one region, made in Python (`column_work`):
    array creation inside a kernel adds to its first, uncached compilation."""

    rej: np.ndarray  #: (nx, nr) int64: column whose fit rejected the pixel, -1 none
    ata_all: np.ndarray  #: (ncoef, 4) normal equations of every pixel in the window
    aty_all: np.ndarray  #: (ncoef,)
    sums_all: np.ndarray  #: (3,) point sums (n, sum v, sum v**2) of the window
    ata: np.ndarray  #: (ncoef, 4) ... less the pixels rejected by the current column's fit
    aty: np.ndarray  #: (ncoef,)
    sums: np.ndarray  #: (3,)
    chol: np.ndarray  #: (ncoef, 4) Cholesky factor
    coef: np.ndarray  #: (ncoef,) current fit
    trial: np.ndarray  #: (ncoef,) fit after a rejection pass
    prev: np.ndarray  #: (ncoef,) last fitted column's coefficients
    occ: np.ndarray  #: (nknots * FINE_BINS_PER_KNOT + 1,) int64 sampling histogram
    cand: np.ndarray  #: ((2 window + 1) nr,) int64 rejection candidates
    seed: np.ndarray  #: (2, scale_top) `column_scale` work
    col_d: np.ndarray  #: (nr,) a column's data and model for `column_scale`
    col_m: np.ndarray  #: (nr,)
    pending: np.ndarray  #: (nx,) int64: columns of a chunk waiting for an earlier chunk's fit
    prev_range: np.ndarray  #: (2,) sampled alpha range of ``prev``
    first: np.ndarray  #: (ncoef,) the chunk's first fit (for a sweep's leading columns)
    first_range: np.ndarray  #: (2,) sampled alpha range of ``first``


def column_work(nx, cfg):
    """The `ColumnWork` of a region with ``nx`` columns and setup ``cfg``."""
    nr = cfg.row1 - cfg.row0 + 1
    ncoef = cfg.nknots + 3
    return ColumnWork(
        rej=np.full((nx, nr), -1, dtype=np.int64), ata_all=np.zeros((ncoef, 4)),
        aty_all=np.zeros(ncoef), sums_all=np.zeros(3), ata=np.zeros((ncoef, 4)),
        aty=np.zeros(ncoef), sums=np.zeros(3), chol=np.empty((ncoef, 4)),
        coef=np.zeros(ncoef), trial=np.zeros(ncoef), prev=np.zeros(ncoef),
        occ=np.zeros(cfg.nknots * FINE_BINS_PER_KNOT + 1, dtype=np.int64),
        cand=np.empty((2 * cfg.window + 1) * nr, dtype=np.int64),
        seed=np.empty((2, cfg.scale_top)), col_d=np.empty(nr), col_m=np.empty(nr),
        pending=np.empty(nx, dtype=np.int64), prev_range=np.zeros(2),
        first=np.zeros(ncoef), first_range=np.zeros(2),
    )  # fmt: skip


@numba.njit(cache=True, nogil=True)
def _fit_columns(flux, alpha, regions, alpha_os, near, cfg, pen, lam, norm, ngood, v, bidx,
                 bval, fbin, clo, chi, work, start, stop, step, out_native, out_norm, out_os,
                 col_scale, col_fitted, result):  # fmt: skip
    """
    Spline model of the columns ``range(start, stop, step)`` of one region (a chunk,
    `column_chunks`; see the module docstring), from its column norms
    (`column_norms`) and pixel table (`_pixel_table`), with penalty weight ``lam`` on
    the band ``pen`` (`difference_penalty`) and the work arrays ``work``
    (`column_work`): the per-column loop over the one-idea kernels above.

    Writes the chunk's pixels of the output arrays, each modelled column's scale
    ``col_scale[c]``, and ``col_fitted[c] = True`` for each column fitted from its own
    window (the sampling-gap test passed and the fit converged). ``result`` receives
    (columns fitted, columns reusing a fit, rejections, pending columns, 1 if the
    chunk fitted a column); the pending
    columns, which would reuse a fit made before the chunk, are
    ``work.pending[:result[3]]``; the chunk's last fit is ``work.prev`` over the
    alpha range ``work.prev_range``, its first ``work.first`` over ``work.first_range``.
    """
    ncoef = cfg.nknots + 3
    h = (cfg.a1 - cfg.a0) / cfg.nknots
    binw = h / FINE_BINS_PER_KNOT
    rej = work.rej
    ata_all = work.ata_all
    aty_all = work.aty_all
    sums_all = work.sums_all
    ata = work.ata
    aty = work.aty
    sums = work.sums
    chol = work.chol
    coef = work.coef
    trial = work.trial
    prev = work.prev
    occ = work.occ
    cand = work.cand
    seed = work.seed
    col_d = work.col_d
    col_m = work.col_m
    pending = work.pending
    n_fit = 0
    n_reuse = 0
    n_rej = 0
    n_pending = 0
    have_prev = False
    prev_lo = 0.0
    prev_hi = 0.0
    # typed, not literal: a variable first typed as a literal makes Numba compile a
    # version of `_move_window` for that literal too, during type inference
    wl, wr, since = np.int64(-1), np.int64(-2), np.int64(0)
    for c in range(start, stop, step):
        wl, wr, since = _move_window(c, cfg.window, wl, wr, since, bidx, bval, fbin, v,
                                     occ, ata_all, aty_all, sums_all)  # fmt: skip
        if ngood[c] <= cfg.min_good:
            continue
        lo, hi, npts, gap = _sampled_range(occ, clo, chi, wl, wr, cfg.a0, binw)
        fitted = False
        nrej = 0
        if gap <= cfg.gap_ratio * cfg.gap_h and npts > ncoef:
            fitted, nrej = _robust_fit(c, wl, wr, npts, v, bidx, bval, rej, ata_all,
                                       aty_all, sums_all, ata, aty, sums, pen, lam, chol,
                                       coef, trial, cand, cfg)  # fmt: skip
        if fitted:
            n_fit += 1
            n_rej += nrej
            col_fitted[c] = True
            for i in range(ncoef):
                prev[i] = coef[i]
            prev_lo = lo
            prev_hi = hi
            if not have_prev:  # the chunk's first fit
                for i in range(ncoef):
                    work.first[i] = coef[i]
                work.first_range[0] = lo
                work.first_range[1] = hi
            have_prev = True
        elif have_prev:
            n_reuse += 1
            for i in range(ncoef):
                coef[i] = prev[i]
            lo = prev_lo
            hi = prev_hi
        else:
            pending[n_pending] = c
            n_pending += 1
            continue
        col_scale[c] = _model_column(c, coef, lo, hi, flux, alpha, regions, alpha_os,
                                     near, cfg, seed, col_d, col_m, out_native,
                                     out_norm, out_os)  # fmt: skip
    work.prev_range[0] = prev_lo
    work.prev_range[1] = prev_hi
    result[0] = n_fit
    result[1] = n_reuse
    result[2] = n_rej
    result[3] = n_pending
    result[4] = 1 if have_prev else 0


@numba.njit(cache=True, nogil=True)
def _model_columns(cols, coef, lo, hi, flux, alpha, regions, alpha_os, near, cfg, work,
                   out_native, out_norm, out_os, col_scale):  # fmt: skip
    """The columns ``cols`` modelled with the fit ``coef`` over ``lo .. hi``
    (`_model_column`): a chunk's leading columns that reuse an earlier chunk's fit."""
    for k in range(cols.shape[0]):
        c = cols[k]
        col_scale[c] = _model_column(c, coef, lo, hi, flux, alpha, regions, alpha_os, near,
                                     cfg, work.seed, work.col_d, work.col_m, out_native,
                                     out_norm, out_os)  # fmt: skip


class _ChunkResult(NamedTuple):
    counts: np.ndarray  #: (3,) columns fitted, columns reusing a fit, rejections
    pending: np.ndarray  #: columns waiting for the fit of an earlier chunk
    last: tuple | None  #: the chunk's last fit ``(coef, lo, hi)``, None without one
    first: tuple | None  #: the chunk's first fit ``(coef, lo, hi)``, None without one


class _RegionJob:
    """
    One region's fit as tasks that threads can share: `prepare` (column norms, pixel
    table, penalty weight), `run_chunk` for each column chunk in any order and on any
    thread, then `finish` (pending columns, lost columns).
    """

    def __init__(self, cfg, arrays, outputs, counts, refreshes, fitted_columns):
        self.cfg = cfg
        self.fitted_columns = fitted_columns  # (nx,) bool, `TraceFit.fitted_columns`' row
        self.arrays = arrays  # flux, alpha, regions, alpha_os, near
        self.outputs = outputs  # out_native, out_norm, out_os
        self.counts = counts
        self.chunks = column_chunks(cfg.order_code, arrays[0].shape[1], refreshes)
        self.results = [None] * len(self.chunks)
        self.left = len(self.chunks)
        self.lock = threading.Lock()
        self.work = {}  # per thread: rejection marks must not be shared between threads
        self.rel = 0.0
        self.failed = None  # the first error of a chunk task

    def prepare(self):
        """Column norms, pixel table and penalty weight of the region."""
        flux, alpha, regions, _, _ = self.arrays
        cfg = self.cfg
        nx = flux.shape[1]
        ncoef = cfg.nknots + 3
        self.norm, self.ngood = column_norms(flux, alpha, regions, cfg.rid, cfg.row0,
                                             cfg.row1, cfg.a0, cfg.a1, 2 * cfg.nknots,
                                             MAX_MISSING_FLUX)  # fmt: skip
        self.table = _new_pixel_table(nx, cfg)
        _pixel_table(flux, alpha, regions, self.norm, cfg, *self.table, np.empty(4))
        self.pen = difference_penalty(ncoef, cfg.penalty_order)
        # penalty weights are relative to the window's points per coefficient, so that
        # one value means the same smoothing for any slice length, window and knot count
        nfitted = int(np.count_nonzero(self.table[1] >= 0))
        scale = nfitted / nx * (2 * cfg.window + 1) / ncoef
        rel = cfg.penalty
        if rel < 0:
            rel = _choose_penalty(self.norm, self.ngood, *self.table, self.pen, scale, cfg,
                                  column_work(nx, cfg), np.empty(ncoef),
                                  np.empty(GCV_WINDOWS))  # fmt: skip
        self.rel = float(rel)
        self.lam = self.rel * scale
        self.col_scale = np.full(nx, np.nan)

    def _thread_work(self):
        key = threading.get_ident()
        with self.lock:
            if key not in self.work:
                self.work[key] = column_work(self.arrays[0].shape[1], self.cfg)
            return self.work[key]

    def run_chunk(self, i):
        """Fit column chunk ``i``; returns True when it was the region's last chunk."""
        work = self._thread_work()
        _, start, stop, step = self.chunks[i]
        res = np.zeros(5, dtype=np.int64)
        _fit_columns(*self.arrays, self.cfg, self.pen, self.lam, self.norm, self.ngood,
                     *self.table, work, start, stop, step, *self.outputs, self.col_scale,
                     self.fitted_columns, res)  # fmt: skip
        last = first = None
        if res[4]:
            last = (work.prev.copy(), float(work.prev_range[0]), float(work.prev_range[1]))
            first = (work.first.copy(), float(work.first_range[0]), float(work.first_range[1]))
        self.results[i] = _ChunkResult(res[:3].copy(), work.pending[: res[3]].copy(), last,
                                       first)  # fmt: skip
        with self.lock:
            self.left -= 1
            return self.left == 0

    def finish(self):
        """Model the chunks' pending columns with the last fit before them (in the
        serial order, within a sweep), or, before a sweep's first fit, with that first
        fit; then rescale the columns that lost their flux."""
        cfg = self.cfg
        regions, near = self.arrays[2], self.arrays[4]
        total = np.zeros(3, dtype=np.int64)
        last = None
        sweep_now = -1
        leading = []  # pending columns before the sweep's first fit
        work = self._thread_work()

        def model(cols, fit):
            _model_columns(cols, *fit, *self.arrays, cfg, work, *self.outputs,
                           self.col_scale)  # fmt: skip
            total[1] += cols.size

        for (sweep, *_), r in zip(self.chunks, self.results, strict=True):
            if sweep != sweep_now:  # (a sweep without any fit leaves its columns)
                last, sweep_now, leading = None, sweep, []
            total += r.counts
            if r.pending.size:
                if last is not None:
                    model(r.pending, last)
                else:
                    leading.append(r.pending)
            if leading and r.first is not None:
                # as jwst models them (it retries the fit with fewer knots): the
                # columns before the first fit take it, as later ones take the last
                model(np.concatenate(leading), r.first)
                leading = []
            if r.last is not None:
                last = r.last
        self.counts[:] = total
        out_native, _, out_os = self.outputs
        _rescale_lost_columns(self.norm, self.col_scale, cfg.window, cfg.row0, cfg.row1,
                              cfg.rid, regions, near, cfg.j0, cfg.j1, out_native, out_os,
                              cfg.shared)  # fmt: skip
        self.table = self.work = self.results = None  # free the region's work arrays


def _run_regions(jobs, threads):
    """
    Run the regions' jobs (`_RegionJob`) on ``threads`` threads: a region's column
    chunks are shared out as soon as it is prepared, and at most ``2 threads``
    regions are prepared at a time (their pixel tables in memory). Raises the first
    error a task raised, once every task has stopped.
    """
    if threads == 1:
        for job in jobs:
            job.prepare()
            for i in range(len(job.chunks)):
                job.run_chunk(i)
            job.finish()
        return
    slots = threading.Semaphore(2 * threads)
    done = threading.Condition()
    state = {"finished": 0, "error": None}

    def region_done(exc=None):
        slots.release()
        with done:
            state["finished"] += 1
            if exc is not None and state["error"] is None:
                state["error"] = exc
            done.notify_all()

    with ThreadPoolExecutor(max_workers=threads) as pool:

        # an error in a task is kept, and raised by the calling thread once every task
        # has stopped; the region still counts as done, so that nothing waits for it
        def chunk_task(job, i):
            try:
                last = job.run_chunk(i)
            except Exception as exc:  # noqa: BLE001 - raised to the caller below
                job.failed = exc
                with job.lock:
                    job.left -= 1
                    last = job.left == 0
            if not last:
                return
            if job.failed is None:
                try:
                    job.finish()
                except Exception as exc:  # noqa: BLE001 - raised to the caller below
                    job.failed = exc
            region_done(job.failed)

        def region_task(job):
            try:
                job.prepare()
            except Exception as exc:  # noqa: BLE001 - raised to the caller below
                region_done(exc)
                return
            for i in range(len(job.chunks)):
                pool.submit(chunk_task, job, i)

        for job in jobs:
            slots.acquire()
            if state["error"] is not None:
                region_done()  # give the slot back and count the region as done
                continue
            pool.submit(region_task, job)
        with done:
            done.wait_for(lambda: state["finished"] == len(jobs))
    if state["error"] is not None:
        raise state["error"]


@dataclass
class TraceFit:
    """
    Spline models of the fitted regions.

    Attributes
    ----------
    spline_native : ndarray of float64, shape (ny, nx)
        Scaled spline model at the native pixels (NaN where there is none).
    model_native : ndarray of float64, shape (ny, nx)
        Normalised (unscaled) spline model at the native pixels.
    spline_os : ndarray of float64, shape (ny_os, nx)
        Scaled spline model at the oversampled pixels.
    geometry : RegionGeometry
        Extent of the fitted regions.
    nknots : ndarray of int64
        Knot intervals used per fitted region.
    counts : ndarray of int64, shape (nreg, 3)
        Per fitted region: columns fitted, columns reusing a previous fit, rejections.
    penalty : ndarray of float64, shape (nreg,)
        Per fitted region: the relative roughness-penalty weight used (chosen by GCV
        when ``FitParameters.penalty`` is None).
    fitted_columns : ndarray of bool, shape (nreg, nx)
        Per fitted region: the columns fitted from their own window. The others reuse
        the fit of an earlier column (their window failed the sampling-gap test of
        paper II.3, or its fit) or have too few good pixels for a model.
    """

    spline_native: np.ndarray
    model_native: np.ndarray
    spline_os: np.ndarray
    geometry: RegionGeometry
    nknots: np.ndarray
    counts: np.ndarray
    penalty: np.ndarray
    fitted_columns: np.ndarray

    def per_region_counts(self, all_ids):
        """Diagnostics aligned to ``all_ids`` (zeros for regions not fitted)."""
        out = {k: np.zeros(len(all_ids), dtype=np.int64) for k in ("fitted", "reused", "rejected")}
        pos = {int(r): k for k, r in enumerate(np.asarray(all_ids).tolist())}
        for k, rid in enumerate(self.geometry.ids.tolist()):
            i = pos[int(rid)]
            out["fitted"][i], out["reused"][i], out["rejected"][i] = self.counts[k]
        return out


def _shown(ids, labels):
    """Region ids as the caller knows them, for messages."""
    return (ids if labels is None else np.asarray(labels)[ids]).tolist()


@contextmanager
def compiled_threads(maximum_cores):
    """
    Run the compiled kernels on up to ``maximum_cores`` threads, then restore the setting.

    Parameters
    ----------
    maximum_cores : int
        Requested threads; capped by ``NUMBA_NUM_THREADS`` (the machine's cores).

    Yields
    ------
    int
        The number of threads in use.
    """
    before = numba.get_num_threads()
    n = max(1, min(int(maximum_cores), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(before)


def fit_regions(flux, alpha, regions, ids, alpha_os, near, params, labels=None, threads=None):
    """
    Fit the spline model of every column of the given regions (paper II.3).

    Parameters
    ----------
    flux : ndarray of float64, shape (ny, nx)
        Image (negative offset removed), dispersion along x.
    alpha : ndarray of float64, shape (ny, nx)
        Along-slice coordinate, NaN outside regions.
    regions : ndarray of int64, shape (ny, nx)
        Region map.
    ids : ndarray of int64, shape (nreg,)
        Regions to fit.
    alpha_os : ndarray of float64, shape (ny_os, nx)
        Along-slice coordinate of the oversampled pixels.
    near : ndarray of int64, shape (ny_os,)
        Nearest native row of each oversampled row (non-decreasing).
    params : FitParameters
        Fit tuning.
    labels : ndarray of int64, optional
        Region id shown in messages for each id of ``regions`` (the caller's ids when
        it renumbered them); default the ids themselves.
    threads : int, optional
        Threads that share out the regions' column chunks; default Numba's thread
        count (`compiled_threads`). The result does not depend on it.

    Returns
    -------
    TraceFit
    """
    ny, nx = flux.shape
    ids = np.asarray(ids, dtype=np.int64)
    spline_native = np.full((ny, nx), np.nan)
    model_native = np.full((ny, nx), np.nan)
    # with N = 1 and no separate alpha_os the two grids are one: share the array
    same_grid = alpha_os is alpha
    spline_os = spline_native if same_grid else np.full(alpha_os.shape, np.nan)
    geom = region_geometry(regions, alpha, ids)
    if ids.size == 0:
        return TraceFit(spline_native, model_native, spline_os, geom,
                        np.zeros(0, np.int64), np.zeros((0, 3), np.int64), np.zeros(0),
                        np.zeros((0, nx), dtype=np.bool_))

    # a spline along the slice needs alpha to change along it: alpha constant, NaN, or
    # changing only across columns (no step between vertical neighbours) gives none
    with np.errstate(invalid="ignore"):
        usable = (np.isfinite(geom.dalpha) & (geom.dalpha > 0)
                  & np.isfinite(geom.alpha_max - geom.alpha_min)
                  & (geom.alpha_max > geom.alpha_min))  # fmt: skip
    if not usable.all():
        log.warning(
            "Regions %s: alpha does not change along the slice (constant, NaN, or changing "
            "only along the dispersion axis); no spline model fitted there",
            _shown(ids[~usable], labels),
        )
        ids = ids[usable]
        geom = region_geometry(regions, alpha, ids)
    # alpha range in native rows, capped at MAX_ROWS_PER_SPAN times the rows the region
    # covers (alpha that barely changes along the slice would otherwise ask for millions
    # of knots; real slices are far below the cap)
    span = MAX_ROWS_PER_SPAN * (geom.row1 - geom.row0 + 1).astype(np.float64)
    n_rows = (geom.alpha_max - geom.alpha_min) / geom.dalpha
    clamped = n_rows > span
    if clamped.any():
        log.warning(
            "Regions %s: alpha changes far less between rows than across the region; "
            "knots and bins sized from the rows the region spans (x%d)",
            _shown(ids[clamped], labels), MAX_ROWS_PER_SPAN,
        )
        n_rows = np.where(clamped, span, n_rows)
        # the native step per row used downstream (bins of the compact-source band)
        geom.dalpha = np.where(clamped, (geom.alpha_max - geom.alpha_min) / span, geom.dalpha)
    if params.nknots is not None:
        nknots = np.full(ids.size, params.nknots, dtype=np.int64)
    else:
        nknots = np.maximum(4, np.round(params.knots_per_row * n_rows)).astype(np.int64)
    if params.min_good is not None:
        min_good = np.full(ids.size, params.min_good, dtype=np.int64)
    else:
        min_good = np.floor(0.5 * n_rows).astype(np.int64)
    j0 = np.searchsorted(near, geom.row0, side="left").astype(np.int64)
    j1 = np.searchsorted(near, geom.row1, side="right").astype(np.int64)
    counts = np.zeros((ids.size, 3), dtype=np.int64)
    fitted_columns = np.zeros((ids.size, nx), dtype=np.bool_)

    threads = numba.get_num_threads() if threads is None else max(int(threads), 1)
    log.info("Fitting spline models for %d regions on %d thread(s)", ids.size, threads)
    flux = np.ascontiguousarray(flux, dtype=np.float64)
    alpha_c = np.ascontiguousarray(alpha, dtype=np.float64)
    regions = np.ascontiguousarray(regions, dtype=np.int64)
    alpha_os_c = alpha_c if same_grid else np.ascontiguousarray(alpha_os, dtype=np.float64)
    near = np.ascontiguousarray(near, dtype=np.int64)

    setups = [
        region_setup(geom, k, nknots[k], min_good[k], j0[k], j1[k], params, same_grid)
        for k in range(ids.size)
    ]
    # on one thread a sweep is one chunk; on more, chunks of REFRESH_EVERY + 1 columns
    refreshes = nx if threads == 1 else 1
    arrays = (flux, alpha_c, regions, alpha_os_c, near)
    outputs = (spline_native, model_native, spline_os)
    jobs = [_RegionJob(setups[k], arrays, outputs, counts[k], refreshes, fitted_columns[k])
            for k in range(ids.size)]  # fmt: skip
    _run_regions(jobs, threads)
    penalty = np.array([job.rel for job in jobs])
    for k, rid in enumerate(ids.tolist()):
        log.debug(
            "Region %d: %d columns fitted, %d reused a previous fit, %d rejections",
            rid, *counts[k],
        )
    return TraceFit(spline_native, model_native, spline_os, geom,
                    np.array([s.nknots for s in setups], dtype=np.int64), counts, penalty,
                    fitted_columns)
