"""Tuning parameters of the spline fit, with the paper's values and instrument presets,
and the allowed range of every ATM parameter (checked once, where a value enters)."""

import math
import numbers
from dataclasses import dataclass, fields, replace

__all__ = ["FitParameters", "COLUMN_ORDERS", "LIMITS", "Limit", "check_parameter"]

#: Orders in which the columns of a region are fitted (paper section II.3).
#: ``ascending``: left to right (NIRSpec NRS1, where the trace is most tilted at the left);
#: ``descending``: right to left (NRS2); ``outside_in``: from both ends to the middle
#: (MIRI MRS, whose traces are parallel to the pixel grid in the middle of the detector).
COLUMN_ORDERS = ("ascending", "descending", "outside_in")


@dataclass(frozen=True)
class Limit:
    """
    Allowed values of one numeric parameter.

    Attributes
    ----------
    low, high : float or None
        Bounds (None: unbounded on that side).
    low_open, high_open : bool
        Whether the bound itself is excluded.
    integer : bool
        Only whole numbers (``68`` or ``68.0``; not ``68.5``, not booleans).
    optional : bool
        ``None`` is allowed (meaning "choose automatically").
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    optional: bool = False

    def describe(self):
        """The allowed range in words, e.g. ``'an integer in [4, 1000]'``."""
        kind = "an integer" if self.integer else "a finite number"
        if self.low is not None and self.high is not None:
            lo = "(" if self.low_open else "["
            hi = ")" if self.high_open else "]"
            text = f"{kind} in {lo}{self.low:g}, {self.high:g}{hi}"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            text = f"{kind} {'<' if self.high_open else '<='} {self.high:g}"
        else:
            text = kind
        return text + (" or None" if self.optional else "")

    def check(self, name, value):
        """
        Return ``value`` (as int for integer parameters) if allowed.

        Raises
        ------
        ValueError
            Naming ``name``, the value and the allowed range.
        """
        if value is None and self.optional:
            return None
        bad = ValueError(f"parameter {name}={value!r} is not allowed: it must be {self.describe()}")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise bad
        value = float(value) if not isinstance(value, numbers.Integral) else int(value)
        if not math.isfinite(value):
            raise bad
        if self.integer:
            if value != int(value):
                raise bad
            value = int(value)
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise bad
        if self.high is not None and (
            value > self.high or (self.high_open and value == self.high)
        ):
            raise bad
        return value


#: Allowed range of every numeric ATM parameter, by name: the `FitParameters` fields and
#: the arguments of `atm_step.core.adaptive_trace_model` (which the step shares). A new
#: `FitParameters` field must get an entry here (a test checks it). Why these bounds:
#:
#: - ``oversample`` 1-10: the paper finds no gain beyond N = 3-5 (section III), and
#:   memory grows linearly with N (a 2048 x 2048 image at N = 10 needs ~340 MB per array).
#: - ``nknots`` 4-1000: fewer than 4 cubic intervals cannot follow a peaked profile
#:   (4 is also the floor of the automatic choice); the paper's ~2 intervals per row
#:   (68 for ~30-row NIRSpec slices) reaches 1000 only for a 500-row slit.
#: - ``knots_per_row`` (0, 10]: paper ~2, jwst's PRISM setting 1; beyond ~10 per row
#:   the intervals are narrower than the sampling any window of columns provides.
#: - ``sigma_reject``, ``gap_ratio``, ``scale_sigma`` > 0 (large values switch the test off);
#:   ``max_reject_fraction`` in [0, 1); counts (``window``, ``pad``, ``min_good``) >= 0;
#:   ``max_iter``, ``scale_top`` >= 1.
#: - ``knot_factor`` 1-4: finer knots than 4x the base count (~9 per row) add cost
#:   without resolution the window's sampling can support; ``penalty`` >= 0 or None
#:   (chosen by GCV); ``penalty_order`` 1-3 (the penalty must fit the band of the
#:   normal equations, half-width 3).
#: - ``background_rows`` 0-1000: 0 is off; the spline has at least 2 intervals, so
#:   large values give the smoothest background.
#: - ``fit_threshold`` and ``slope_limit`` may be any finite number (<= 0 means "fit
#:   every region" / "use the spline everywhere"). NaN is refused everywhere: it would
#:   silently switch a test off.
LIMITS = {
    "oversample": Limit(1, 10),
    "fit_threshold": Limit(),
    "slope_limit": Limit(),
    "pad": Limit(0, None, integer=True),
    "nknots": Limit(4, 1000, integer=True, optional=True),
    "knots_per_row": Limit(0, 10, low_open=True),
    "window": Limit(0, None, integer=True),
    "sigma_reject": Limit(0, None, low_open=True),
    "max_iter": Limit(1, None, integer=True),
    "gap_ratio": Limit(0, None, low_open=True),
    "min_good": Limit(0, None, integer=True, optional=True),
    "max_reject_fraction": Limit(0, 1, high_open=True),
    "scale_top": Limit(1, None, integer=True),
    "scale_sigma": Limit(0, None, low_open=True),
    "knot_factor": Limit(1, 4),
    "penalty": Limit(0, None, optional=True),
    "penalty_order": Limit(1, 3, integer=True),
    "background_rows": Limit(0, 1000),
    "residual_shrinkage": Limit(0, 10),
}


def check_parameter(name, value):
    """
    Check one ATM parameter against :data:`LIMITS`.

    Parameters
    ----------
    name : str
        Parameter name (a key of :data:`LIMITS`).
    value : object
        The value given.

    Returns
    -------
    int, float or None
        The value, as an int for integer parameters.

    Raises
    ------
    ValueError
        If the value is not allowed; the message names the parameter and the range.
    KeyError
        If ``name`` has no entry in :data:`LIMITS`.
    """
    return LIMITS[name].check(name, value)


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
    scale_offset : bool
        Fit each column's scale together with a constant offset, so that extended
        emission under a compact source (or a neighbour's wing) stays out of its
        trace model (`atm_step.core.trace_fit.column_scale_offset`; not in the paper;
        on in the NIRSpec IFU and MIRI MRS presets).
    knot_factor : float
        The fit uses ``knot_factor`` times the knot intervals set by ``nknots`` /
        ``knots_per_row``; the sampling-gap test keeps the unrefined interval as its
        unit. With a roughness penalty, finer knots give a sharp profile the
        resolution it needs without the fit falling apart where the sampling is thin.
    penalty : float or None
        Weight of the P-spline roughness penalty ``lam |D c|**2`` (Eilers & Marx
        1996), relative to the window's points per coefficient. 0: plain least squares
        (the paper). None: chosen per region by generalised cross-validation.
    penalty_order : int
        Order of the differences ``D`` in the penalty (1-3).
    background_rows : float
        Model the extended emission outside each region's compact-source band as a
        smooth spline with one knot interval per ``background_rows`` native rows, and
        fit the trace model to the image minus it (`atm_step.core.background`; not in
        the paper). 0 switches this off (the paper's method).
    residual_shrinkage : float
        Inside the compact-source band each oversampled residual ``r`` is weighted by
        ``r**2 / (r**2 + (k * sigma)**2)``, the Wiener weight for a residual seen
        through noise of ``k = residual_shrinkage`` times the pixel's error ``sigma``
        (interpolated like the residual, before the error inflation). Residuals well
        above the noise pass; residuals at the noise level, which the N-times
        oversampled image would otherwise copy as noise, are damped; the residual
        flux removed is spread back evenly, so each column's flux in the band is
        kept (`atm_step.core.combine.shrink_band_residual`). Not in the paper; 0
        switches it off (the slit presets; NIRSpec IFU and MIRI MRS use 1); without
        errors it has no effect. It lowers the noisy artifacts of sharp PSFs; with
        the ratio column scale it also adds faint diffuse emission under a bright
        star to the star, which ``scale_offset`` mostly prevents (docs/algorithm.md).
    two_profiles : bool
        Model each column as two along-slice profiles mixed in the measured shares of
        the column's flux on either side of a split point, where that fits the column
        better than the single profile (`atm_step.core.two_profile`; not in the paper):
        for two sources with different spectra in one slice. False: the paper's single
        profile.

    Raises
    ------
    ValueError
        If a field is outside its range in :data:`LIMITS` (NaN included), or
        ``column_order`` is unknown; the message names the field and the range.

    Examples
    --------
    >>> from atm_step.core import FitParameters
    >>> p = FitParameters.nirspec_ifu("NRS2")         # the paper's NIRSpec IFU preset
    >>> p.nknots, p.window, p.gap_ratio, p.column_order
    (68, 50, 1.6, 'descending')
    >>> p.with_overrides(window=20, nknots=None).window   # None keeps the preset
    20
    >>> FitParameters(sigma_reject=float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: parameter sigma_reject=nan is not allowed: it must be a finite number > 0
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
    scale_offset: bool = False
    knot_factor: float = 1.0
    penalty: float | None = 0.0
    penalty_order: int = 2
    background_rows: float = 10.0
    residual_shrinkage: float = 0.0
    two_profiles: bool = False

    def __post_init__(self):
        for name in ("scale_offset", "two_profiles"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"parameter {name}={getattr(self, name)!r} is not allowed: it must be "
                    "True or False"
                )
        if self.column_order not in COLUMN_ORDERS:
            raise ValueError(
                f"parameter column_order={self.column_order!r} is not allowed: it must be "
                f"one of {COLUMN_ORDERS}"
            )
        for f in fields(self):
            if f.name in LIMITS:
                object.__setattr__(self, f.name, check_parameter(f.name, getattr(self, f.name)))

    def with_overrides(self, **overrides):
        """
        Return a copy with some fields replaced; ``None`` values are ignored.

        Parameters
        ----------
        **overrides
            Field names and their new values (the step's tuning parameters pass
            through here).

        Returns
        -------
        FitParameters
            The copy, checked as a new instance is.

        Raises
        ------
        TypeError
            If a keyword is not a field of `FitParameters`.
        ValueError
            If a value is outside its allowed range (`LIMITS`) or NaN.
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
        NIRSpec IFU preset: 68 knots, +-50 columns, 2.5 sigma, gap limit 1.6 knots,
        roughness penalty chosen per slice by GCV (``penalty=None``), column scale
        fitted with an offset (``scale_offset``) and the Wiener-weighted residual
        (``residual_shrinkage=1``).

        Columns run left to right on NRS1 and right to left on NRS2, starting where the
        trace is most tilted against the pixel grid (paper section II.3).

        The GCV penalty (docs/algorithm.md) comes from the issue-9 grid
        (``python -m atm_step.validation --only-grid``, 32 cases): against the paper's
        unpenalised fit it leaves sharp single stars as they were (GCV picks a weight
        near 0) and removes most of the sub-pixel wiggles where the profile changes
        along the window where the trace is nearly parallel to the rows (binary at
        FWHM 2 px, noise-free N = 3: 1.37% -> 1.07%, jwst 1.58%). Goals met: noisy
        N = 3 <= 0.8x jwst 3 -> 8 of 32, noisy N = 2 <= jwst 16 -> 21, field flux 53
        -> 57 of 64; aperture scatter <= 1.08x N = 1 28 -> 26 (binaries at FWHM
        1.5-2.5 px, see docs/algorithm.md).

        The offset column scale and the Wiener-weighted residual were added together
        (docs/algorithm.md): on the same grid, noisy N = 3 <= 0.8x jwst 8 -> 17 of
        32, noisy N = 2 <= jwst 21 -> 24, aperture scatter 26 -> 27; the Wiener weight
        alone moved faint diffuse lines under a bright star onto the star (+10-60%
        of their flux in a 3 x 3 box), with the offset scale +3-20%.

        Two profiles where two sources with different spectra share a slice
        (``two_profiles``, `atm_step.core.two_profile`): on the same grid every binary
        comes to within 1.5x its noise-free floor (0.33" at 2 px, N = 3: 1.06% ->
        0.57%, floor 0.56%; at 1 px 2.91% -> 2.41%, floor 1.68%); noise-free floor
        24 -> 32 of 32, noisy N = 3 <= 0.8x jwst 17 -> 21, N = 2 <= jwst 25 -> 27;
        every other case unchanged.

        Parameters
        ----------
        detector : str
            ``"NRS1"`` or ``"NRS2"``: the column order (see above).

        Returns
        -------
        FitParameters
        """
        order = "descending" if str(detector).upper() == "NRS2" else "ascending"
        return cls(nknots=68, window=50, gap_ratio=1.6, column_order=order, penalty=None,
                   scale_offset=True, residual_shrinkage=1.0, two_profiles=True)

    @classmethod
    def nirspec_slit(cls, detector="NRS1", grating=None):
        """
        NIRSpec fixed-slit / MOS preset: knots from the slit height (2 per row).

        For PRISM, whose profile changes quickly with wavelength, the window shrinks to
        +-10 columns and the knots to 1 per row, as in jwst.

        Parameters
        ----------
        detector : str
            ``"NRS1"`` or ``"NRS2"``: the column order.
        grating : str, optional
            ``meta.instrument.grating``; ``"PRISM"`` changes the window and knots.

        Returns
        -------
        FitParameters
        """
        order = "descending" if str(detector).upper() == "NRS2" else "ascending"
        if str(grating).upper() == "PRISM":
            return cls(knots_per_row=1.0, window=10, gap_ratio=1.6, column_order=order)
        return cls(knots_per_row=2.0, window=50, gap_ratio=1.6, column_order=order)

    @classmethod
    def miri_mrs(cls, detector="MIRIFULONG"):
        """
        MIRI MRS preset: +-50 columns, gap limit 1.2, fitted outside-in, offset column
        scale and Wiener-weighted band residual; 36 knots (the
        paper's and jwst's value) on MIRIFULONG (channels 3 and 4), 50 on MIRIFUSHORT
        (channels 1 and 2, whose PSF is sharper).

        The 50 knots come from the 12A validation (`atm_step.validation.miri`, band
        12A, N = 3, jwst's cube_build): channel 1 artifact half-amplitude 6.98% with 36
        knots, 6.17% with 50 (jwst's step: 6.95%), aperture flux / standard 0.992 ->
        1.002; channel 2 3.95% -> 3.48% (jwst: 3.65%), 0.996 -> 1.001.

        As for NIRSpec IFU, the column scale is fitted with an offset
        (``scale_offset``) and the residual inside the compact-source band is
        Wiener-weighted (``residual_shrinkage=1``). On the channel 3/4 matrix
        (``python -m atm_step.validation --only-miri-matrix``: point, point on a
        nebula, binary; blur 0 and 0.2"; N = 2 and 3; noisy) ours <= jwst went from 12
        to 24 of 24 cells (ours / jwst 0.63-1.00); noise-free it stays at 16 of 24,
        and the channel-4 point source at N = 3 goes from 1.12x to 1.20x jwst's 0.30%
        (benchmarks/experiments/miri_preset_trial.md; docs/validation_miri.md).

        Parameters
        ----------
        detector : str
            ``"MIRIFUSHORT"`` (channels 1 and 2) or ``"MIRIFULONG"`` (3 and 4).

        Returns
        -------
        FitParameters
        """
        nknots = 50 if str(detector).upper() == "MIRIFUSHORT" else 36
        return cls(nknots=nknots, window=50, gap_ratio=1.2, column_order="outside_in", min_good=8,
                   scale_offset=True, residual_shrinkage=1.0)

    @classmethod
    def miri_lrs(cls, slitless=False):
        """
        MIRI LRS preset (jwst 3.0's settings for LRS): +-5 columns, 3-sigma rejection,
        gap limit 1.2, at least 8 good pixels per column, fitted from the last
        dispersion column to the first.

        Fixed slit: 40 knots, 3 fit-and-reject passes; slitless: 60 knots, 2 passes.

        Parameters
        ----------
        slitless : bool
            Slitless (``MIR_LRS-SLITLESS``) rather than the fixed slit.

        Returns
        -------
        FitParameters
        """
        if slitless:
            return cls(nknots=60, window=5, sigma_reject=3.0, max_iter=2, gap_ratio=1.2,
                       column_order="descending", min_good=8)  # fmt: skip
        return cls(nknots=40, window=5, sigma_reject=3.0, max_iter=3, gap_ratio=1.2,
                   column_order="descending", min_good=8)  # fmt: skip
