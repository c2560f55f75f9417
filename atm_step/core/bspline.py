"""Cubic B-splines on uniform knots, and banded least squares, in compiled code.

The knots of a region are fixed (``nknots`` equal intervals of width ``h`` spanning the
region's ``alpha`` range ``[a0, a0 + nknots * h]``, extended by three knots on each
side, i.e. the knot vector ``a0 + h * arange(-3, nknots + 4)``). On uniform knots each
point touches four basis functions whose values have a closed form, so the normal
equations of a least-squares fit are a symmetric band matrix of half-bandwidth 3 that
is cheap to update point by point and to solve by a banded Cholesky factorisation.
This is the same spline space as ``scipy.interpolate.make_lsq_spline`` with that knot
vector (see `atm_step.core.reference`).

Band storage: ``ata[i, d]`` holds element ``(i, i + d)`` of the normal matrix,
``d = 0..3``.
"""

import numba
import numpy as np

from atm_step.core.jit import HELPER as _HELPER

__all__ = [
    "fit_uniform_bspline",
    "evaluate_uniform_bspline",
    "n_coefficients",
    "difference_penalty",
]

#: relative ridge added to the diagonal so that a coefficient with no data in its
#: support (outside the sampled alpha range) stays finite; far below the 1e-6 level at
#: which fits are compared with scipy.
RIDGE = 1e-12


def n_coefficients(nknots):
    """
    Number of cubic B-spline coefficients for ``nknots`` uniform intervals.

    Parameters
    ----------
    nknots : int
        Knot intervals across the slice.

    Returns
    -------
    int
        ``nknots + 3``.
    """
    return nknots + 3


@numba.njit(**_HELPER)
def basis_values(a, a0, inv_h, nknots):
    """
    The four cubic B-splines that are non-zero at ``a``: the index ``i`` of the first
    and their values ``b0 .. b3`` (scalars only, for per-pixel loops).

    Points outside ``[a0, a0 + nknots * h]`` use the polynomial of the nearest end
    interval.
    """
    u = (a - a0) * inv_h
    i = int(np.floor(u))
    if i < 0:
        i = 0
    elif i > nknots - 1:
        i = nknots - 1
    t = u - i
    t2 = t * t
    t3 = t2 * t
    s = 1.0 - t
    return (i, s * s * s / 6.0, (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0,
            (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0, t3 / 6.0)


@numba.njit(**_HELPER)
def basis(a, a0, inv_h, nknots, out):
    """`basis_values` written into ``out[0..3]``; returns the index of the first."""
    i, b0, b1, b2, b3 = basis_values(a, a0, inv_h, nknots)
    out[0] = b0
    out[1] = b1
    out[2] = b2
    out[3] = b3
    return i


@numba.njit(**_HELPER)
def accumulate(ata, aty, i, b, y, w):
    """Add (``w`` > 0) or remove (``w`` < 0) one point to banded normal equations."""
    for p in range(4):
        wp = w * b[p]
        aty[i + p] += wp * y
        for q in range(p, 4):
            ata[i + p, q - p] += wp * b[q]


def difference_penalty(ncoef, order):
    """
    Band of ``D^T D``, ``D`` the ``order``-th difference matrix of ``ncoef`` coefficients.

    The roughness penalty of P-splines (Eilers & Marx 1996, Statistical Science 11,
    89): ``lam * |D c|**2`` added to the least-squares objective. Its half-bandwidth
    is ``order`` (at most 3 here), so it shares the band storage of the normal
    equations.

    Parameters
    ----------
    ncoef : int
    order : int
        1, 2 or 3.

    Returns
    -------
    ndarray of float64, shape (ncoef, 4)
        ``pen[i, d]`` = element ``(i, i + d)``.

    Raises
    ------
    ValueError
        If ``order`` is not 1, 2 or 3.
    """
    if order not in (1, 2, 3):
        raise ValueError(f"penalty order must be 1, 2 or 3, not {order}")
    dmat = np.diff(np.eye(ncoef), n=order, axis=0)
    full = dmat.T @ dmat
    pen = np.zeros((ncoef, 4))
    for d in range(4):
        pen[: ncoef - d, d] = np.diagonal(full, d)
    return pen


@numba.njit(**_HELPER)
def solve_banded(ata, pen, lam, aty, chol, coef):
    """
    Solve banded (penalised) normal equations ``(ata + lam pen) c = aty`` by Cholesky.

    The band width ``w`` is that of the arrays: 4 for one cubic spline, 8 for the two
    interleaved splines of `atm_step.core.two_profile`.

    Parameters
    ----------
    ata : ndarray, shape (ncoef, w)
        Band of the symmetric normal matrix (not modified): ``ata[i, d]`` is element
        ``(i, i + d)``.
    pen : ndarray, shape (ncoef, w)
        Band of the penalty matrix (`difference_penalty`).
    lam : float
        Penalty weight (0: plain least squares).
    aty : ndarray, shape (ncoef,)
        Right-hand side.
    chol : ndarray, shape (ncoef, w)
        Work space; holds the Cholesky factor afterwards (``chol[i, d] = L[i + d, i]``).
    coef : ndarray, shape (ncoef,)
        Solution, written in place.

    Returns
    -------
    bool
        False if the matrix is not positive definite (solution not valid).
    """
    n = ata.shape[0]
    w = ata.shape[1]
    dmax = 0.0
    for i in range(n):
        if ata[i, 0] > dmax:
            dmax = ata[i, 0]
    if not dmax > 0.0:
        return False
    ridge = RIDGE * dmax
    # A = L L^T with L lower banded; chol[i, d] holds L[i + d, i]
    for j in range(n):
        s = ata[j, 0] + lam * pen[j, 0] + ridge
        for k in range(max(0, j - w + 1), j):
            v = chol[k, j - k]
            s -= v * v
        if not s > 0.0:
            return False
        ljj = np.sqrt(s)
        chol[j, 0] = ljj
        for d in range(1, w):
            i = j + d
            if i >= n:
                chol[j, d] = 0.0
                continue
            s = ata[j, d] + lam * pen[j, d]
            for k in range(max(0, i - w + 1), j):
                s -= chol[k, i - k] * chol[k, j - k]
            chol[j, d] = s / ljj
    # forward: L z = b
    for i in range(n):
        s = aty[i]
        for k in range(max(0, i - w + 1), i):
            s -= chol[k, i - k] * coef[k]
        coef[i] = s / chol[i, 0]
    # backward: L^T x = z
    for i in range(n - 1, -1, -1):
        s = coef[i]
        for d in range(1, w):
            if i + d < n:
                s -= chol[i, d] * coef[i + d]
        coef[i] = s / chol[i, 0]
    for i in range(n):
        if not np.isfinite(coef[i]):
            return False
    return True


@numba.njit(**_HELPER)
def evaluate(a, a0, inv_h, nknots, coef, b):
    """Value at ``a`` of the spline with coefficients ``coef`` (``b``: work, size 4)."""
    i = basis(a, a0, inv_h, nknots, b)
    return coef[i] * b[0] + coef[i + 1] * b[1] + coef[i + 2] * b[2] + coef[i + 3] * b[3]


@numba.njit(cache=True)
def _fit_points(alpha, values, weights, a0, h, nknots, coef):
    ncoef = nknots + 3
    ata = np.zeros((ncoef, 4))
    aty = np.zeros(ncoef)
    chol = np.empty((ncoef, 4))
    b = np.empty(4)
    inv_h = 1.0 / h
    for k in range(alpha.shape[0]):
        if np.isfinite(alpha[k]) and np.isfinite(values[k]) and weights[k] > 0:
            i = basis(alpha[k], a0, inv_h, nknots, b)
            accumulate(ata, aty, i, b, values[k], weights[k])
    return solve_banded(ata, ata, 0.0, aty, chol, coef)


@numba.njit(cache=True)
def _evaluate_points(alpha, a0, h, nknots, coef, out):
    b = np.empty(4)
    inv_h = 1.0 / h
    for k in range(alpha.shape[0]):
        out[k] = evaluate(alpha[k], a0, inv_h, nknots, coef, b) if np.isfinite(alpha[k]) else np.nan


def fit_uniform_bspline(alpha, values, a0, a1, nknots, weights=None):
    """
    Least-squares cubic B-spline on ``nknots`` uniform intervals spanning ``[a0, a1]``.

    Parameters
    ----------
    alpha : ndarray of float, shape (n,)
        Sample positions (e.g. along-slice coordinate, arcsec); NaN samples are ignored.
    values : ndarray of float, shape (n,)
        Sample values; NaN samples are ignored.
    a0, a1 : float
        Ends of the knot range, ``a1 > a0``.
    nknots : int
        Number of knot intervals (``nknots + 3`` coefficients).
    weights : ndarray of float, shape (n,), optional
        Least-squares weights (default 1); points with weight <= 0 are ignored.

    Returns
    -------
    ndarray of float64, shape (nknots + 3,)
        B-spline coefficients for the knot vector ``a0 + h * arange(-3, nknots + 4)``,
        ``h = (a1 - a0) / nknots``.

    Raises
    ------
    ValueError
        If ``a1 <= a0``, ``nknots < 1``, or the normal equations are singular (too few
        or badly placed samples).
    """
    if not a1 > a0 or nknots < 1:
        raise ValueError(f"need a1 > a0 and nknots >= 1; got a0={a0}, a1={a1}, nknots={nknots}")
    alpha = np.ascontiguousarray(alpha, dtype=np.float64)
    values = np.ascontiguousarray(values, dtype=np.float64)
    w = np.ones_like(alpha) if weights is None else np.ascontiguousarray(weights, np.float64)
    coef = np.zeros(nknots + 3)
    if not _fit_points(alpha, values, w, float(a0), (a1 - a0) / nknots, int(nknots), coef):
        raise ValueError("B-spline normal equations are singular: too few or clustered samples")
    return coef


def evaluate_uniform_bspline(alpha, coef, a0, a1):
    """
    Evaluate a uniform-knot cubic B-spline fitted by `fit_uniform_bspline`.

    Parameters
    ----------
    alpha : ndarray of float, shape (n,)
        Positions; NaN gives NaN.
    coef : ndarray of float, shape (nknots + 3,)
        Coefficients.
    a0, a1 : float
        Ends of the knot range.

    Returns
    -------
    ndarray of float64, shape (n,)
    """
    coef = np.ascontiguousarray(coef, dtype=np.float64)
    nknots = coef.size - 3
    alpha = np.ascontiguousarray(alpha, dtype=np.float64)
    out = np.empty_like(alpha)
    _evaluate_points(alpha, float(a0), (a1 - a0) / nknots, nknots, coef, out)
    return out
