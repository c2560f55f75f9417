"""A slow, readable reference of the spline model built on NumPy/scipy, used by tests.

`reference_fit_region` is the whole per-column algorithm of
`atm_step.core.trace_fit` (missing-flux-corrected norms, sampling-gap test, fit,
iterative rejection, reuse of the previous fit, column scale, rescaling of damaged
columns), every column fitted from scratch, so that the compiled sliding-window
kernels can be checked against it. `reference_region_model` is the bare
least-squares part by :func:`scipy.interpolate.make_lsq_spline`.
`reference_shrink_band_residual` is the Wiener-weighted residual of
`atm_step.core.combine.shrink_band_residual`, in whole-array NumPy.
`reference_two_profile_column` is one column of `atm_step.core.two_profile`, dense.
"""

import numpy as np
import scipy.linalg
from scipy.interpolate import BSpline, make_lsq_spline

from atm_step.core.stats import region_geometry

__all__ = [
    "uniform_knot_vector",
    "reference_lsq_spline",
    "reference_region_model",
    "reference_column_norms",
    "reference_column_scale",
    "reference_column_scale_offset",
    "reference_fit_region",
    "reference_shrink_band_residual",
    "reference_two_profile_column",
]


def uniform_knot_vector(a0, a1, nknots):
    """
    Knot vector of the uniform cubic B-spline space used by the core.

    Parameters
    ----------
    a0, a1 : float
        Ends of the knot range.
    nknots : int
        Number of intervals.

    Returns
    -------
    ndarray of float64, shape (nknots + 7,)
        ``a0 + h * arange(-3, nknots + 4)`` with ``h = (a1 - a0) / nknots``.
    """
    h = (a1 - a0) / nknots
    return a0 + h * np.arange(-3, nknots + 4)


def reference_lsq_spline(alpha, values, a0, a1, nknots):
    """
    Unweighted least-squares cubic spline on uniform knots, by scipy.

    Parameters
    ----------
    alpha, values : ndarray of float, shape (n,)
        Finite samples, ``a0 <= alpha <= a1``.
    a0, a1 : float
    nknots : int

    Returns
    -------
    scipy.interpolate.BSpline
    """
    order = np.argsort(alpha, kind="stable")
    return make_lsq_spline(
        alpha[order], values[order], uniform_knot_vector(a0, a1, nknots), k=3
    )


def reference_region_model(flux, alpha, regions, rid, params, nknots):
    """
    Normalised spline model of one region, each column fitted from scratch with scipy.

    Only the plain least-squares part of the core's recipe is reproduced (ascending
    column order, window of ``params.window`` columns, columns with more than
    ``params.min_good`` finite pixels); rejection and the sampling-gap test are left
    out, so compare with the core run with ``sigma_reject`` large and ``gap_ratio``
    large.

    Parameters
    ----------
    flux, alpha : ndarray of float64, shape (ny, nx)
    regions : ndarray of int, shape (ny, nx)
    rid : int
        Region id.
    params : FitParameters
    nknots : int

    Returns
    -------
    ndarray of float64, shape (ny, nx)
        Normalised model at the region's pixels of every fitted column, NaN elsewhere.
    """
    geom = region_geometry(regions, alpha, np.array([rid]))
    a0, a1 = geom.alpha_min[0], geom.alpha_max[0]
    inside = (regions == rid) & np.isfinite(flux) & np.isfinite(alpha)
    colsum = np.where(inside, flux, 0.0).sum(axis=0)
    norm = np.where(inside & (colsum > 0), flux / np.where(colsum > 0, colsum, 1), np.nan)
    ngood = np.where(colsum > 0, inside.sum(axis=0), 0)
    model = np.full(flux.shape, np.nan)
    nx = flux.shape[1]
    for c in range(nx):
        if ngood[c] <= params.min_good:
            continue
        lo, hi = max(c - params.window, 0), min(c + params.window, nx - 1)
        win = np.isfinite(norm[:, lo : hi + 1])
        spline = reference_lsq_spline(
            alpha[:, lo : hi + 1][win], norm[:, lo : hi + 1][win], a0, a1, nknots
        )
        rows = (regions[:, c] == rid) & np.isfinite(alpha[:, c])
        wa = alpha[:, lo : hi + 1][win]
        rows &= (alpha[:, c] >= wa.min()) & (alpha[:, c] <= wa.max())
        model[rows, c] = spline(alpha[rows, c])
    return model


# --------------------------------------------------------------------------------------
# The whole per-column algorithm of `atm_step.core.trace_fit`, readable and slow
# --------------------------------------------------------------------------------------
def reference_column_norms(flux, alpha, regions, rid, a0, a1, nbins, max_missing):
    """
    Column normalisations corrected for missing pixels (see `trace_fit.column_norms`).

    Parameters
    ----------
    flux, alpha : ndarray of float64, shape (ny, nx)
    regions : ndarray of int, shape (ny, nx)
    rid : int
    a0, a1 : float
        Alpha range of the region.
    nbins : int
        Bins of the wavelength-collapsed profile.
    max_missing : float
        Columns whose missing pixels held more than this fraction of the flux get NaN.

    Returns
    -------
    norm : ndarray, shape (nx,)
    ngood : ndarray of int, shape (nx,)
    """
    inside = (regions == rid) & np.isfinite(alpha)
    good = inside & np.isfinite(flux)
    total = np.where(good, flux, 0.0).sum(axis=0)
    ngood = good.sum(axis=0)
    intact = (ngood == inside.sum(axis=0)) & (total > 0)
    k = np.zeros(alpha.shape, dtype=np.int64)  # profile bin of each pixel
    k[inside] = np.clip(((alpha[inside] - a0) * (nbins / (a1 - a0))).astype(np.int64), 0, nbins - 1)
    use = inside & intact[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        normed = np.where(use, flux / np.where(intact, total, 1.0)[None, :], 0.0)
    psum = np.bincount(k[use], weights=normed[use], minlength=nbins)
    pcnt = np.bincount(k[use], minlength=nbins)
    profile = np.where(pcnt > 0, np.maximum(psum / np.maximum(pcnt, 1), 0.0), 0.0)
    expect = np.where(inside, profile[k], 0.0).sum(axis=0)
    missing = np.where(inside & ~np.isfinite(flux), profile[k], 0.0).sum(axis=0)
    frac = np.where(expect > 0, missing / np.where(expect > 0, expect, 1.0), 0.0)
    norm = np.where((total > 0) & (frac <= max_missing), total / (1.0 - frac), np.nan)
    norm = np.where(intact, total, norm)
    return norm, ngood


def reference_column_scale(data, model, top, clip):
    """
    Scale of the normalised model to a column (see `trace_fit.column_scale`).

    Parameters
    ----------
    data, model : ndarray of float, shape (n,)
    top : int
    clip : float

    Returns
    -------
    float
        NaN if no pixel is usable.
    """
    ok = np.isfinite(data) & np.isfinite(model) & (model > 0) & (data >= 0)
    if not ok.any():
        return np.nan
    w = model[ok]
    r = data[ok] / model[ok]
    seed = r[np.argsort(-w, kind="stable")[:top]]
    centre = np.median(seed)
    rms = np.std(seed)
    tol = clip * rms if rms > 0 else 1e-9 * abs(centre)
    keep = np.abs(r - centre) <= tol
    if not w[keep].sum() > 0:
        return centre
    return float(np.sum(w[keep] * r[keep]) / np.sum(w[keep]))


def reference_column_scale_offset(data, model, fallback):
    """
    Scale of the normalised model to a column fitted with a constant offset (see
    `trace_fit.column_scale_offset`), by `numpy.linalg.lstsq`.

    Parameters
    ----------
    data, model : ndarray of float, shape (n,)
    fallback : float
        Returned when the fit is not well posed (the kernel's tests).

    Returns
    -------
    float
    """
    from atm_step.core.trace_fit import OFFSET_MIN_PROFILE, OFFSET_MIN_SHAPE

    fm = np.isfinite(model)
    ok = fm & np.isfinite(data)
    total = np.maximum(model[fm], 0).sum()
    if ok.sum() < 6 or not total > 0 or np.maximum(model[ok], 0).sum() < OFFSET_MIN_PROFILE * total:
        return fallback
    m = model[ok]
    if not np.sum((m - m.mean()) ** 2) > OFFSET_MIN_SHAPE * np.sum(m**2):
        return fallback
    (scale, _offset), *_ = np.linalg.lstsq(np.column_stack([m, np.ones_like(m)]), data[ok], rcond=None)
    return float(scale) if scale > 0 else fallback


def _window_points(norm_img, alpha, c, window):
    """Finite normalised pixels of columns ``c - window .. c + window``: columns, rows,
    alpha and values."""
    nx = norm_img.shape[1]
    lo, hi = max(c - window, 0), min(c + window, nx - 1)
    rows, cols = np.nonzero(np.isfinite(norm_img[:, lo : hi + 1]))
    cols = cols + lo
    return cols, rows, alpha[rows, cols], norm_img[rows, cols]


def _largest_gap(a, a0, binw, nfine):
    """Largest run of empty histogram bins (of width ``binw`` from ``a0``) between the
    lowest and highest sample, as a length: the kernel's sampling-gap measure."""
    k = np.clip(((a - a0) / binw).astype(np.int64), 0, nfine - 1)
    occupied = np.bincount(k, minlength=nfine)[k.min() : k.max() + 1] > 0
    longest = run = 0
    for filled in occupied:
        run = 0 if filled else run + 1
        longest = max(longest, run)
    return (longest + 1) * binw if longest > 0 else 0.0


def difference_matrix(ncoef, order):
    """The ``order``-th difference matrix ``D``, shape (ncoef - order, ncoef)."""
    return np.diff(np.eye(ncoef), n=order, axis=0)


def _least_squares(design, values, ridge_scale, lam=0.0, order=2, hat_trace=False):
    """
    Penalised normal-equation solution ``(B^T B + lam D^T D + ridge) c = B^T v`` with
    the kernel's relative ridge; None if singular. ``design`` is a sparse (CSR)
    B-spline design matrix. With ``hat_trace`` also returns ``trace(M^-1 B^T B)``,
    the effective number of parameters.
    """
    ata = (design.T @ design).toarray()
    dmax = np.max(np.diag(ata))
    if not dmax > 0:
        return (None, np.nan) if hat_trace else None
    dmat = difference_matrix(ata.shape[0], order)
    mat = ata + lam * dmat.T @ dmat
    mat[np.diag_indices_from(mat)] += ridge_scale * dmax
    try:
        coef = scipy.linalg.solve(mat, design.T @ values, assume_a="pos")
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        return (None, np.nan) if hat_trace else None
    if hat_trace:
        return coef, float(np.trace(scipy.linalg.solve(mat, ata, assume_a="pos")))
    return coef


def _robust(design, v, params, lam, ridge):
    """Fit with iterative rejection (restarted from nothing): coefficients (None if
    the first fit fails) and the mask of kept points."""
    keep = np.ones(v.size, bool)
    order = params.penalty_order
    coef = _least_squares(design, v, ridge, lam, order)
    for _ in range(params.max_iter - 1):
        if coef is None:
            break
        resid = v[keep] - design[keep] @ coef
        limit = params.sigma_reject * np.std(resid)
        out = keep.copy()
        out[keep] = np.abs(resid) > limit
        if not out.any() or (~keep).sum() + out.sum() > params.max_reject_fraction * v.size:
            break
        keep &= ~out
        trial = _least_squares(design[keep], v[keep], ridge, lam, order)
        if trial is None:
            break
        coef = trial
    return coef, keep


def reference_choose_penalty(norm_img, alpha, norm, ngood, params, knots, min_good, gap_h,
                             scale):  # fmt: skip
    """
    Relative penalty weight by generalised cross-validation (see
    `trace_fit._choose_penalty`): in each of ``GCV_WINDOWS`` stretches of columns the
    window of the column with the largest norm is fitted (with rejection) for each
    weight of ``GCV_LOG_GRID``; ``GCV = n RSS / (n - trace H)**2`` picks one per
    stretch, and the median over stretches is returned.
    """
    from atm_step.core.bspline import RIDGE
    from atm_step.core.trace_fit import (
        FINE_BINS_PER_KNOT, GCV_FALLBACK, GCV_LOG_GRID, GCV_WINDOWS,
    )  # fmt: skip

    nx = norm_img.shape[1]
    nknots = knots.size - 7
    a0 = knots[3]
    binw = (knots[-4] - a0) / nknots / FINE_BINS_PER_KNOT
    chosen = []
    for q in range(GCV_WINDOWS):
        cols = np.arange(q * nx // GCV_WINDOWS, (q + 1) * nx // GCV_WINDOWS)
        cols = cols[(ngood[cols] > min_good) & (norm[cols] > 0)]
        if cols.size == 0:
            continue
        c = cols[np.argmax(norm[cols])]
        _, _, a, v = _window_points(norm_img, alpha, c, params.window)
        if a.size <= nknots + 3 or _largest_gap(a, a0, binw, nknots * FINE_BINS_PER_KNOT + 1) > params.gap_ratio * gap_h:
            continue
        design = BSpline.design_matrix(a, knots, 3).tocsr()
        scores = []
        for g in GCV_LOG_GRID:
            lam = 10.0**g * scale
            coef, keep = _robust(design, v, params, lam, RIDGE)
            if coef is None:
                scores.append(np.inf)
                continue
            coef, edf = _least_squares(design[keep], v[keep], RIDGE, lam, params.penalty_order, True)
            rss = np.sum((v[keep] - design[keep] @ coef) ** 2)
            n = keep.sum()
            scores.append(n * rss / (n - edf) ** 2 if n > edf else np.inf)
        if np.isfinite(np.min(scores)):
            chosen.append(GCV_LOG_GRID[int(np.argmin(scores))])
    return 10.0 ** np.median(chosen) if chosen else GCV_FALLBACK


def reference_fit_region(flux, alpha, regions, rid, params, nknots, min_good):
    """
    The whole spline model of one region, column by column, in NumPy/scipy.

    The same recipe as the compiled `atm_step.core.trace_fit` (module docstring),
    written plainly: missing-flux-corrected column norms, for each column (in the
    column order) the window's points gathered afresh, the sampling-gap test,
    a least-squares fit by `scipy.interpolate.BSpline.design_matrix`, iterative
    rejection restarted from nothing, reuse of the previous fit (the first fit, for
    the columns before it in the column order), the column scale,
    and the rescaling of columns that lost most of their flux. Used by tests to check
    the sliding-window kernel.

    Parameters
    ----------
    flux, alpha : ndarray of float64, shape (ny, nx)
    regions : ndarray of int, shape (ny, nx)
    rid : int
    params : FitParameters
    nknots, min_good : int
        Base knot intervals (refined by ``params.knot_factor``) and ``min_good``.

    Returns
    -------
    model : ndarray of float64, shape (ny, nx)
        Normalised model at the region's pixels (NaN elsewhere).
    spline : ndarray of float64, shape (ny, nx)
        Scaled model.
    counts : tuple of int
        Columns fitted, columns reusing a previous fit, rejections.
    penalty : float
        The relative penalty weight used.
    """
    from atm_step.core.bspline import RIDGE
    from atm_step.core.trace_fit import FINE_BINS_PER_KNOT, MAX_MISSING_FLUX

    geom = region_geometry(regions, alpha, np.array([rid]))
    a0, a1 = float(geom.alpha_min[0]), float(geom.alpha_max[0])
    gap_h = (a1 - a0) / nknots  # the gap test's unit: the unrefined knot interval
    nknots = max(int(round(params.knot_factor * nknots)), 1)
    binw = (a1 - a0) / nknots / FINE_BINS_PER_KNOT
    nfine = nknots * FINE_BINS_PER_KNOT + 1
    knots = uniform_knot_vector(a0, a1, nknots)
    ny, nx = flux.shape
    norm, ngood = reference_column_norms(
        flux, alpha, regions, rid, a0, a1, 2 * nknots, MAX_MISSING_FLUX
    )
    inside = (regions == rid) & np.isfinite(alpha)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm_img = np.where(inside & np.isfinite(flux) & (norm > 0)[None, :], flux / norm, np.nan)
    # penalty weights are relative to the window's points per coefficient
    scale = np.isfinite(norm_img).sum() / nx * (2 * params.window + 1) / (nknots + 3)
    if params.penalty is None:
        rel = reference_choose_penalty(norm_img, alpha, norm, ngood, params, knots, min_good,
                                       gap_h, scale)  # fmt: skip
    else:
        rel = params.penalty
    lam = rel * scale
    model = np.full(flux.shape, np.nan)
    spline = np.full(flux.shape, np.nan)
    scales = np.full(nx, np.nan)
    n_fit = n_reuse = n_rej = 0
    if params.column_order == "ascending":
        sweeps = [range(nx)]
    elif params.column_order == "descending":
        sweeps = [range(nx - 1, -1, -1)]
    else:
        sweeps = [range(0, nx // 2 + 1), range(nx - 1, nx // 2, -1)]

    def model_column(c, fit):
        coef, lo, hi = fit
        rows_c = np.nonzero(inside[:, c] & (alpha[:, c] >= lo) & (alpha[:, c] <= hi))[0]
        m = BSpline(knots, coef, 3)(alpha[rows_c, c])
        model[rows_c, c] = m
        scales[c] = reference_column_scale(flux[rows_c, c], m, params.scale_top,
                                           params.scale_sigma)  # fmt: skip
        if params.scale_offset and np.isfinite(scales[c]):
            scales[c] = reference_column_scale_offset(flux[rows_c, c], m, scales[c])
        if np.isfinite(scales[c]):
            spline[rows_c, c] = scales[c] * m

    for columns in sweeps:
        prev = None
        waiting = []  # the sweep's columns before its first fit: they take that fit
        for c in columns:
            if ngood[c] <= min_good:
                continue
            cols, rows, a, v = _window_points(norm_img, alpha, c, params.window)
            coef = None
            if a.size > nknots + 3 and _largest_gap(a, a0, binw, nfine) <= params.gap_ratio * gap_h:
                design = BSpline.design_matrix(a, knots, 3).tocsr()
                coef, keep = _robust(design, v, params, lam, RIDGE)
                if coef is not None:
                    n_fit += 1
                    n_rej += int((~keep).sum())
                    prev = (coef, a.min(), a.max())
                    for w in waiting:
                        model_column(w, prev)
                    n_reuse += len(waiting)
                    waiting = []
            if coef is None:
                if prev is None:
                    waiting.append(c)
                    continue
                n_reuse += 1
            model_column(c, prev)
    # columns that lost most of their flux take the scale of intact neighbours
    intact = np.isfinite(norm) & np.isfinite(scales)
    for c in np.nonzero(~np.isfinite(norm) & np.isfinite(scales))[0]:
        left = [x for x in range(c - 1, max(c - params.window, 0) - 1, -1) if intact[x]][:1]
        right = [x for x in range(c + 1, min(c + params.window, nx - 1) + 1) if intact[x]][:1]
        if not left and not right:
            continue
        new = np.interp(c, left + right, scales[left + right])
        spline[:, c] *= new / scales[c]
    return model, spline, (n_fit, n_reuse, n_rej), rel


def reference_shrink_band_residual(trace, residual, band, sigma, regions_os, k):
    """
    The Wiener-weighted, flux-keeping residual inside the band, in NumPy.

    Parameters
    ----------
    trace, residual : ndarray of float64, shape (ny_os, nx)
        The oversampled trace model and (unweighted) residual model; ``trace +
        residual`` is the combined image inside the band.
    band : ndarray of bool, shape (ny_os, nx)
    sigma : ndarray of float64, shape (ny_os, nx)
        Errors interpolated like the residual, before the error inflation.
    regions_os : ndarray of int, shape (ny_os, nx)
        Region of each oversampled pixel's nearest native pixel.
    k : float

    Returns
    -------
    flux, residual : ndarray of float64, shape (ny_os, nx)
        Inside the band where the residual is finite: ``trace + residual`` and the
        weighted residual, each run's removed residual flux spread evenly over it;
        elsewhere NaN.
    """
    ny, nx = trace.shape
    t, r, b, e, g = (a.T.ravel() for a in (trace, residual, band, k * sigma, regions_os))
    # a run: consecutive band pixels of one region in one column
    first = np.arange(t.size) % ny == 0
    cont = np.zeros(t.size, dtype=bool)
    cont[1:] = b[:-1] & (g[1:] == g[:-1])
    run = np.cumsum(b & (first | ~cont)) - 1
    use = b & np.isfinite(r)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(np.isfinite(e) & (e > 0), r**2 / (r**2 + e**2), 1.0)
    nrun = int(run.max(initial=-1)) + 1
    lost = np.bincount(run[use], ((1 - w) * r)[use], nrun)
    count = np.bincount(run[use], minlength=nrun)
    out = np.full(t.size, np.nan)
    out[use] = w[use] * r[use] + lost[run[use]] / count[run[use]]
    res = out.reshape(nx, ny).T
    return trace + res, res


def _design(alpha, knots):
    """Dense cubic B-spline design matrix on ``knots`` (scipy)."""
    return BSpline.design_matrix(alpha, knots, 3).toarray()


def reference_two_profile_column(flux, alpha, regions, rid, row0, row1, a0, a1, nknots, total,
                                 share, complete, keep, window, lam, penalty_order, x,
                                 mean_share=0.5, kappa=0.25, source=None):
    """
    The two-profile model of column ``x`` (`atm_step.core.two_profile`), dense.

    The complete columns of the window around column ``source`` (default ``x``) enter
    ``y / total`` on the design ``[(1 - share) B, share B]`` with ``lam`` times the
    ``penalty_order`` difference penalty on the mean profile
    ``(1 - mean_share) f1 + mean_share f2`` and ``lam kappa`` times it on ``f2 - f1``,
    solved by `scipy.linalg.solve`; the column's two amplitudes are then fitted to its
    pixels by `numpy.linalg.lstsq`.

    Returns
    -------
    rows : ndarray of int
        Native rows of column ``x`` in the region (kept pixels).
    model : ndarray of float64
        The two-profile model there.
    """
    ncoef = nknots + 3
    knots = uniform_knot_vector(a0, a1, nknots)
    nx = flux.shape[1]
    blocks, values = [], []
    xs = x if source is None else source
    for c in range(max(0, xs - window), min(nx - 1, xs + window) + 1):
        if not complete[c]:
            continue
        ys = [y for y in range(row0, row1 + 1)
              if regions[y, c] == rid and keep[y, c] and np.isfinite(alpha[y, c])
              and np.isfinite(flux[y, c])]  # fmt: skip
        if not ys:
            continue
        b = _design(np.clip(alpha[ys, c], a0, a1), knots)
        blocks.append(np.hstack([(1 - share[c]) * b, share[c] * b]))
        values.append(flux[ys, c] / total[c])
    design = np.vstack(blocks)
    dmat = difference_matrix(ncoef, penalty_order)
    mean = np.hstack([(1 - mean_share) * dmat, mean_share * dmat])  # D g
    diff = np.hstack([-dmat, dmat])  # D h
    normal = design.T @ design + lam * (mean.T @ mean + kappa * diff.T @ diff)
    normal[np.diag_indices_from(normal)] += 1e-10 * normal.diagonal().max()
    coef = scipy.linalg.solve(normal, design.T @ np.concatenate(values), assume_a="pos")
    rows = np.array([y for y in range(row0, row1 + 1)
                     if regions[y, x] == rid and keep[y, x] and np.isfinite(flux[y, x])])  # fmt: skip
    b = _design(np.clip(alpha[rows, x], a0, a1), knots)
    p1, p2 = b @ coef[:ncoef], b @ coef[ncoef:]
    t = np.linalg.lstsq(np.column_stack([p1, p2]), flux[rows, x], rcond=None)[0]
    return rows, t[0] * p1 + t[1] * p2
