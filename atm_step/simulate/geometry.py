"""NIRSpec-IFU-like slice geometry on a detector with dispersion along x.

Slices are horizontal bands stacked along y (axis 0), ordered by their
across-slice position ``beta``. Pixel ``(y, x)`` covers ``[y - 0.5, y + 0.5]``
in continuous row coordinates. In column ``x`` slice ``s`` spans the rows
``[y_low_s(x), y_low_s(x) + rows_per_slice)`` with

``y_low_s(x) = first_row_s - 0.5 + tilt(x)``

and a pixel belongs to the slice when its centre lies in that interval (so
every slice has exactly ``rows_per_slice`` pixels in every column). The
along-slice coordinate is ``alpha = alpha_min + (y - y_low_s(x)) * row_height``
with ``alpha_min = -rows_per_slice * row_height / 2`` (arcsec): it increases with
the row index, and pixel centres run from ``alpha_min + row_height/2`` to
``-alpha_min - row_height/2`` at ``x = 0``.

All slices share the trace offset ``tilt(x)`` (rows), whose slope is
``dy/dx = trace_slope * cos^4(pi u / 2)`` with ``u`` running from 0 on the steep
side to 1 on the flat side: the pixel phase of a fixed ``alpha`` cycles once
every ``1 / trace_slope`` columns (80 by default) on the steep side, and the
trace becomes parallel to the rows on the other side (the NRS1 behaviour the
ATM paper describes in its section II.3).
"""

import logging
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["SliceGeometry"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SliceGeometry:
    """
    Slice layout of a simulated detector.

    Use :meth:`build` rather than the constructor.

    Attributes
    ----------
    nx, ny : int
        Detector size (columns, rows).
    n_slices, rows_per_slice : int
        Number of slices and detector rows per slice.
    gap_rows : int
        NaN rows between adjacent slices.
    first_rows : tuple of int
        First row of each slice at ``x = 0`` (index ``region - 1``).
    row_height, slice_width : float
        Along-slice pixel size and across-slice slice width, arcsec.
    trace_slope : float
        ``dy/dx`` of the trace on the steep side (rows per column).
    steep_side : str
        ``"left"`` or ``"right"``.
    """

    nx: int
    ny: int
    n_slices: int
    rows_per_slice: int
    gap_rows: int
    first_rows: tuple
    row_height: float
    slice_width: float
    trace_slope: float
    steep_side: str

    @classmethod
    def build(
        cls,
        nx=2048,
        ny=2048,
        n_slices=30,
        rows_per_slice=30,
        gap_rows=None,
        row_height=0.1,
        slice_width=0.1,
        trace_slope=1.0 / 80.0,
        steep_side="left",
    ):
        """
        Lay out the slices on the detector.

        Parameters
        ----------
        nx : int
            Columns (wavelengths), >= 2.
        ny : int or None
            Rows. ``None`` gives the smallest detector that holds the slices.
        n_slices : int
            Number of slices (region ids ``1..n_slices``).
        rows_per_slice : int
            Rows per slice, >= 4.
        gap_rows : int or None
            NaN rows between slices, >= 2. ``None`` spreads the slices evenly
            over ``ny`` (or uses 3 when ``ny`` is None).
        row_height, slice_width : float
            Arcsec per row along the slice, and slice width across it.
        trace_slope : float
            Trace slope on the steep side, rows per column (default 1/80), >= 0.
        steep_side : {"left", "right"}
            Side of the detector where the trace is steepest.

        Returns
        -------
        SliceGeometry

        Raises
        ------
        ValueError
            For bad sizes, or when the slices do not fit in ``ny`` rows.
        """
        nx, n_slices, rows_per_slice = int(nx), int(n_slices), int(rows_per_slice)
        if nx < 2:
            raise ValueError(f"nx must be >= 2, got {nx}")
        if n_slices < 1:
            raise ValueError(f"n_slices must be >= 1, got {n_slices}")
        if rows_per_slice < 4:
            raise ValueError(f"rows_per_slice must be >= 4, got {rows_per_slice}")
        if not (row_height > 0 and slice_width > 0):
            raise ValueError("row_height and slice_width must be > 0 arcsec")
        if not trace_slope >= 0:
            raise ValueError(f"trace_slope must be >= 0, got {trace_slope}")
        if steep_side not in ("left", "right"):
            raise ValueError(f"steep_side must be 'left' or 'right', got {steep_side!r}")
        total_tilt = trace_slope * (nx - 1) * 3.0 / 8.0
        margin = 2  # free rows below the first and above the last slice
        span_extra = int(math.ceil(total_tilt)) + 2 * margin
        if gap_rows is not None and int(gap_rows) < 2:
            raise ValueError(f"gap_rows must be >= 2, got {gap_rows}")
        if ny is None:
            gap = 3 if gap_rows is None else int(gap_rows)
            ny = n_slices * rows_per_slice + (n_slices - 1) * gap + span_extra
        ny = int(ny)
        if gap_rows is None:
            pitch = (ny - span_extra + 2) // n_slices if n_slices > 1 else ny
            gap = pitch - rows_per_slice
            gap = max(gap, 2)
        else:
            gap = int(gap_rows)
        needed = n_slices * rows_per_slice + (n_slices - 1) * gap + span_extra
        if needed > ny:
            raise ValueError(
                f"{n_slices} slices of {rows_per_slice} rows with {gap} gap rows and a trace "
                f"rising {total_tilt:.1f} rows need ny >= {needed}, got ny={ny}"
            )
        block = n_slices * rows_per_slice + (n_slices - 1) * gap + int(math.ceil(total_tilt))
        bottom = (ny - block) // 2
        first = tuple(bottom + k * (rows_per_slice + gap) for k in range(n_slices))
        geo = cls(
            nx=nx,
            ny=ny,
            n_slices=n_slices,
            rows_per_slice=rows_per_slice,
            gap_rows=gap,
            first_rows=first,
            row_height=float(row_height),
            slice_width=float(slice_width),
            trace_slope=float(trace_slope),
            steep_side=steep_side,
        )
        log.debug("SliceGeometry: %s", geo)
        return geo

    # ------------------------------------------------------------------
    @property
    def alpha_min(self):
        """Along-slice coordinate of the lower slice edge, arcsec."""
        return -0.5 * self.rows_per_slice * self.row_height

    @property
    def beta(self):
        """ndarray (n_slices,): across-slice centre of each slice (region id - 1), arcsec."""
        return (np.arange(self.n_slices) - 0.5 * (self.n_slices - 1)) * self.slice_width

    def tilt(self, x):
        """
        Trace offset in rows at column ``x`` (0 at the steep-side edge).

        Parameters
        ----------
        x : array_like
            Column coordinate (may be fractional).

        Returns
        -------
        ndarray of float64
        """
        x = np.asarray(x, dtype=np.float64)
        L = self.nx - 1
        if self.steep_side == "left":
            th = 0.5 * math.pi * x / L
            return self.trace_slope * L * (2.0 / math.pi) * (
                3.0 * th / 8.0 + np.sin(2 * th) / 4.0 + np.sin(4 * th) / 32.0
            )
        # mirror: steep at the right edge, zero offset at the flat left edge
        th = 0.5 * math.pi * (L - x) / L
        full = self.trace_slope * L * 3.0 / 8.0
        return full - self.trace_slope * L * (2.0 / math.pi) * (
            3.0 * th / 8.0 + np.sin(2 * th) / 4.0 + np.sin(4 * th) / 32.0
        )

    def trace_slope_at(self, x):
        """dy/dx of the trace (rows per column) at column ``x``."""
        x = np.asarray(x, dtype=np.float64)
        u = x / (self.nx - 1)
        if self.steep_side == "right":
            u = 1.0 - u
        return self.trace_slope * np.cos(0.5 * math.pi * u) ** 4

    def y_low(self, region, x):
        """Row coordinate of the lower edge of slice ``region`` at column ``x``."""
        first = np.asarray(self.first_rows, dtype=np.float64)[np.asarray(region) - 1]
        return first - 0.5 + self.tilt(x)

    def y_of(self, region, x, alpha):
        """
        Detector row coordinate of ``alpha`` in slice ``region`` at column ``x``.

        Parameters
        ----------
        region : int or array_like of int
            Slice id 1..n_slices.
        x : array_like
            Column.
        alpha : array_like
            Along-slice coordinate, arcsec.

        Returns
        -------
        ndarray of float64
            Row coordinate (pixel centres at integers).
        """
        return self.y_low(region, x) + (np.asarray(alpha, dtype=np.float64) - self.alpha_min) / self.row_height

    def alpha_of(self, region, x, y):
        """Along-slice coordinate (arcsec) of row coordinate ``y`` in slice ``region`` at column ``x``."""
        return self.alpha_min + (np.asarray(y, dtype=np.float64) - self.y_low(region, x)) * self.row_height

    def slice_rows(self, region):
        """
        Rows of slice ``region`` in every column.

        Returns
        -------
        ndarray of int64, shape (rows_per_slice, nx)
            ``rows[i, x]`` is the detector row of the i-th pixel of the slice in column x.
        """
        x = np.arange(self.nx)
        start = np.ceil(self.y_low(region, x) - 1e-9).astype(np.int64)
        return start[None, :] + np.arange(self.rows_per_slice)[:, None]

    def maps(self):
        """
        Region and alpha maps.

        Returns
        -------
        regions : ndarray of int32, shape (ny, nx)
            Slice id, 0 outside slices.
        alpha : ndarray of float64, shape (ny, nx)
            Along-slice coordinate of each pixel centre, NaN outside slices.
        """
        regions = np.zeros((self.ny, self.nx), dtype=np.int32)
        alpha = np.full((self.ny, self.nx), np.nan)
        cols = np.broadcast_to(np.arange(self.nx), (self.rows_per_slice, self.nx))
        for s in range(1, self.n_slices + 1):
            rows = self.slice_rows(s)
            regions[rows, cols] = s
            alpha[rows, cols] = self.alpha_of(s, cols, rows)
        return regions, alpha
