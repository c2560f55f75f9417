"""The public entry point of the ATM core: :func:`adaptive_trace_model`."""

import logging
from dataclasses import dataclass, field

import numpy as np

from atm_step.core import (
    background,
    combine,
    errors,
    grid,
    linear,
    precompile,
    stats,
    trace_fit,
    two_profile,
)
from atm_step.core.memory import no_huge_page_advice
from atm_step.core.parameters import FitParameters, check_parameter

__all__ = ["ATMResult", "adaptive_trace_model"]

log = logging.getLogger(__name__)


@dataclass
class ATMResult:
    """
    Everything the ATM core produces for one detector image.

    Oversampled arrays have shape ``(ny_os, nx) = (ceil(ny * N), nx)``; with
    ``oversample == 1`` they are on the native grid. Units are those of the input flux.

    Attributes
    ----------
    flux : ndarray of float64
        Combined image (paper II.5): spline + residual (spline alone with
        ``psf_optimal``) inside each region's compact-source band, the linear model
        elsewhere. With ``oversample == 1`` this is the input flux, unchanged.
    err : ndarray of float64 or None
        Oversampled error, inflated by ``X = 0.23 N + 0.77`` (paper IV); None if no
        error array was given.
    variances : dict of str to ndarray
        Oversampled variance arrays, inflated by ``X**2``, under the names given.
    trace : ndarray of float64
        Scaled spline model where the combination uses it, NaN elsewhere.
    spline : ndarray of float64 or None
        Scaled spline model wherever a fit exists, NaN elsewhere.
    linear : ndarray of float64 or None
        Linear model (paper II.2); NaN where the nearest native pixel is NaN.
    residual : ndarray of float64 or None
        Residual model (paper II.4): data minus spline at native pixels, linearly
        interpolated (Wiener-weighted inside the band with
        ``FitParameters.residual_shrinkage``); NaN where no spline exists.
        ``spline``, ``linear`` and ``residual`` are None when the call asked for no
        intermediate images (``intermediates=False``).
    band : ndarray of bool
        True inside the compact-source band of a fitted region (where ``trace`` is used).
    estimated : ndarray of bool
        True where the output is finite although the nearest native input pixel was
        NaN: the model filled a bad pixel (callers set FLUX_ESTIMATED there).
    y_os : ndarray of float64, shape (ny_os,)
        Native row coordinate of each oversampled row.
    near_row : ndarray of int64, shape (ny_os,)
        Nearest native row of each oversampled row.
    oversample : float
        The oversampling factor ``N``.
    inflation : float
        The error inflation factor ``X`` applied.
    mean_offset : float
        The negative image mean that was subtracted before modelling and restored
        after (0 if the mean was not negative).
    region_ids : ndarray of int64
        Ids of all regions in the map.
    fitted : ndarray of bool
        For each of ``region_ids``, whether a spline model was fitted.
    n_columns_fitted : ndarray of int64
        Per region, columns with a fresh spline fit.
    n_columns_reused : ndarray of int64
        Per region, columns that reused the previous column's fit (sampling gap too
        large, too few points, or an ill-conditioned fit).
    n_rejected : ndarray of int64
        Per region, number of point rejections summed over all column fits.
    n_band_rows : ndarray of float64
        Per region, width of the compact-source band in native rows.
    image_mean, image_rms : float
        Sigma-clipped statistics used for the fit threshold (paper II.1).
    """

    flux: np.ndarray
    err: np.ndarray | None
    variances: dict
    trace: np.ndarray
    spline: np.ndarray | None
    linear: np.ndarray | None
    residual: np.ndarray | None
    band: np.ndarray
    estimated: np.ndarray
    y_os: np.ndarray
    near_row: np.ndarray
    oversample: float
    inflation: float
    mean_offset: float
    region_ids: np.ndarray
    fitted: np.ndarray
    n_columns_fitted: np.ndarray
    n_columns_reused: np.ndarray
    n_rejected: np.ndarray
    n_band_rows: np.ndarray
    image_mean: float = 0.0
    image_rms: float = 0.0
    parameters: FitParameters = field(default_factory=FitParameters)

    @property
    def n_fitted(self):
        """Number of regions with a spline model."""
        return int(np.count_nonzero(self.fitted))

    @property
    def n_estimated(self):
        """Number of oversampled pixels filled by the model where the input was NaN."""
        return int(np.count_nonzero(self.estimated))

    @property
    def n_from_model(self):
        """Number of finite oversampled pixels taken from the spline model."""
        return int(np.count_nonzero(self.band & np.isfinite(self.flux)))


def _check_inputs(flux, alpha, regions, err, variances, alpha_os, oversample):
    flux = np.asarray(flux)
    if flux.ndim != 2:
        raise ValueError(f"flux must be a 2-D image (ny, nx); got shape {flux.shape}")
    if flux.size == 0:
        raise ValueError(f"flux has no pixels (shape {flux.shape}): nothing to model")
    for name, arr in (("alpha", alpha), ("regions", regions), ("err", err)):
        if arr is not None and np.shape(arr) != flux.shape:
            raise ValueError(
                f"{name} has shape {np.shape(arr)}, but flux has shape {flux.shape}"
            )
    for name, arr in (variances or {}).items():
        if np.shape(arr) != flux.shape:
            raise ValueError(
                f"variance {name!r} has shape {np.shape(arr)}, but flux has shape {flux.shape}"
            )
    if not np.issubdtype(np.asarray(regions).dtype, np.integer):
        raise TypeError(f"regions must be an integer map; got dtype {np.asarray(regions).dtype}")
    if alpha is None:
        raise ValueError("alpha (the along-slice coordinate, shape of flux) is required")
    if alpha_os is not None:
        expect = grid.oversampled_shape(flux.shape, oversample)
        if np.shape(alpha_os) != expect:
            raise ValueError(f"alpha_os has shape {np.shape(alpha_os)}; expected {expect}")


def adaptive_trace_model(
    flux,
    alpha,
    regions,
    *,
    err=None,
    variances=None,
    oversample=1.0,
    fit_threshold=10.0,
    slope_limit=0.1,
    pad=2,
    psf_optimal=False,
    alpha_os=None,
    channel_groups=None,
    parameters=None,
    maximum_cores=1,
    intermediates=True,
    **tuning,
):
    """
    Fit adaptive trace models to a spectral image and oversample it along the slice.

    Dispersion runs along x (axis 1); callers whose instrument disperses along y
    (MIRI MRS) rotate first. Each region (slice or slit) is modelled column by column
    (paper section II): a linear model, a cubic B-spline model of the normalised
    along-slice profile fitted to the columns in a sliding window with iterative
    sigma rejection and scaled to each column, and a residual model; they are combined
    in a compact-source band that is the same for every column of the region.

    Parameters
    ----------
    flux : ndarray of float, shape (ny, nx)
        Calibrated image (e.g. MJy/sr). NaN marks missing pixels.
    alpha : ndarray of float, shape (ny, nx)
        Along-slice coordinate of each pixel centre (any unit, e.g. arcsec), increasing
        with row index inside each region; NaN outside regions.
    regions : ndarray of int, shape (ny, nx)
        Region map: 0 outside, one positive id per slice or slit.
    err : ndarray of float, shape (ny, nx), optional
        1-sigma errors of ``flux``; oversampled and inflated into ``result.err``.
    variances : dict of str to ndarray, shape (ny, nx), optional
        Variance arrays (e.g. ``var_poisson``); their square roots are oversampled
        linearly, inflated and squared back.
    oversample : float, optional
        Oversampling factor ``N >= 1`` along axis 0. With 1, the combined image is
        the input and only the trace and spline models are produced.
    fit_threshold : float, optional
        A region is fitted only if the peak of its wavelength-collapsed profile
        exceeds ``mean + fit_threshold * rms`` of the image (paper II.3). ``<= 0``
        fits every region.
    slope_limit : float, optional
        Rows where the normalised model changes by more than this per native pixel
        define the compact-source band (paper II.5). ``<= 0`` uses the spline model
        over the whole region.
    pad : int, optional
        Padding of the band, in native pixels (paper: 2-3).
    psf_optimal : bool, optional
        Model an isolated point source: fit every region, use the spline everywhere,
        and leave out the residual model.
    alpha_os : ndarray of float, shape (ceil(ny * N), nx), optional
        Along-slice coordinate of each oversampled pixel, e.g. from the WCS. By default
        ``alpha`` is interpolated linearly along each column of each region (and
        extrapolated by half a native pixel at its ends).
    channel_groups : sequence of sequence of int, optional
        Groups of region ids whose statistics are computed together (MIRI MRS
        channels, paper II.1). By default one group holds every region.
    parameters : FitParameters, optional
        Spline-fit tuning; default `FitParameters()` (paper values). Presets:
        `FitParameters.nirspec_ifu`, `FitParameters.miri_mrs`,
        `FitParameters.nirspec_slit`, `FitParameters.miri_lrs`.
    maximum_cores : int, optional
        Threads for the compiled kernels: regions are fitted in parallel, and the
        oversampled rows are computed in parallel.
    intermediates : bool, optional
        If False, ``result.spline``, ``result.linear`` and ``result.residual`` are
        None: the images only intermediate products need are not kept (the step asks
        for them only with ``save_intermediate_results``). Two fewer oversampled images
        are made, and one fewer is held on return; every other output is the same.
    **tuning
        Overrides of single `FitParameters` fields (``nknots``, ``window``,
        ``sigma_reject``, ``max_iter``, ``gap_ratio``, ``column_order``,
        ``min_good``, ...).

    Returns
    -------
    ATMResult
        The combined image, its components, errors and per-region diagnostics.

    Raises
    ------
    ValueError
        If arrays are not 2-D images of one shape or hold no pixels, or a parameter
        (``oversample``, ``fit_threshold``, ``slope_limit``, ``pad`` or a tuning
        value) is outside its range in `atm_step.core.parameters.LIMITS` (NaN
        included); the message names the parameter and the range.
    TypeError
        If ``regions`` is not an integer map or an unknown tuning keyword is given.

    Notes
    -----
    Source: D. R. Law et al., "Mitigating Resampling Artifacts for the JWST IFU
    Spectrometers with Adaptive Trace Modeling", sections II.1-II.5 and IV. The
    oversampled grid follows jwst's convention (`atm_step.core.grid`). Where this
    implementation departs from jwst's step, the module docstrings of
    `atm_step.core.trace_fit` and `atm_step.core.combine` say how and why.

    Examples
    --------
    One slit, 30 rows x 200 columns, tilted by one row per 80 columns against the
    pixel grid, holding an undersampled point source (FWHM 0.19" on 0.1" rows):

    >>> import numpy as np
    >>> from atm_step.core import adaptive_trace_model
    >>> y, x = np.mgrid[:30, :200].astype(float)
    >>> alpha = 0.1 * (y - 14.5 - x / 80)                  # arcsec along the slit
    >>> inside = np.abs(alpha) < 1.2
    >>> regions = inside.astype(np.int32)                    # region 1: the slit
    >>> alpha[~inside] = np.nan
    >>> flux = np.where(inside, 100 * np.exp(-0.5 * (alpha / 0.08) ** 2) + 1, np.nan)
    >>> res = adaptive_trace_model(flux, alpha, regions, oversample=3, fit_threshold=0)
    >>> res.flux.shape                                       # 3 x the rows
    (90, 200)
    >>> res.region_ids, res.fitted, res.n_columns_fitted
    (array([1]), array([ True]), array([200]))

    The oversampled image keeps each column's flux (rows are 1/3 as tall):

    >>> ratio = np.nansum(res.flux, axis=0) / 3 / np.nansum(flux, axis=0)
    >>> bool(np.all(np.abs(ratio - 1) < 1e-3))
    True

    With ``oversample=1`` the image is returned unchanged, with the trace model:

    >>> res1 = adaptive_trace_model(flux, alpha, regions, fit_threshold=0)
    >>> bool(np.array_equal(res1.flux, flux, equal_nan=True))
    True
    >>> bool(np.nanmax(np.abs(res1.spline - flux)) < 0.01 * 100)   # within 1% of the peak
    True
    """
    oversample = check_parameter("oversample", oversample)
    fit_threshold = check_parameter("fit_threshold", fit_threshold)
    slope_limit = check_parameter("slope_limit", slope_limit)
    pad = check_parameter("pad", pad)
    _check_inputs(flux, alpha, regions, err, variances, alpha_os, oversample)
    params = (parameters or FitParameters()).with_overrides(**tuning)
    if psf_optimal:
        fit_threshold = 0.0
        slope_limit = 0.0
    regions, channel_groups, original_ids = _compact_ids(regions, channel_groups)
    # a first run (empty Numba cache) shares its compilation with a helper process
    helper = precompile.start(params, oversample=oversample, err=err, variances=variances,
                              psf_optimal=psf_optimal, slope_limit=slope_limit,
                              alpha_os=alpha_os)
    try:
        # no_huge_page_advice: the oversampled images are fresh memory (atm_step.core.memory)
        with trace_fit.compiled_threads(maximum_cores), no_huge_page_advice():
            result = _model_image(
                flux, alpha, regions, err, variances, float(oversample), fit_threshold,
                slope_limit, pad, psf_optimal, alpha_os, channel_groups, params, original_ids,
                helper, bool(intermediates),
            )  # fmt: skip
    finally:
        if helper is not None:
            helper.close()
    if original_ids is not None:
        result.region_ids = original_ids[result.region_ids]
    return result


#: Region ids above this (and sparser than one per ten pixels) are renumbered 1..K
#: internally: the compiled kernels index per-region tables by id.
_MAX_DIRECT_ID = 65535


def _compact_ids(regions, channel_groups):
    """
    Renumber sparse or huge region ids to 1..K (a region id of 2**31 - 1 would
    otherwise size lookup tables at 16 GiB).

    Returns
    -------
    regions : ndarray
        The map, renumbered if needed (else the input).
    channel_groups : list or None
        The groups in the new numbering.
    original_ids : ndarray of int64 or None
        ``original_ids[k]`` is the input id of new id ``k`` (None if not renumbered).
    """
    regions = np.asarray(regions)
    top = int(regions.max(initial=0))
    if top <= max(_MAX_DIRECT_ID, regions.size // 10):
        return regions, channel_groups, None
    ids = np.unique(regions[regions > 0])
    compact = np.where(regions > 0, np.searchsorted(ids, regions) + 1, 0).astype(np.int64)
    original_ids = np.concatenate([[0], ids]).astype(np.int64)
    if channel_groups is not None:
        present = set(ids.tolist())
        channel_groups = [
            [int(np.searchsorted(ids, r)) + 1 for r in group if int(r) in present]
            for group in channel_groups
        ]
    log.debug("Region ids up to %d renumbered 1..%d", top, ids.size)
    return compact, channel_groups, original_ids


#: a background refit is kept where the rms of the band's residuals is at most this
#: factor times the first fit's
REFIT_TOLERANCE = 1.0


def _refit_without_background(fit, band, near_band, work, alpha, regions, alpha_os, near, params,
                              labels):
    """
    Refit the trace model of regions with a compact-source band to the image minus a
    smooth model of the emission outside the band, and add that model back to the
    spline model (`atm_step.core.background`). Updates ``fit`` in place; its
    normalised model, which defines ``band``, stays that of the first fit, so ``band``
    holds for the refitted model too. ``near_band`` is `combine.band_pixels` of ``band``.
    Returns the ids of the regions whose refit was kept.
    """
    ids, bg_native, bg_os = background.extended_background(
        work, alpha, regions, alpha_os, near, band, fit.geometry, params.background_rows,
        window=params.window,
    )
    if ids.size == 0:
        return []
    refit = trace_fit.fit_regions(work - bg_native, alpha, regions, ids, alpha_os, near, params,
                                  labels=labels)
    # keep a refit only where it models the band's pixels at least as well as the
    # first fit: a refit that follows the noise (a faint compact source left after
    # removing a bright background) is discarded
    kept = []
    geom = refit.geometry
    for k, rid in enumerate(geom.ids.tolist()):
        rows = slice(int(geom.row0[k]), int(geom.row1[k]) + 1)
        inside = regions[rows] == rid
        m = inside & near_band[rows] & np.isfinite(work[rows])
        d = work[rows][m]
        new = refit.spline_native[rows][m] + bg_native[rows][m]
        old = fit.spline_native[rows][m]
        ok = np.isfinite(new) & np.isfinite(old)
        if not ok.any():
            continue
        r_new = np.sqrt(np.mean((d[ok] - new[ok]) ** 2))
        r_old = np.sqrt(np.mean((d[ok] - old[ok]) ** 2))
        if not r_new <= REFIT_TOLERANCE * r_old:
            log.debug("Region %d: background refit discarded (band rms %.3g vs %.3g)",
                      rid, r_new, r_old)
            continue
        kept.append(rid)
        fit.spline_native[rows][inside] = (refit.spline_native[rows][inside]
                                           + bg_native[rows][inside])
        if fit.spline_os is not fit.spline_native:
            j0, j1 = np.searchsorted(near, [geom.row0[k], geom.row1[k] + 1])
            inside_os = inside[near[j0:j1] - geom.row0[k]]
            fit.spline_os[j0:j1][inside_os] = (refit.spline_os[j0:j1][inside_os]
                                               + bg_os[j0:j1][inside_os])
        fit.counts[np.searchsorted(fit.geometry.ids, rid)] = refit.counts[k]
    log.info("Trace model refitted without the extended emission under the band in %d regions",
             len(kept))
    return kept


def _model_image(
    flux, alpha, regions, err, variances, oversample, fit_threshold, slope_limit, pad,
    psf_optimal, alpha_os, channel_groups, params, labels=None, helper=None,
    intermediates=True,
):  # fmt: skip
    """The body of `adaptive_trace_model`, on checked inputs; ``labels`` maps renumbered
    region ids to the caller's, for messages; ``helper`` is a running
    `precompile.CompileHelper`, waited for once the spline kernels are compiled."""
    flux_in = flux
    # C-contiguous float64 at the boundary: one compiled specialisation per kernel
    flux = np.ascontiguousarray(flux, dtype=np.float64)
    regions = np.ascontiguousarray(regions, dtype=np.int64)
    alpha = np.where(regions > 0, np.ascontiguousarray(alpha, dtype=np.float64), np.nan)
    ny, nx = flux.shape
    y_os = grid.oversampled_rows(ny, oversample)
    near = grid.nearest_native_row(ny, oversample)

    # II.1: image statistics; a negative mean is removed before modelling
    image_stats = stats.image_statistics(flux, regions, channel_groups)
    offset = min(image_stats.global_mean, 0.0)
    work = flux - offset if offset < 0 else flux

    region_ids = stats.region_ids(regions)
    if fit_threshold > 0:
        to_fit = stats.regions_over_threshold(
            work, alpha, regions, region_ids, image_stats, fit_threshold, offset
        )
    else:
        to_fit = np.ones(region_ids.size, dtype=bool)

    if alpha_os is None and oversample == 1.0:
        alpha_os = alpha  # the same grid: the spline models at both are one array
    elif alpha_os is None:
        alpha_os = linear.linear_oversample(
            alpha, regions, y_os, near, preserve_nan=False, extrapolate=True
        )
    else:
        alpha_os = np.ascontiguousarray(alpha_os, dtype=np.float64)

    # II.3: spline model of every region over threshold, at native and oversampled rows
    fit = trace_fit.fit_regions(work, alpha, regions, region_ids[to_fit], alpha_os, near, params,
                                labels=labels)
    if helper is not None:
        helper.join()  # the image-stage kernels, compiled by the helper, are in the cache
    # regions whose geometry cannot carry a spline (see fit_regions) are not fitted
    to_fit &= np.isin(region_ids, fit.geometry.ids)
    # extended emission under compact sources, then the trace model refitted without it
    # II.5: the compact-source band, from the first fit's normalised model
    band = combine.compact_source_band(fit, regions, alpha, slope_limit, pad)
    refit = params.background_rows > 0 and slope_limit > 0 and fit.geometry.ids.size
    with_background = []
    if refit:
        with_background = _refit_without_background(
            fit, band, combine.band_pixels(band, regions, alpha), work, alpha, regions, alpha_os,
            near, params, labels,
        )

    if params.two_profiles and fit.geometry.ids.size:
        # a region given a background model holds a compact source on extended
        # emission: that model is its second component
        two_profile.two_profile_refit(fit, work, err, alpha, regions, alpha_os, near, params,
                                      skip=with_background)

    # IV: errors and variances are oversampled in the same pass as the flux
    sigmas, sigma_names, squared = (None, [], None)
    if oversample != 1.0:
        sigmas, sigma_names, squared = errors.sigma_stack(err, variances)
    inflation = errors.inflation_factor(oversample)

    # II.4: the native residual, written into the normalised model's buffer (its last
    # use was the band and the background refit above): one image less to allocate
    resid_native = np.subtract(work, fit.spline_native, out=fit.model_native)
    fit.model_native = None

    # II.2, II.4, II.5
    parts = combine.combine_models(
        work,
        regions,
        alpha,
        alpha_os,
        y_os,
        near,
        fit,
        band,
        oversample=oversample,
        psf_optimal=psf_optimal,
        sigmas=sigmas,
        squared=squared,
        inflation=inflation,
        resid_native=resid_native,
        err=err if oversample != 1.0 else None,
        residual_shrinkage=params.residual_shrinkage,
        intermediates=intermediates,
    )
    # the native images only the models needed: released before the error images
    # are made (at N = 1 these copies set the peak memory of the call)
    del resid_native, work, alpha, alpha_os, regions
    if offset < 0:
        for arr in (parts.flux, parts.trace, parts.spline):
            if arr is not None:
                arr += offset
    if oversample == 1.0:
        # the input itself, unchanged (copied only if the conversion did not copy it),
        # into the combined image's buffer, which N = 1 does not use
        if flux is flux_in:
            np.copyto(parts.flux, flux)
        else:
            parts.flux = flux
        parts.estimated[:] = False
        del flux, flux_in
        # the errors and variances, copied (regions is not used at N = 1)
        err_os, var_os, inflation = errors.oversample_errors(
            err, variances, None, y_os, near, oversample, parts.estimated
        )
    else:
        var_os = dict(zip(sigma_names, parts.sigmas, strict=True))
        err_os = var_os.pop("err", None)

    per_region = fit.per_region_counts(region_ids)
    result = ATMResult(
        flux=parts.flux,
        err=err_os,
        variances=var_os,
        trace=parts.trace,
        spline=parts.spline,
        linear=parts.linear,
        residual=parts.residual,
        band=parts.band,
        estimated=parts.estimated,
        y_os=y_os,
        near_row=near,
        oversample=oversample,
        inflation=inflation,
        mean_offset=float(offset),
        region_ids=region_ids,
        fitted=to_fit,
        n_columns_fitted=per_region["fitted"],
        n_columns_reused=per_region["reused"],
        n_rejected=per_region["rejected"],
        n_band_rows=parts.band_rows_for(region_ids),
        image_mean=float(image_stats.global_mean),
        image_rms=float(image_stats.global_rms),
        parameters=params,
    )
    if log.isEnabledFor(logging.DEBUG):  # the counts pass over the whole oversampled image
        log.debug(
            "ATM core: %d/%d regions fitted, %d pixels from the model, %d filled",
            result.n_fitted,
            region_ids.size,
            result.n_from_model,
            result.n_estimated,
        )
    return result
