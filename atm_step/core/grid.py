"""The oversampled pixel grid along the slice.

Row ``j`` of an image oversampled ``N`` times along axis 0 sits at the native row
coordinate ``y = j / N - (N - 1) / (2 N)`` (pixel centres at integers). This is the
convention of jwst's ``adaptive_trace_model`` step, so oversampled images from the
two implementations can be compared pixel by pixel, and the WCS of an oversampled
image is the native WCS preceded by ``y -> y / N - (N - 1) / (2 N)``.
"""

import math

import numpy as np

__all__ = ["oversampled_shape", "oversampled_rows", "nearest_native_row", "native_aligned_start"]


def oversampled_shape(shape, oversample):
    """
    Shape of an image oversampled along axis 0.

    Parameters
    ----------
    shape : tuple of int
        Native shape ``(ny, nx)``.
    oversample : float
        Oversampling factor ``N >= 1``.

    Returns
    -------
    tuple of int
        ``(ceil(ny * N), nx)``.

    Examples
    --------
    >>> oversampled_shape((30, 2048), 3)
    (90, 2048)
    >>> oversampled_shape((30, 2048), 2.5)
    (75, 2048)
    """
    ny, nx = shape
    return (int(math.ceil(ny * oversample)), nx)


def oversampled_rows(ny, oversample):
    """
    Native row coordinate of every oversampled row.

    Parameters
    ----------
    ny : int
        Number of native rows.
    oversample : float
        Oversampling factor ``N >= 1``.

    Returns
    -------
    ndarray of float64, shape (ceil(ny * N),)
        ``y_j = j / N - (N - 1) / (2 N)``, in native pixels.

    Examples
    --------
    Three oversampled rows per native row, centred on it:

    >>> oversampled_rows(2, 3)
    array([-0.33333333,  0.        ,  0.33333333,  0.66666667,  1.        ,
            1.33333333])
    """
    n_os = int(math.ceil(ny * oversample))
    j = np.arange(n_os, dtype=np.float64)
    return j / oversample - (oversample - 1.0) / (2.0 * oversample)


def nearest_native_row(ny, oversample):
    """
    Index of the native row nearest to each oversampled row.

    Rounding follows :func:`numpy.round` (half to even), as jwst does when it
    carries DQ and region values onto the oversampled grid.

    Parameters
    ----------
    ny : int
        Number of native rows.
    oversample : float
        Oversampling factor ``N >= 1``.

    Returns
    -------
    ndarray of int64, shape (ceil(ny * N),)
        Native row index, clipped to ``[0, ny - 1]``.

    Examples
    --------
    >>> nearest_native_row(2, 3)
    array([0, 0, 0, 1, 1, 1])
    """
    rows = np.round(oversampled_rows(ny, oversample)).astype(np.int64)
    return np.clip(rows, 0, ny - 1)


def native_aligned_start(ny, oversample):
    """
    First oversampled row that sits on a native row centre, when every ``N``-th does.

    For an odd integer ``N`` the oversampled row ``j = N k + (N - 1) / 2`` is centred
    on native row ``k`` (``y_j = k``), for every ``k`` in ``0 .. ny - 1``. For an even
    or non-integer ``N`` no oversampled row is centred on a native one.

    Parameters
    ----------
    ny : int
        Number of native rows.
    oversample : float
        Oversampling factor ``N >= 1``.

    Returns
    -------
    int or None
        ``(N - 1) / 2`` for an odd integer ``N``; None otherwise.

    Examples
    --------
    >>> native_aligned_start(10, 3), native_aligned_start(10, 2), native_aligned_start(10, 2.5)
    (1, None, None)
    """
    if ny < 1 or oversample != int(oversample) or int(oversample) % 2 == 0:
        return None
    return (int(oversample) - 1) // 2
