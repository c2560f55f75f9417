"""Oversampled errors and their covariance inflation (paper section IV)."""

import numpy as np

from atm_step.core.linear import linear_oversample

__all__ = ["inflation_factor", "oversample_errors", "sigma_stack"]


def inflation_factor(oversample):
    """
    Error inflation for an image oversampled ``N`` times: ``X = 0.23 N + 0.77``.

    Linear oversampling correlates neighbouring oversampled pixels; inflating their
    errors by ``X`` (variances by ``X**2``) keeps the signal-to-noise ratio reported
    by cubes built from them close to that of cubes built from native pixels
    (paper section IV: within about 5%).

    Parameters
    ----------
    oversample : float
        Oversampling factor ``N >= 1``.

    Returns
    -------
    float
        ``X``; 1 for ``N = 1``.
    """
    return 0.23 * float(oversample) + 0.77


def sigma_stack(err, variances):
    """
    The 1-sigma images to oversample, stacked: the error and the square root of each
    variance (paper IV: variances are oversampled as standard deviations).

    Parameters
    ----------
    err : ndarray of float, shape (ny, nx), or None
    variances : dict of str to ndarray, shape (ny, nx), or None

    Returns
    -------
    stack : ndarray of float64, shape (k, ny, nx), C-contiguous
        Read-only use: with ``err`` alone, already float64 and C-contiguous, a view of it.
    names : list of str
        ``"err"`` and the variance names, in stack order.
    squared : ndarray of bool, shape (k,)
        True for the variances (squared back after oversampling).
    """
    items = ([("err", err)] if err is not None else []) + list((variances or {}).items())
    if not items:
        return None, [], np.zeros(0, dtype=bool)
    if len(items) == 1 and items[0][0] == "err":
        arr = np.asarray(err)
        if arr.dtype == np.float64 and arr.flags.c_contiguous:
            return arr[np.newaxis], ["err"], np.zeros(1, dtype=bool)  # nothing copied
    shape = np.shape(items[0][1])
    stack = np.empty((len(items),) + tuple(shape))
    squared = np.zeros(len(items), dtype=bool)
    for i, (name, arr) in enumerate(items):
        if name == "err":
            stack[i] = arr
        else:
            with np.errstate(invalid="ignore"):  # negative variances give NaN
                np.sqrt(np.asarray(arr, dtype=np.float64), out=stack[i])
            squared[i] = True
    return stack, [name for name, _ in items], squared


def oversample_errors(err, variances, regions, y_os, near, oversample, estimated):
    """
    Oversample error and variance images linearly and inflate them (readable form).

    The core computes the same in one pass with the flux
    (`atm_step.core.combine.combine_models` with ``sigmas``); this function is the
    NumPy-level form of that rule, used for ``oversample == 1`` and by tests.

    Errors (and the square roots of variances) are interpolated like the linear model
    but across NaN pixels; the result is NaN where the nearest native error is NaN,
    except where the flux model filled the pixel (``estimated``), which keeps the
    interpolated error. Variances are squared back. With ``oversample == 1`` the arrays
    are returned unchanged (as float64 copies).

    Parameters
    ----------
    err : ndarray of float, shape (ny, nx), or None
        1-sigma errors (same unit as the flux).
    variances : dict of str to ndarray, shape (ny, nx), or None
        Variances (flux unit squared).
    regions : ndarray of int64, shape (ny, nx), or None
        Region map; not used (may be None) when ``oversample == 1``.
    y_os, near : ndarray, shape (ny_os,)
        Oversampled row coordinates and nearest native rows.
    oversample : float
    estimated : ndarray of bool, shape (ny_os, nx)
        Pixels whose flux the model filled.

    Returns
    -------
    err_os : ndarray of float64, shape (ny_os, nx), or None
    var_os : dict of str to ndarray of float64, shape (ny_os, nx)
    inflation : float
        The factor ``X`` applied.
    """
    x = inflation_factor(oversample)
    out = {}
    items = ([("err", err)] if err is not None else []) + list((variances or {}).items())
    for name, arr in items:
        if oversample == 1.0:
            out[name] = np.array(arr, dtype=np.float64)  # a copy, never the caller's array
            continue
        arr = np.asarray(arr, dtype=np.float64)
        is_err = name == "err"
        sigma = arr if is_err else np.sqrt(arr)
        sigma_os = linear_oversample(sigma, regions, y_os, near, preserve_nan=False)
        sigma_os[~np.isfinite(sigma[near, :]) & ~estimated] = np.nan
        out[name] = sigma_os * x if is_err else (sigma_os * x) ** 2
    err_os = out.pop("err", None)
    return err_os, out, x
