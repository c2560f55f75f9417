"""Tuning parameters of the spline fit, with the paper's values and instrument presets."""

from dataclasses import dataclass, replace

__all__ = ["FitParameters", "COLUMN_ORDERS"]

#: Orders in which the columns of a region are fitted (paper section II.3).
#: ``ascending``: left to right (NIRSpec NRS1, where the trace is most tilted at the left);
#: ``descending``: right to left (NRS2); ``outside_in``: from both ends to the middle
#: (MIRI MRS, whose traces are parallel to the pixel grid in the middle of the detector).
COLUMN_ORDERS = ("ascending", "descending", "outside_in")


@dataclass(frozen=True)
class FitParameters:
    """
    Parameters of the per-column B-spline fit (Law et al., ATM paper, section II.3).

    Attributes
    ----------
    nknots : int or None
        Number of uniform knot intervals across the slice. ``None`` chooses
        ``knots_per_row`` times the number of native rows the region spans.
        Paper: 68 for NIRSpec IFU (~30-row slices), 36 for MIRI MRS.
    knots_per_row : float
        Knot intervals per native row when ``nknots`` is None (paper: ~2).
    window : int
        Half-width of the column window: columns ``i - window .. i + window`` enter
        the fit of column ``i`` (paper: 50).
    sigma_reject : float
        Points more than this many rms from the fit are rejected (paper: 2.5).
    max_iter : int
        Maximum number of fit-and-reject passes per column.
    gap_ratio : float
        When the largest gap between sampled ``alpha`` positions in the window exceeds
        ``gap_ratio`` knot intervals, the previous column's fit is reused (paper: 1.6
        for NIRSpec; jwst uses 1.2 for MIRI).
    column_order : {"ascending", "descending", "outside_in"}
        Order in which columns are fitted; a column that cannot be fitted reuses the
        fit of the column before it in this order.
    min_good : int or None
        A column is fitted only if it holds more than this many finite pixels. ``None``
        chooses half the number of native rows in the region (jwst's convention).
    max_reject_fraction : float
        A rejection pass that would leave fewer than ``1 - max_reject_fraction`` of
        the window's points keeps the previous pass's fit (jwst: 0.2).
    scale_top : int
        Number of highest-weight pixels whose ratios seed the 2-sigma clip of the
        scale factor (paper: 5).
    scale_sigma : float
        Clip, in rms, of the scale-factor ratios around the seed mean (paper: 2).
    """

    nknots: int | None = None
    knots_per_row: float = 2.0
    window: int = 50
    sigma_reject: float = 2.5
    max_iter: int = 3
    gap_ratio: float = 1.6
    column_order: str = "ascending"
    min_good: int | None = None
    max_reject_fraction: float = 0.2
    scale_top: int = 5
    scale_sigma: float = 2.0

    def __post_init__(self):
        if self.column_order not in COLUMN_ORDERS:
            raise ValueError(
                f"column_order must be one of {COLUMN_ORDERS}, not {self.column_order!r}"
            )
        if self.window < 0:
            raise ValueError(f"window must be >= 0 columns, not {self.window}")
        if self.nknots is not None and self.nknots < 1:
            raise ValueError(f"nknots must be >= 1, not {self.nknots}")
        if self.sigma_reject <= 0:
            raise ValueError(f"sigma_reject must be > 0, not {self.sigma_reject}")
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, not {self.max_iter}")
        if self.gap_ratio <= 0:
            raise ValueError(f"gap_ratio must be > 0, not {self.gap_ratio}")
        if self.scale_top < 1:
            raise ValueError(f"scale_top must be >= 1, not {self.scale_top}")

    def with_overrides(self, **overrides):
        """
        Return a copy with some fields replaced; ``None`` values are ignored.

        Raises
        ------
        TypeError
            If a keyword is not a field of `FitParameters`.
        """
        fields = set(self.__dataclass_fields__)
        unknown = set(overrides) - fields
        if unknown:
            raise TypeError(
                f"unknown fit parameter(s) {sorted(unknown)}; expected some of {sorted(fields)}"
            )
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def nirspec_ifu(cls, detector="NRS1"):
        """
        NIRSpec IFU preset: 68 knots, +-50 columns, 2.5 sigma, gap limit 1.6 knots.

        Columns run left to right on NRS1 and right to left on NRS2, starting where the
        trace is most tilted against the pixel grid (paper section II.3).
        """
        order = "descending" if str(detector).upper() == "NRS2" else "ascending"
        return cls(nknots=68, window=50, gap_ratio=1.6, column_order=order)

    @classmethod
    def nirspec_slit(cls, detector="NRS1", grating=None):
        """
        NIRSpec fixed-slit / MOS preset: knots from the slit height (2 per row).

        For PRISM, whose profile changes quickly with wavelength, the window shrinks to
        +-10 columns and the knots to 1 per row, as in jwst.
        """
        order = "descending" if str(detector).upper() == "NRS2" else "ascending"
        if str(grating).upper() == "PRISM":
            return cls(knots_per_row=1.0, window=10, gap_ratio=1.6, column_order=order)
        return cls(knots_per_row=2.0, window=50, gap_ratio=1.6, column_order=order)

    @classmethod
    def miri_mrs(cls):
        """MIRI MRS preset: 36 knots, +-50 columns, gap limit 1.2, fitted outside-in."""
        return cls(nknots=36, window=50, gap_ratio=1.2, column_order="outside_in", min_good=8)
