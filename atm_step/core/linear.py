"""Linear model (paper section II.2): column-by-column linear interpolation onto the
oversampled rows of each region."""

import numba
import numpy as np

__all__ = ["linear_oversample"]


@numba.njit(cache=True, nogil=True)
def _interp_column(col, rows_y, nrow, y, extrapolate):
    """Linear interpolation of ``col[k]`` sampled at ``rows_y[k]`` (k < nrow, ascending,
    finite samples only) at ``y``; beyond the ends constant (as numpy.interp) or, with
    ``extrapolate``, continued with the end segment's slope."""
    if nrow == 1:
        return col[0]
    if y <= rows_y[0]:
        if extrapolate:
            return col[0] + (y - rows_y[0]) * (col[1] - col[0]) / (rows_y[1] - rows_y[0])
        return col[0]
    if y >= rows_y[nrow - 1]:
        if extrapolate:
            s = (col[nrow - 1] - col[nrow - 2]) / (rows_y[nrow - 1] - rows_y[nrow - 2])
            return col[nrow - 1] + (y - rows_y[nrow - 1]) * s
        return col[nrow - 1]
    # rows are consecutive integers in most columns: start from the direct guess
    k = 0
    while k < nrow - 2 and rows_y[k + 1] < y:
        k += 1
    t = (y - rows_y[k]) / (rows_y[k + 1] - rows_y[k])
    return col[k] * (1.0 - t) + col[k + 1] * t


@numba.njit(cache=True, nogil=True)
def _linear_oversample_kernel(data, regions, y_os, near, min_good, preserve_nan, extrapolate, out):
    ny, nx = data.shape
    n_os = y_os.shape[0]
    vals = np.empty(ny, dtype=np.float64)
    rows = np.empty(ny, dtype=np.float64)
    for x in range(nx):
        j = 0
        while j < n_os:
            r = near[j]
            reg = regions[r, x]
            if reg <= 0:
                j += 1
                continue
            # the run of oversampled rows whose nearest native pixel lies in this region
            j0 = j
            while j < n_os and regions[near[j], x] == reg:
                j += 1
            r0 = near[j0]
            r1 = near[j - 1]
            n = 0
            for rr in range(r0, r1 + 1):
                v = data[rr, x]
                if np.isfinite(v):
                    vals[n] = v
                    rows[n] = rr
                    n += 1
            if n <= min_good or n == 0:
                continue
            for jj in range(j0, j):
                if preserve_nan and not np.isfinite(data[near[jj], x]):
                    continue
                out[jj, x] = _interp_column(vals, rows, n, y_os[jj], extrapolate)


def linear_oversample(
    data, regions, y_os, near, *, min_good=0, preserve_nan=True, extrapolate=False
):
    """
    Oversample an image along axis 0 by linear interpolation within each region.

    For each column and each contiguous run of rows belonging to one region, the
    finite native pixels are linearly interpolated to the oversampled row coordinates;
    beyond the first and last finite pixel the end value is held (as
    :func:`numpy.interp`).

    Parameters
    ----------
    data : ndarray of float, shape (ny, nx)
        Native image, dispersion along x. NaN marks missing pixels.
    regions : ndarray of int, shape (ny, nx)
        Region map: 0 outside regions, one positive id per slice or slit.
    y_os : ndarray of float64, shape (ny_os,)
        Native row coordinate of each oversampled row (`atm_step.core.grid.oversampled_rows`).
    near : ndarray of int64, shape (ny_os,)
        Nearest native row of each oversampled row (`atm_step.core.grid.nearest_native_row`).
    min_good : int, optional
        A column run is interpolated only if it holds more than this many finite pixels.
    preserve_nan : bool, optional
        If True, an oversampled pixel whose nearest native pixel is NaN stays NaN
        (flux arrays, paper II.2); if False the gap is interpolated over (error arrays).
    extrapolate : bool, optional
        If True, rows beyond the first or last finite pixel continue the end segment's
        slope (used for coordinates such as alpha) instead of holding the end value.

    Returns
    -------
    ndarray of float64, shape (ny_os, nx)
        Oversampled image, NaN outside regions. Units are those of ``data``.

    Notes
    -----
    Source: ATM paper section II.2; the oversampled grid follows jwst's convention.
    """
    data = np.ascontiguousarray(data, dtype=np.float64)
    regions = np.ascontiguousarray(regions, dtype=np.int64)
    out = np.full((y_os.shape[0], data.shape[1]), np.nan)
    _linear_oversample_kernel(
        data,
        regions,
        np.ascontiguousarray(y_os, dtype=np.float64),
        np.ascontiguousarray(near, dtype=np.int64),
        int(min_good),
        bool(preserve_nan),
        bool(extrapolate),
        out,
    )
    return out
