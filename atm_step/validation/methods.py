"""Run the three processings compared in the validation on the same arrays.

- ``standard``: the native detector image, no oversampling.
- ``ours``: :func:`atm_step.core.adaptive_trace_model`.
- ``jwst``: jwst's own array-level functions of ``jwst.adaptive_trace_model.trace_model``
  (``fit_all_regions``, ``oversample_flux``, ``linear_oversample``, ``_inflate_error``)
  with the keyword arguments and thresholds that ``fit_and_oversample`` sets for
  NIRSpec IFU NRS1 (``_set_fit_kwargs``, ``_set_oversample_kwargs``). They are called,
  not copied; only the glue that ``fit_and_oversample`` does around them (image
  statistics, per-region threshold dict, NaN restoration of the errors) is repeated.

All functions take plain arrays in the NIRSpec orientation (dispersion along x).
"""

import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["Processed", "run_standard", "run_ours", "fit_jwst", "run_jwst"]

log = logging.getLogger(__name__)


@dataclass
class Processed:
    """
    One processed image ready for resampling.

    Attributes
    ----------
    method : str
        ``"standard"``, ``"ours"`` or ``"jwst"``.
    oversample : float
        ``N``.
    flux, err : ndarray, shape (ceil(ny*N), nx)
        Surface brightness and 1-sigma error (MJy/sr).
    alpha : ndarray, shape (ceil(ny*N), nx)
        Along-slice coordinate of each (oversampled) pixel centre, arcsec.
    regions : ndarray of int, shape (ceil(ny*N), nx)
        Slice id of each (oversampled) pixel.
    pixel_size : float
        Along-slice footprint of one pixel, arcsec (``0.1 / N``).
    seconds : float
        Wall time of the processing.
    extra : dict
        Method-specific products (e.g. the ATMResult as ``"result"``).
    """

    method: str
    oversample: float
    flux: np.ndarray
    err: np.ndarray
    alpha: np.ndarray
    regions: np.ndarray
    pixel_size: float
    seconds: float = 0.0
    extra: dict = None


def _row_height(scene):
    return float(scene.geometry.row_height)


def run_standard(scene, flux=None):
    """
    The native image as it is (what cube_build resamples without ATM).

    Parameters
    ----------
    scene : atm_step.simulate.Scene
    flux : ndarray, shape (ny, nx), optional
        Image to use instead of ``scene.flux`` (e.g. after pixel replacement).

    Returns
    -------
    Processed
    """
    f = scene.flux if flux is None else flux
    return Processed("standard", 1.0, f, scene.err, scene.alpha, scene.regions, _row_height(scene), 0.0, {})


def run_ours(scene, oversample, *, flux=None, **kwargs):
    """
    atm-step's core on a scene, with the NIRSpec IFU NRS1 preset.

    Parameters
    ----------
    scene : atm_step.simulate.Scene
    oversample : float
        ``N``.
    flux : ndarray, shape (ny, nx), optional
        Image to use instead of ``scene.flux``.
    **kwargs
        Passed to :func:`atm_step.core.adaptive_trace_model`.

    Returns
    -------
    Processed
        ``extra["result"]`` holds the `ATMResult`.
    """
    from atm_step.core import FitParameters, adaptive_trace_model

    f = scene.flux if flux is None else flux
    reg_os, alpha_os = scene.oversampled_alpha(oversample)
    kwargs.setdefault("parameters", FitParameters.nirspec_ifu("NRS1"))
    t0 = time.perf_counter()
    res = adaptive_trace_model(
        f, scene.alpha, scene.regions, err=scene.err, oversample=oversample, alpha_os=alpha_os, **kwargs
    )
    dt = time.perf_counter() - t0
    return Processed(
        "ours", float(oversample), res.flux, res.err, alpha_os, reg_os, _row_height(scene) / oversample, dt,
        {"result": res},
    )


def _jwst_threshold(flux, regions, fit_threshold):
    from astropy.stats import sigma_clipped_stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mean, _, rms = sigma_clipped_stats(flux[regions > 0])
    mean = 0.0 if not np.isfinite(mean) else float(mean)
    rms = 0.0 if not np.isfinite(rms) else float(rms)
    restore = None
    if mean < 0:
        restore = mean
        mean = 0.0
    return mean + fit_threshold * rms, restore


def fit_jwst(scene, *, flux=None, fit_threshold=10.0, regions_to_fit=None):
    """
    jwst's spline fits (``fit_all_regions``) for a scene, as ``fit_and_oversample`` sets them up.

    Parameters
    ----------
    scene : atm_step.simulate.Scene
    flux : ndarray, shape (ny, nx), optional
        Image to use instead of ``scene.flux``.
    fit_threshold : float
        As the step parameter.
    regions_to_fit : sequence of int, optional
        Only these region ids are passed to jwst (the others are left unfitted, i.e.
        linear); used to save time on regions jwst's threshold would skip anyway.

    Returns
    -------
    dict
        ``{"models": spline_models, "restore": negative mean removed or None,
        "flux": the image fitted, "seconds": wall time}``.
    """
    from jwst.adaptive_trace_model import trace_model as tm

    f = np.array(scene.flux if flux is None else flux, dtype=np.float64)
    regions = scene.regions
    threshold, restore = _jwst_threshold(f, regions, fit_threshold)
    if restore is not None:
        f = f - restore
    ids = np.unique(regions[regions > 0])
    kw = tm._set_fit_kwargs("NRS_IFU", "NRS1", None, f.shape[1])
    kw["peak_threshold"] = dict.fromkeys(ids, threshold)
    reg = regions if regions_to_fit is None else np.where(np.isin(regions, list(regions_to_fit)), regions, 0)
    t0 = time.perf_counter()
    models = tm.fit_all_regions(f, scene.err, scene.alpha, reg, maximum_cores="none", **kw)
    dt = time.perf_counter() - t0
    log.info("jwst fit_all_regions: %d regions with models in %.1f s", sum(bool(m) for m in models.values()), dt)
    return {"models": models, "restore": restore, "flux": f, "seconds": dt}


def run_jwst(scene, oversample, fit, *, slope_limit=0.1):
    """
    jwst's ``oversample_flux`` and error oversampling with fits from :func:`fit_jwst`.

    Parameters
    ----------
    scene : atm_step.simulate.Scene
    oversample : float
        ``N``; with 1 jwst leaves the flux unchanged (the standard image is returned).
    fit : dict
        From :func:`fit_jwst`.
    slope_limit : float
        As the step parameter.

    Returns
    -------
    Processed
        ``extra`` holds ``trace_used``, ``full_trace``, ``linear``, ``residual``.
    """
    from jwst.adaptive_trace_model import trace_model as tm

    if oversample == 1:
        p = run_standard(scene)
        p.method = "jwst"
        return p
    reg_os, alpha_os = scene.oversampled_alpha(oversample)
    okw = tm._set_oversample_kwargs("NRS_IFU", "NRS1")
    t0 = time.perf_counter()
    flux_os, used, full, lin, resid = tm.oversample_flux(
        fit["flux"], scene.alpha, scene.regions, fit["models"], oversample, alpha_os,
        slope_limit=slope_limit, psf_optimal=False, **okw,
    )
    if fit["restore"] is not None:
        flux_os = flux_os + fit["restore"]
    err = scene.err
    err_os = tm.linear_oversample(err, scene.regions, oversample, okw["require_ngood"], edge_limit=0, preserve_nan=False)
    ny_os = flux_os.shape[0]
    y_os = np.arange(ny_os) / oversample - (oversample - 1) / (2 * oversample)
    near = np.clip(np.round(y_os).astype(int), 0, err.shape[0] - 1)
    is_est = np.isfinite(flux_os) & ~np.isfinite(scene.flux[near])
    err_os[~np.isfinite(err[near]) & ~is_est] = np.nan
    tm._inflate_error(err_os, "err", oversample)
    dt = time.perf_counter() - t0
    return Processed(
        "jwst", float(oversample), flux_os, err_os, alpha_os, reg_os, _row_height(scene) / oversample, dt,
        {"trace_used": used, "full_trace": full, "linear": lin, "residual": resid},
    )
