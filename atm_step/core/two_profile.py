"""Two along-slice profiles with measured shares per column (an addition to the paper's
method).

Why
---
The spline model (`atm_step.core.trace_fit`) fits one normalised along-slice profile to
the ~100 columns of its window and scales it to each column. When two sources with
different spectra share a slice (a binary, a star beside a compact emission-line
knot), the share of each source in a column's flux changes along the window, so no
single profile describes every column. The fit reads the change as sub-pixel structure
and aliases it into wiggles one native pixel long: on the validation's binaries this
left the noise-free model at 1.5-6 times the ideal floor at every PSF width.

What
----
Each column's flux is split in two at a point ``alpha_s`` of the slice, with a smooth
weight ``w(alpha) = 1 / (1 + exp(-(alpha - alpha_s) / width))`` (``width`` half a
native row, so that pixels cross ``alpha_s`` smoothly as the trace tilts): the column
sum ``s(x)`` and the share of its right-hand part ``r(x) = sum(w y) / s(x)``. Two
profiles ``f1``, ``f2`` (cubic B-splines on the first fit's knots) are fitted jointly
by penalised least squares to ``y / s(x) = (1 - r(x)) f1(alpha) + r(x) f2(alpha)``
over the window's columns. The roughness penalty is put on the mean profile
``g = (1 - rbar) f1 + rbar f2`` (``rbar`` the region's mean share), with the first
fit's weight (``f1 = f2`` then gives back the first fit's objective), and on the
difference ``h = f2 - f1``, with that weight times the variance of the shares: ``h``
is seen only through the change of the shares, so its data weight is that much
smaller, and this gives both the same resolution. (Half the weight on each of ``f1``
and ``f2``, as first built, over-smoothed ``h``: the 0.5" binary at FWHM 2 px, noise-
free N = 3, 0.30% against 0.14% rms error against truth.) Any two column amplitudes that
mix the two sources in proportions that differ will do, since ``f1`` and ``f2`` absorb
any constant mixing: the left and right parts of the column do. The column's model is
then ``t1 f1 + t2 f2`` with its own amplitudes ``t1``, ``t2`` fitted to its pixels by
least squares (a matched filter: amplitudes from the sums would carry the noise of
every pixel of the column). ``alpha_s`` is the lowest point between the two highest
peaks of the region's mean normalised model, or its centroid where it has one peak (a
blend).

Where the trace runs nearly parallel to the rows, a window's pixels sample the profile
at a few phases only, and its fit would fill the rest from the penalty. The first fit
reuses an earlier column's profile there (paper II.3's sampling-gap test), and so does
this one: such a column takes the two profiles of the nearest column the first fit
fitted from its own window (`source_columns`, from `TraceFit.fitted_columns`), with
its own amplitudes. Without this the
right-hand third of the validation's NRS1-like slices, where the trace flattens, kept
errors of 1% of the peak between the native rows, and at FWHM 1 px the two profiles
made the binaries worse than one (3.1% -> 7.1% rms error against truth, 0.33" binary,
noise-free N = 3; with the rule 0.84%).

When
----
In a region (a slice) whose shares change from column to column, after their running
median is taken out, by at least ``SHARE_SNR`` times their noise (from the pixel errors)
and ``MIN_SHARE_CHANGE``: two sources with different spectra. One source, or one source
on smooth emission, changes its shares only with the slowly drifting pixel phase, and
keeps the single profile: there the extra freedom would model sampling, not sources
(measured: the isolated star at FWHM 2 px would go from 0.59% to 0.97% noise-free).
The region's brightest peak must be at least ``MIN_FWHM_ROWS_DIP`` native rows wide:
below about one row even one profile is poorly determined, and two double the unknowns
(the benchmark's crowded scenes, 0.77-0.99 rows, got worse in 12 of 13 slices). Where
the mean model has one peak, the split runs through it, and the shares then follow
the pixel phase as well; that peak must be at least ``MIN_FWHM_ROWS`` native rows wide
(the G395H-like star on a line nebula of docs/validation.md, 1.43 rows and no
background model, went from 1.5% to 4.6% rms error against truth). The columns modelled are those the first fit modelled whose pixels
are all finite (their sums are then their flux), and the region takes the two profiles
only if they fit its pixels no worse than the first fit (sum of squared residuals over
those columns). The test is made per region, not per column: a column that switched
between the models with the noise added scatter to the aperture spectrum (the 0.33"
binary at FWHM 2 px: 1.17x N = 1 per column, 1.08x per region). A region given a
background model (`atm_step.core.background`: a compact source on extended emission) is
left out: that model is its second component, and two profiles would read the nebula's
changing share as sub-pixel structure (the grid's star on a line nebula at FWHM 2.5 px,
noisy N = 3: 0.47% -> 0.60%, aperture scatter 0.99x -> 1.23x N = 1). Up to three passes
of rejection (``REJECT_SIGMA`` times the larger of the pixel error and the robust rms of
the residuals; at most the largest 0.2% of the region's pixels per pass, since the
residuals of a model pulled by outliers spread over the window) drop outliers from the
fit, from the test above, and from their columns' sums and shares, where the model
replaces them.
"""

import logging

import numba
import numpy as np

from atm_step.core import combine
from atm_step.core.bspline import basis_values, difference_penalty, solve_banded
from atm_step.core.jit import HELPER

__all__ = [
    "column_shares", "interleaved_penalty", "peak_fwhm", "share_change", "source_columns",
    "split_point", "two_profile_refit",
]

log = logging.getLogger(__name__)

#: width of the smooth split, in native rows
SPLIT_WIDTH_ROWS = 0.5
#: the shares must change from column to column (after a running median over
#: ``SHARE_MEDIAN_COLUMNS`` columns is taken out) by at least ``SHARE_SNR`` times their
#: noise from the pixel errors, and by at least ``MIN_SHARE_CHANGE`` (rms): the mark of
#: two sources with different spectra; one source changes its shares only with the
#: slowly drifting pixel phase. ``MIN_SHARE_CHANGE`` is set between measured cases: the
#: validation's binaries change theirs by 0.88-1.94%; the benchmark's crowded scene
#: (40 faint stars, `make_scene('crowded')`, 2048 x 2048) has five slices at 0.31-0.38%
#: whose two-profile model was worse, noise-free too (rms error against truth 12-17% ->
#: 14-32%): weak share changes give the difference profile little leverage against the
#: rest of the misfit (the PSF's change along the window, further sources)
SHARE_MEDIAN_COLUMNS = 11
SHARE_SNR = 5.0
MIN_SHARE_CHANGE = 0.005
#: a region whose mean normalised model has one peak (split at its centroid) must have
#: it at least this wide (FWHM, native rows): on a sharper peak the shares follow the
#: pixel phase, and two profiles model the sampling. Set between the measured cases:
#: 1.43 rows (the G395H-like star on a nebula) got worse, 1.76 and wider (the 0.2"
#: binary at FWHM 2 px, a blend) better; between them nothing was measured
MIN_FWHM_ROWS = 1.6
#: any region's brightest peak must be at least this wide (native rows): below about
#: one row the profile is so undersampled that one profile is poorly determined, and two
#: double the unknowns. Set between measured cases: the benchmark's crowded scenes
#: (`make_scene('crowded')`, 2048 and 256 columns) at 0.77-0.99 rows got worse in 12 of
#: 13 slices (rms error against truth e.g. 11% -> 34%), the grid's binaries at FWHM
#: 1 px (1.21-1.32 rows) and the G395H-like two sources (1.43) better
MIN_FWHM_ROWS_DIP = 1.15
#: outliers: residuals beyond this many pixel errors (or robust rms of the residuals,
#: if larger) are left out, in at most ``REJECT_PASSES`` passes
REJECT_SIGMA = 5.0
REJECT_PASSES = 3
#: at most the ``max(MIN_REJECT_CAP, npix // REJECT_CAP_FRACTION)`` largest residuals
#: beyond ``REJECT_SIGMA`` go per pass
MIN_REJECT_CAP = 10
REJECT_CAP_FRACTION = 500
#: band width (diagonals) of the interleaved normal matrix of two cubic splines
_BW = 8


def split_point(profile_alpha, profile, min_peak=0.1, max_dip=0.7, centroid=False):
    """
    Where to split a slice's columns in two.

    Parameters
    ----------
    profile_alpha, profile : ndarray, shape (n,)
        The region's mean normalised profile on increasing ``alpha`` (arcsec).
    min_peak : float, optional
        Local maxima below this fraction of the highest are not peaks.
    max_dip : float, optional
        The lowest point between the two highest peaks must be at most this fraction
        of the lower of them to count as a dip.
    centroid : bool, optional
        Without such a dip, return the profile's centroid (a blend) instead of None.

    Returns
    -------
    float or None
        ``alpha`` of the lowest point between the two highest peaks; else the centroid
        of the (clipped at zero) profile if ``centroid``; else None. None also for an
        empty or non-positive profile.

    Notes
    -----
    Not in the paper: docs/algorithm.md, "Two profiles".
    """
    profile_alpha = np.asarray(profile_alpha, dtype=np.float64)
    p = np.where(np.isfinite(profile), profile, 0.0)
    if p.size < 3 or not p.max() > 0:
        return None
    interior = (p[1:-1] >= p[:-2]) & (p[1:-1] > p[2:]) & (p[1:-1] > min_peak * p.max())
    peaks = np.flatnonzero(interior) + 1
    if peaks.size >= 2:
        top = np.sort(peaks[np.argsort(p[peaks])[-2:]])
        dip = top[0] + np.argmin(p[top[0] : top[1] + 1])
        if p[dip] <= max_dip * min(p[top[0]], p[top[1]]):
            return float(profile_alpha[dip])
    if not centroid:
        return None
    pos = np.clip(p, 0.0, None)
    return float(np.sum(profile_alpha * pos) / np.sum(pos))


def column_shares(flux, alpha, regions, rid, row0, row1, split, width, err=None):
    """
    Each column's sum over a region and the share of its part beyond ``split``.

    Parameters
    ----------
    flux, alpha : ndarray of float64, shape (ny, nx)
    regions : ndarray of int, shape (ny, nx)
    rid, row0, row1 : int
        Region id and its first and last native rows.
    split, width : float
        Split point and width of the smooth weight (alpha units).
    err : ndarray of float64, shape (ny, nx), optional
        Pixel errors (same unit as ``flux``), for ``sigma``.

    Returns
    -------
    total : ndarray of float64, shape (nx,)
        Column sums over the region's pixels.
    share : ndarray of float64, shape (nx,)
        ``sum(w y) / total``.
    complete : ndarray of bool, shape (nx,)
        Columns whose region pixels are all finite, with a positive sum.
    sigma : ndarray of float64, shape (nx,), or None
        Noise of each share from ``err`` (propagated linearly); None without ``err``.

    Notes
    -----
    Not in the paper: docs/algorithm.md, "Two profiles". The weight is
    ``1 / (1 + exp(-(alpha - split) / width))``.
    """
    rows = slice(row0, row1 + 1)
    inside = (regions[rows] == rid) & np.isfinite(alpha[rows])
    y = flux[rows]
    finite = np.isfinite(y)
    yv = np.where(inside & finite, y, 0.0)
    with np.errstate(over="ignore"):
        w = 1.0 / (1.0 + np.exp(-(np.where(inside, alpha[rows], split) - split) / width))
    total = yv.sum(axis=0)
    right = (w * yv).sum(axis=0)
    complete = ~np.any(inside & ~finite, axis=0) & (total > 0) & inside.any(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(complete, right / np.where(total > 0, total, 1.0), np.nan)
        sigma = None
        if err is not None:
            e = np.where(inside & np.isfinite(err[rows]), err[rows], 0.0)
            sigma = np.sqrt(np.sum(((w - share[None, :]) * e) ** 2, axis=0)) / np.abs(total)
    return total, share, complete, sigma


def share_change(share, complete, sigma=None):
    """
    How much the shares change from column to column, against their noise.

    Parameters
    ----------
    share : ndarray of float64, shape (nx,)
        `column_shares`' share per column.
    complete : ndarray of bool, shape (nx,)
        Columns to use.
    sigma : ndarray of float64, shape (nx,), optional
        Noise of each share (from the pixel errors).

    Returns
    -------
    change, noise : float
        Rms over the complete columns of the share minus its running median over
        ``SHARE_MEDIAN_COLUMNS`` complete columns (`scipy.ndimage.median_filter`); rms
        of ``sigma`` (0 without it). ``(0, inf)`` with fewer complete columns than that.

    Notes
    -----
    Not in the paper: the share test of docs/algorithm.md, "Two profiles".
    """
    from scipy.ndimage import median_filter

    r = np.asarray(share)[np.asarray(complete)]
    if r.size < SHARE_MEDIAN_COLUMNS:
        return 0.0, np.inf
    trend = median_filter(r, size=SHARE_MEDIAN_COLUMNS, mode="nearest")
    change = float(np.sqrt(np.mean((r - trend) ** 2)))
    if sigma is None:
        return change, 0.0
    sig = np.asarray(sigma)[np.asarray(complete)]
    sig = sig[np.isfinite(sig)]
    return change, float(np.sqrt(np.mean(sig**2))) if sig.size else np.inf


def peak_fwhm(profile_alpha, profile):
    """
    Full width at half maximum of the highest peak of a profile on a uniform grid.

    Parameters
    ----------
    profile_alpha, profile : ndarray, shape (n,)
        Uniform, increasing ``alpha`` (e.g. arcsec) and the profile there (NaN: 0).

    Returns
    -------
    float
        The run of samples at or above half the maximum around it, times the grid
        step (alpha units); 0 for an empty or non-positive profile.

    Notes
    -----
    Not in the paper: the width test of docs/algorithm.md, "Two profiles".
    """
    p = np.where(np.isfinite(profile), profile, 0.0)
    if p.size == 0 or not p.max() > 0:
        return 0.0
    top = int(np.argmax(p))
    above = p >= 0.5 * p[top]
    lo = top
    while lo > 0 and above[lo - 1]:
        lo -= 1
    hi = top
    while hi < p.size - 1 and above[hi + 1]:
        hi += 1
    step = (profile_alpha[-1] - profile_alpha[0]) / max(p.size - 1, 1)
    return float((hi - lo + 1) * step)


@numba.njit(**HELPER)
def _pixel_terms(a, a0, inv_h, nknots, q, r, vals):
    """The 8 non-zero entries of a pixel's row of the interleaved design
    ``[(1 - r) B(alpha), r B(alpha)]`` (entry ``2 m + p`` for basis ``i + m`` of profile
    ``p``); returns ``2 i``, the first coefficient."""
    i, b0, b1, b2, b3 = basis_values(a, a0, inv_h, nknots)
    vals[0] = q * b0
    vals[1] = r * b0
    vals[2] = q * b1
    vals[3] = r * b1
    vals[4] = q * b2
    vals[5] = r * b2
    vals[6] = q * b3
    vals[7] = r * b3
    return 2 * i


@numba.njit(**HELPER)
def _model_value(a, a0, inv_h, nknots, t1, t2, coef, vals):
    """``t1 f1(a) + t2 f2(a)`` for the interleaved coefficients ``coef``."""
    base = _pixel_terms(a, a0, inv_h, nknots, t1, t2, vals)
    v = 0.0
    for u in range(_BW):
        v += vals[u] * coef[base + u]
    return v


@numba.njit(cache=True, nogil=True)
def _column_normals(flux, alpha, regions, rid, row0, row1, a0, a1, nknots, total, share,
                    complete, keep, cum_a, cum_b):  # fmt: skip
    """Prefix sums over columns of the normal equations of ``y / total`` on the
    interleaved design: ``cum_a[x]``, ``cum_b[x]`` hold columns ``0 .. x - 1``."""
    nx = flux.shape[1]
    n2 = cum_b.shape[1]
    inv_h = nknots / (a1 - a0)
    vals = np.empty(_BW)
    for x in range(nx):
        for i in range(n2):
            cum_b[x + 1, i] = cum_b[x, i]
            for d in range(_BW):
                cum_a[x + 1, i, d] = cum_a[x, i, d]
        if not complete[x]:
            continue
        r = share[x]
        q = 1.0 - r
        inv_s = 1.0 / total[x]
        for y in range(row0, row1 + 1):
            if regions[y, x] != rid or not keep[y, x]:
                continue
            a = alpha[y, x]
            v = flux[y, x] * inv_s
            if not (np.isfinite(a) and np.isfinite(v)):
                continue
            base = _pixel_terms(a, a0, inv_h, nknots, q, r, vals)
            for u in range(_BW):
                cum_b[x + 1, base + u] += vals[u] * v
                for d in range(_BW - u):
                    cum_a[x + 1, base + u, d] += vals[u] * vals[u + d]


@numba.njit(**HELPER)
def _window_system(cum_a, cum_b, lo, hi, m, rhs):
    """Normal equations of columns ``lo .. hi`` into ``m`` (band) and ``rhs``."""
    for i in range(cum_b.shape[1]):
        rhs[i] = cum_b[hi + 1, i] - cum_b[lo, i]
        for d in range(_BW):
            m[i, d] = cum_a[hi + 1, i, d] - cum_a[lo, i, d]


def interleaved_penalty(pen, mean_share=0.5, kappa=0.25):
    """
    The band of the two-profile roughness penalty: ``|D g|^2 + kappa |D h|^2`` on the
    mean profile ``g = (1 - mean_share) f1 + mean_share f2`` and the difference
    ``h = f2 - f1``, in the interleaved coefficients of ``f1`` and ``f2``.

    Parameters
    ----------
    pen : ndarray of float64, shape (ncoef, 4)
        One profile's band of ``D^T D`` (`atm_step.core.bspline.difference_penalty`).
    mean_share : float, optional
        The share ``r`` of the second profile in the mean profile.
    kappa : float, optional
        Weight of the difference's roughness against the mean's. The defaults give
        ``(|D f1|^2 + |D f2|^2) / 2``, half the first fit's weight on each profile.

    Returns
    -------
    ndarray of float64, shape (2 ncoef, 8)
        Upper band of the symmetric penalty matrix on coefficients ``2 k + p``
        (basis ``k`` of profile ``p``). With the first fit's weight, ``f1 = f2`` gives
        back its penalty.

    Notes
    -----
    Not in the paper: docs/algorithm.md, "Two profiles". With
    ``w = (1 - mean_share, mean_share)`` and ``v = (-1, 1)`` the entry of basis pair
    ``(k, p), (k', p')`` is ``(D^T D)[k, k'] (w_p w_p' + kappa v_p v_p')``; offsets of
    up to three bases stay inside the band of 8.
    """
    ncoef = pen.shape[0]
    w0, w1 = 1.0 - float(mean_share), float(mean_share)
    kappa = float(kappa)
    out = np.zeros((2 * ncoef, _BW))
    out[0::2, 0:_BW:2] = pen * (w0 * w0 + kappa)  # f1 with f1
    out[1::2, 0:_BW:2] = pen * (w1 * w1 + kappa)  # f2 with f2
    out[0::2, 1:_BW:2] = pen * (w0 * w1 - kappa)  # f1_k with f2_(k+d), d >= 0
    out[1::2, 1:_BW - 2:2] = pen[:, 1:] * (w0 * w1 - kappa)  # f2_k with f1_(k+d), d >= 1
    return out


def source_columns(fitted):
    """
    The column whose window each column's two profiles come from.

    The first fit's sampling-gap rule (paper II.3): where the trace runs nearly
    parallel to the rows, a window's pixels do not sample every phase of the profile,
    and its fit would fill the gaps from the roughness penalty alone. There the first
    fit reuses an earlier column's profile, and so do the two profiles: such a column
    takes the fit of the nearest column that the first fit fitted from its own window,
    with its own amplitudes.

    Parameters
    ----------
    fitted : ndarray of bool, shape (nx,)
        The region's columns fitted from their own window
        (`atm_step.core.trace_fit.TraceFit.fitted_columns`).

    Returns
    -------
    ndarray of int64, shape (nx,)
        The column whose window to fit (the nearer one, the left on a tie), -1 for
        every column if the first fit fitted none.
    """
    fitted = np.asarray(fitted, dtype=bool)
    nx = fitted.size
    ok = np.flatnonzero(fitted)
    if ok.size == 0:
        return np.full(nx, -1, dtype=np.int64)
    x = np.arange(nx)
    right = np.clip(np.searchsorted(ok, x), 0, ok.size - 1)
    left = np.clip(right - 1, 0, ok.size - 1)
    return np.where(np.abs(ok[left] - x) <= np.abs(ok[right] - x), ok[left], ok[right]).astype(np.int64)


@numba.njit(cache=True, nogil=True)
def _fit_two_profiles(flux, alpha, regions, alpha_os, near, rid, row0, row1, j0, j1, a0, a1,
                      nknots, total, share, complete, keep, source, window, lam, pen, cum_a,
                      cum_b, old_native, old_os, new_native, new_os, chosen, rss):  # fmt: skip
    """For every complete column the first fit modelled: solve the penalised normal
    equations of the window around column ``source[x]`` (`source_columns`; prefix sums
    ``cum_a``, ``cum_b``; ``pen``, `interleaved_penalty`, times ``lam``), fit the
    column's two amplitudes
    and write the two-profile model at the column's native and oversampled pixels where
    the first fit wrote one (``chosen[x]`` = 1); ``rss[x]`` receives the sums of squared
    residuals of the column's native pixels under the new and the first model.
    ``new_native`` and ``new_os`` hold the region's rows only: native rows
    ``row0 .. row1`` and oversampled rows ``j0 .. j1 - 1``."""
    nx = flux.shape[1]
    n2 = cum_b.shape[1]
    inv_h = nknots / (a1 - a0)
    m = np.empty((n2, _BW))
    rhs = np.empty(n2)
    chol = np.empty((n2, _BW))
    coef = np.empty(n2)
    vals = np.empty(_BW)
    solved = -1  # the source column whose window ``coef`` holds
    for x in range(nx):
        chosen[x] = 0
        rss[x, 0] = 0.0
        rss[x, 1] = 0.0
        xs = source[x]
        if not complete[x] or xs < 0:
            continue
        modelled = False
        for y in range(row0, row1 + 1):
            if regions[y, x] == rid and np.isfinite(old_native[y, x]):
                modelled = True
                break
        if not modelled:
            continue
        if xs != solved:
            _window_system(cum_a, cum_b, max(0, xs - window), min(nx - 1, xs + window), m, rhs)
            solved = -1
            if not solve_banded(m, pen, lam, rhs, chol, coef):
                continue
            solved = xs
        # the column's amplitudes of the two profiles: least squares on its own pixels
        # (a matched filter; the shares from sums carry the noise of every pixel)
        g11 = 0.0
        g12 = 0.0
        g22 = 0.0
        h1 = 0.0
        h2 = 0.0
        for y in range(row0, row1 + 1):
            if regions[y, x] != rid or not keep[y, x] or not np.isfinite(old_native[y, x]):
                continue
            base = _pixel_terms(alpha[y, x], a0, inv_h, nknots, 1.0, 0.0, vals)
            p1 = 0.0
            p2 = 0.0
            for mm in range(4):
                p1 += vals[2 * mm] * coef[base + 2 * mm]
                p2 += vals[2 * mm] * coef[base + 2 * mm + 1]
            g11 += p1 * p1
            g12 += p1 * p2
            g22 += p2 * p2
            h1 += p1 * flux[y, x]
            h2 += p2 * flux[y, x]
        det = g11 * g22 - g12 * g12
        if not det > 1e-12 * (g11 * g22):
            continue
        t1 = (g22 * h1 - g12 * h2) / det
        t2 = (g11 * h2 - g12 * h1) / det
        rss_new = 0.0
        rss_old = 0.0
        for y in range(row0, row1 + 1):
            if regions[y, x] != rid or not np.isfinite(old_native[y, x]):
                continue
            v = _model_value(alpha[y, x], a0, inv_h, nknots, t1, t2, coef, vals)
            new_native[y - row0, x] = v
            if keep[y, x]:  # rejected outliers fit neither model
                d_new = flux[y, x] - v
                d_old = flux[y, x] - old_native[y, x]
                rss_new += d_new * d_new
                rss_old += d_old * d_old
        rss[x, 0] = rss_new
        rss[x, 1] = rss_old
        chosen[x] = 1
        for j in range(j0, j1):
            if regions[near[j], x] != rid or not np.isfinite(old_os[j, x]):
                continue
            new_os[j - j0, x] = _model_value(alpha_os[j, x], a0, inv_h, nknots, t1, t2, coef,
                                             vals)


def two_profile_refit(fit, work, err, alpha, regions, alpha_os, near, params, skip=()):
    """
    Replace the trace model of the fitted regions, column by column, by the
    two-profile model of the module docstring where it passes its tests.

    Parameters
    ----------
    fit : atm_step.core.trace_fit.TraceFit
        The first fit; ``spline_native`` and ``spline_os`` are updated in place
        (``model_native``, which defines the compact-source band, is not).
    work : ndarray of float64, shape (ny, nx)
        The image the first fit modelled.
    err : ndarray of float64, shape (ny, nx), or None
        Pixel errors, for the rejection (None: the rms of the residuals).
    alpha, regions : ndarray, shape (ny, nx)
    alpha_os : ndarray of float64, shape (ny_os, nx)
    near : ndarray of int64, shape (ny_os,)
        `atm_step.core.grid.nearest_native_row`.
    params : FitParameters
    skip : collection of int, optional
        Region ids left as they are (those given a background model, whose second
        component that model is).

    Returns
    -------
    int
        Number of columns whose model was replaced, over all regions.
    """
    geom = fit.geometry
    nx = work.shape[1]
    shared = fit.spline_os is fit.spline_native
    n_replaced = 0
    skip = {int(r) for r in skip}
    keep = np.ones(work.shape, dtype=bool)  # pixels kept by the rejection (region rows reset)
    for k, rid in enumerate(geom.ids.tolist()):
        if rid in skip:
            continue
        row0, row1 = int(geom.row0[k]), int(geom.row1[k])
        a0, a1 = float(geom.alpha_min[k]), float(geom.alpha_max[k])
        if not (a1 > a0 and np.isfinite(geom.dalpha[k]) and geom.dalpha[k] > 0):
            continue
        nknots = int(fit.nknots[k])
        ncoef = nknots + 3
        nbins = 4 * nknots
        profile = combine.mean_profile(fit.model_native, alpha, regions, rid, row0, row1, a0,
                                       (a1 - a0) / nbins, nbins)
        centres = a0 + (np.arange(nbins) + 0.5) * (a1 - a0) / nbins
        drow = float(geom.dalpha[k])
        fwhm_rows = peak_fwhm(centres, profile) / drow
        if fwhm_rows < MIN_FWHM_ROWS_DIP:
            continue
        split = split_point(centres, profile)
        if split is None:
            # one peak (a blend, or one source on extended emission): split at its
            # centroid, through the peak, only if the peak is wide enough
            if fwhm_rows < MIN_FWHM_ROWS:
                continue
            split = split_point(centres, profile, centroid=True)
            if split is None:
                continue
        width = SPLIT_WIDTH_ROWS * drow
        total, share, complete, sigma = column_shares(work, alpha, regions, rid, row0, row1,
                                                      split, width, err)
        if not complete.any():
            continue
        rows = slice(row0, row1 + 1)
        inside = regions[rows] == rid
        change, noise = share_change(share, complete, sigma)
        if not (change >= SHARE_SNR * noise and change >= MIN_SHARE_CHANGE):
            continue
        log.debug("Region %d: shares change %.4f (noise %.4f), peak FWHM %.2f rows, split at %.3f",
                  rid, change, noise, fwhm_rows, split)
        npix = int(np.count_nonzero(inside & np.isfinite(work[rows]) & np.isfinite(alpha[rows])))
        lam = float(fit.penalty[k]) * npix / nx * (2 * params.window + 1) / ncoef
        # the mean profile keeps the first fit's weight; the difference is seen through
        # the change of the shares only, so its weight scales with their variance: the
        # same resolution for both
        r = share[complete]
        pen = interleaved_penalty(difference_penalty(ncoef, params.penalty_order),
                                  float(np.mean(r)), float(np.var(r)))
        source = source_columns(fit.fitted_columns[k])
        if shared:
            j0, j1 = row0, row1 + 1
            a_os, near_k = alpha, np.arange(work.shape[0], dtype=np.int64)
        else:
            j0, j1 = (int(v) for v in np.searchsorted(near, [row0, row1 + 1]))
            a_os, near_k = alpha_os, near
        keep[rows] = True
        chosen = np.zeros(nx, dtype=np.int64)
        # prefix sums: row 0 is zero, every later row is written by `_column_normals`
        cum_a = np.empty((nx + 1, 2 * ncoef, _BW))
        cum_b = np.empty((nx + 1, 2 * ncoef))
        cum_a[0] = 0.0
        cum_b[0] = 0.0
        for attempt in range(REJECT_PASSES + 1):
            new_native = fit.spline_native[rows].copy()
            new_os = new_native if shared else fit.spline_os[j0:j1].copy()
            _column_normals(work, alpha, regions, rid, row0, row1, a0, a1, nknots, total, share,
                            complete, keep, cum_a, cum_b)
            rss = np.zeros((nx, 2))
            _fit_two_profiles(work, alpha, regions, a_os, near_k, rid, row0, row1, j0, j1, a0, a1,
                              nknots, total, share, complete, keep, source, int(params.window),
                              lam, pen, cum_a, cum_b, fit.spline_native, fit.spline_os, new_native, new_os,
                              chosen, rss)
            if attempt == REJECT_PASSES:
                break
            # rejection against the new model: the larger of the pixel error and the
            # residuals' robust rms (at high signal-to-noise the model's own error, not
            # the noise, sets the residuals)
            resid = work[rows] - new_native
            good = inside & keep[rows] & np.isfinite(resid)
            med = np.median(np.abs(resid[good])) if good.any() else 0.0
            scale = np.full(resid.shape, 1.4826 * med if med > 0 else np.inf)
            if err is not None:
                scale = np.fmax(scale, np.where(np.isfinite(err[rows]), err[rows], 0.0))
            with np.errstate(invalid="ignore", divide="ignore"):
                z = np.where(good, np.abs(resid) / scale, 0.0)
            bad = z > REJECT_SIGMA
            if not bad.any():
                break
            # the worst first: residuals of a model pulled by outliers spread over the
            # window, and would otherwise take good pixels with them
            cap = max(MIN_REJECT_CAP, npix // REJECT_CAP_FRACTION)
            if np.count_nonzero(bad) > cap:
                bad = z >= np.partition(z[bad], -cap)[-cap]
            keep[rows] &= ~bad
            # the sums and shares of the columns, with the rejected pixels replaced by
            # the model (an outlier would spoil its column's amplitudes)
            filled = np.where(keep[rows], work[rows], new_native)
            total, share, _, _ = column_shares(filled, alpha[rows], regions[rows], rid, 0,
                                               row1 - row0, split, width)
        if not rss[:, 0].sum() <= rss[:, 1].sum():
            log.debug("Region %d: one profile kept (two fit its pixels worse)", rid)
            continue
        fit.spline_native[rows][inside] = new_native[inside]
        if not shared:
            inside_os = regions[near[j0:j1], :] == rid
            fit.spline_os[j0:j1][inside_os] = new_os[inside_os]
        n_replaced += int(chosen.sum())
    log.debug("Two-profile trace model in %d columns", n_replaced)
    return n_replaced
