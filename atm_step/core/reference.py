"""A slow, readable reference of the spline model built on scipy, used only by tests.

It fits every column from scratch with :func:`scipy.interpolate.make_lsq_spline`
(window points gathered, rejection restarted from nothing), so that the compiled
sliding-window fit of `atm_step.core.trace_fit` can be checked against it.
"""

import numpy as np
from scipy.interpolate import make_lsq_spline

from atm_step.core.stats import region_geometry

__all__ = ["uniform_knot_vector", "reference_lsq_spline", "reference_region_model"]


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
