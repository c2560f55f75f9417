"""Linear model (paper section II.2): column-by-column linear interpolation onto the
oversampled rows of each region.

The kernels run row by row over the oversampled image, so that reads and writes are
contiguous; each oversampled pixel interpolates between the nearest finite native
pixels of the same region in its column.
"""

import numba
import numpy as np

from atm_step.core.jit import HELPER as _HELPER

# `interpolate_pixel`, `row_neighbours` and `lerp` are helpers of the
# compiled kernels (here and in `atm_step.core.combine`), not callable from Python
__all__ = ["linear_oversample", "in_row_chunks"]


@numba.njit(**_HELPER)
def interpolate_pixel(data, regions, r, x, t, preserve_nan, extrapolate):
    """
    Value at native row coordinate ``t`` of column ``x`` of the region of pixel (r, x).

    Interpolates linearly between the nearest finite pixels of that region at or below
    ``floor(t)`` and at or above ``ceil(t)``; beyond the region's first or last finite
    pixel the end value is held (as numpy.interp) or, with ``extrapolate``, the end
    segment's slope continued. With ``preserve_nan`` a NaN pixel (r, x) gives NaN.
    Returns NaN outside regions or where the column has no finite pixel.
    """
    ny = data.shape[0]
    reg = regions[r, x]
    if reg <= 0:
        return np.nan
    if preserve_nan and not np.isfinite(data[r, x]):
        return np.nan
    # |t - r| <= 1/2, so floor(t) is r - 1 or r, and ceil(t) is r or r + 1
    ft = int(np.floor(t))
    # nearest finite at or below floor(t), within the region
    la = -1
    k = ft
    while k >= 0 and regions[k, x] == reg:
        if np.isfinite(data[k, x]):
            la = k
            break
        k -= 1
    ua = -1
    k = ft + 1 if t > ft else ft
    while k < ny and regions[k, x] == reg:
        if np.isfinite(data[k, x]):
            ua = k
            break
        k += 1
    if la >= 0 and ua >= 0:
        if ua == la:
            return data[la, x]
        w = (t - la) / (ua - la)
        return data[la, x] * (1.0 - w) + data[ua, x] * w
    if la < 0 and ua < 0:
        return np.nan
    # beyond the end of the finite run: hold, or continue the end segment
    end = la if la >= 0 else ua
    if not extrapolate:
        return data[end, x]
    step = -1 if la >= 0 else 1
    k = end + step
    while 0 <= k < ny and regions[k, x] == reg:
        if np.isfinite(data[k, x]):
            return data[end, x] + (t - end) * (data[end, x] - data[k, x]) / (end - k)
        k += step
    return data[end, x]


@numba.njit(**_HELPER)
def row_neighbours(t, ny):
    """
    The native rows ``lo = floor(t)`` and ``hi = ceil(t)`` around row coordinate
    ``t``, the weight ``w`` of ``hi`` in a linear interpolation between them (0 when
    ``lo == hi``), and whether both rows lie in an image of ``ny`` rows.

    Found once per oversampled row and shared by every pixel of the row and every
    image interpolated there (flux, residual, error, variances): see `lerp`.
    """
    lo = int(np.floor(t))
    hi = lo + 1 if t > lo else lo
    w = (t - lo) / (hi - lo) if hi > lo else 0.0
    return lo, hi, w, lo >= 0 and hi < ny


@numba.njit(**_HELPER)
def lerp(a, b, w):
    """
    ``a (1 - w) + b w`` if ``a`` and ``b`` are finite, else NaN.

    The kernels' fast path: where both `row_neighbours` of a pixel are in its region
    and finite, this is what :func:`interpolate_pixel` (no extrapolation) returns, with
    the same arithmetic; a NaN sends the pixel to :func:`interpolate_pixel`'s search.
    Scalars only: a helper taking arrays costs an order of magnitude more per call in
    a per-pixel loop.
    """
    if np.isfinite(a) and np.isfinite(b):
        return a * (1.0 - w) + b * w
    return np.nan


@numba.njit(cache=True, nogil=True)
def _linear_oversample_kernel(data, regions, y_os, near, preserve_nan, extrapolate, out, j0, j1):
    nx = out.shape[1]
    for j in range(j0, j1):
        r = near[j]
        t = y_os[j]
        lo, hi, w, inside = row_neighbours(t, data.shape[0])
        for x in range(nx):
            reg = regions[r, x]
            if reg <= 0:  # outside regions (half of an IFU image): no search, no call
                out[j, x] = np.nan
                continue
            v = np.nan
            if inside and regions[lo, x] == reg and regions[hi, x] == reg:
                v = lerp(data[lo, x], data[hi, x], w)
            if np.isnan(v):  # a neighbour NaN or outside the region: the full search
                v = interpolate_pixel(data, regions, r, x, t, preserve_nan, extrapolate)
            out[j, x] = v


def linear_oversample(data, regions, y_os, near, *, preserve_nan=True, extrapolate=False):
    """
    Oversample an image along axis 0 by linear interpolation within each region.

    Each oversampled pixel belongs to the region of its nearest native pixel and is
    interpolated between the nearest finite native pixels of that region in its column;
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
    out = np.empty((y_os.shape[0], data.shape[1]))
    y_os = np.ascontiguousarray(y_os, dtype=np.float64)
    near = np.ascontiguousarray(near, dtype=np.int64)
    flags = (bool(preserve_nan), bool(extrapolate))
    in_row_chunks(
        out.shape[0],
        lambda j0, j1: _linear_oversample_kernel(data, regions, y_os, near, *flags, out, j0, j1),
    )
    return out


def in_row_chunks(n_rows, run):
    """
    Call ``run(j0, j1)`` over row chunks covering ``range(n_rows)``, in parallel threads.

    The kernels release the GIL, so a thread pool of Numba's current thread count
    (``numba.get_num_threads()``, set by `atm_step.core.trace_fit.compiled_threads`)
    runs them in parallel; with one thread, one call covers every row. Threads give
    the speed of a ``prange`` loop without its extra compilation on a first run.
    """
    threads = min(numba.get_num_threads(), max(n_rows // 64, 1))
    if threads <= 1:
        run(0, n_rows)
        return
    from concurrent.futures import ThreadPoolExecutor

    bounds = np.linspace(0, n_rows, 4 * threads + 1).astype(np.int64)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, bounds[:-1].tolist(), bounds[1:].tolist()))
