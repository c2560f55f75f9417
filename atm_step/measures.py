"""Cube measures shared by the QA pictures and the validation (imports nothing above).

Cubes are shaped ``(n_slices, n_spaxels, n_wave)``, the layout of
:class:`atm_step.validation.drizzle.DrizzleCube` (MIRI cubes from cube_build are
transposed to it by the caller). ``atm_step.validation.measures`` re-exports these
functions beside the artifact measures of the paper's section III.1.
"""

import warnings

import numpy as np

__all__ = ["aperture_box", "aperture_spectrum", "brightest_spaxels"]


def brightest_spaxels(cube, n=20, mask=None):
    """
    Indices of the ``n`` spaxels with the highest median spectrum.

    Parameters
    ----------
    cube : ndarray, shape (n_slices, n_spaxels, n_wave)
        Usually the truth cube, so that every method is measured on the same spaxels.
    n : int
        How many.
    mask : ndarray of bool, shape (n_slices, n_spaxels), optional
        Only spaxels where True are eligible.

    Returns
    -------
    list of tuple (int, int)
        ``(slice_index, spaxel_index)``, brightest first.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(cube, axis=2)
    med = np.where(np.isfinite(med), med, -np.inf)
    if mask is not None:
        med = np.where(mask, med, -np.inf)
    order = np.argsort(med, axis=None)[::-1][:n]
    return [tuple(int(v) for v in np.unravel_index(k, med.shape)) for k in order]


def aperture_box(cube, size=6):
    """
    The ``size x size`` spaxel box holding the most (median) flux.

    Parameters
    ----------
    cube : ndarray, shape (n_slices, n_spaxels, n_wave)
    size : int
        Box side in spaxels (6 x 0.1 arcsec = the paper's 0.6 arcsec box).

    Returns
    -------
    tuple of slice
        ``(slice_rows, spaxel_cols)`` to index the first two axes.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nan_to_num(np.nanmedian(cube, axis=2))
    ns, nk = med.shape
    best, where = -np.inf, (0, 0)
    for i in range(max(ns - size + 1, 1)):
        for k in range(max(nk - size + 1, 1)):
            s = med[i : i + size, k : k + size].sum()
            if s > best:
                best, where = s, (i, k)
    return (slice(where[0], where[0] + size), slice(where[1], where[1] + size))


def aperture_spectrum(cube, box, err=None):
    """
    Sum of the spaxels in ``box`` at each wavelength (NaN spaxels count as 0).

    Parameters
    ----------
    cube : ndarray, shape (n_slices, n_spaxels, n_wave)
    box : tuple of slice
        From :func:`aperture_box`.
    err : ndarray like ``cube``, optional
        Spaxel errors, added in quadrature (independent spaxels, as extract_1d assumes).

    Returns
    -------
    flux : ndarray, shape (n_wave,)
    error : ndarray, shape (n_wave,) or None
    """
    sub = cube[box[0], box[1], :]
    flux = np.nansum(sub, axis=(0, 1))
    error = None
    if err is not None:
        error = np.sqrt(np.nansum(err[box[0], box[1], :] ** 2, axis=(0, 1)))
    return flux, error
