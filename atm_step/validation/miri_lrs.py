"""MIRI LRS cal files on the real instrument geometry, with an injected trace.

The shared data folder's ``miri_lrs/`` holds the flight imager distortion and the LRS
fixed-slit and slitless wavelength solutions (``/work/shared/data/README.md``); no
real LRS exposure is available. :func:`miri_lrs_model` builds a ``SlitModel`` the way
jwst 3.0's ``calwebb_spec2`` writes an LRS cal file (an image or, slitless with
integrations, a stack, converted to ``SlitModel`` with ``xstart``/``ystart``/
``xsize``/``ysize`` from the subarray) and assigns its WCS with
``jwst.assign_wcs.assign_wcs.load_wcs``. :func:`inject_trace` adds a point source
whose Airy profile is integrated over each pixel along the slit (detector x);
:func:`trace_truth` gives the noise-free image at any pixels of the WCS's input
frame, e.g. the oversampled pixels of an ATM product.
"""

import logging
from pathlib import Path

import numpy as np

from atm_step.validation.miri import airy_pixel_integrated

__all__ = ["MIRI_LRS_FILES", "inject_trace", "miri_lrs_model", "trace_truth"]

log = logging.getLogger(__name__)

#: Files of ``miri_lrs/`` by role and exposure type.
MIRI_LRS_FILES = {
    "distortion": "jwst_miri_imager_distortion_flt1.asdf",
    "MIR_LRS-FIXEDSLIT": "jwst_miri_specwcs_0005.fits",
    "MIR_LRS-SLITLESS": "jwst_miri_specwcs_0006.fits",
}

#: Subarray of each exposure type: name, (ysize, xsize), xstart, ystart (1-based).
SUBARRAYS = {
    "MIR_LRS-FIXEDSLIT": ("FULL", (1024, 1032), 1, 1),
    "MIR_LRS-SLITLESS": ("SLITLESSPRISM", (416, 72), 1, 529),
}

#: MIRI imager pixel side (arcsec).
PIXEL_ARCSEC = 0.11


def _image_model(exp_type, nints):
    from stdatamodels.jwst import datamodels

    sub, shape, xstart, ystart = SUBARRAYS[exp_type]
    full = shape if nints is None else (nints, *shape)
    model = (datamodels.ImageModel if nints is None else datamodels.CubeModel)(full)
    meta = model.meta
    meta.instrument.name = "MIRI"
    meta.instrument.detector = "MIRIMAGE"
    meta.instrument.filter = "P750L"
    meta.exposure.type = exp_type
    meta.exposure.nints = 1 if nints is None else nints
    meta.subarray.name = sub
    meta.subarray.xstart, meta.subarray.ystart = xstart, ystart
    meta.subarray.ysize, meta.subarray.xsize = shape
    meta.observation.date = "2024-01-01"
    meta.observation.time = "00:00:00"
    meta.target.ra, meta.target.dec = 80.0, -69.5
    meta.pointing.ra_v1, meta.pointing.dec_v1, meta.pointing.pa_v3 = 80.0, -69.5, 0.0
    meta.wcsinfo.ra_ref, meta.wcsinfo.dec_ref, meta.wcsinfo.roll_ref = 80.0, -69.5, 0.0
    meta.wcsinfo.v3yangle, meta.wcsinfo.vparity = 4.45, -1
    meta.wcsinfo.v2_ref, meta.wcsinfo.v3_ref = 0.0, 0.0
    meta.dither.x_offset, meta.dither.y_offset = 0.0, 0.0
    meta.bunit_data, meta.bunit_err = "MJy/sr", "MJy/sr"
    meta.photometry.pixelarea_arcsecsq = PIXEL_ARCSEC**2
    meta.photometry.pixelarea_steradians = PIXEL_ARCSEC**2 * (np.pi / 180.0 / 3600.0) ** 2
    return model


def _int_times(nints, start_mjd=60310.0, seconds=10.0):
    """An ``INT_TIMES`` table: back-to-back integrations of ``seconds`` each, the
    barycentric (TDB) times taken equal to the UTC ones."""
    names = ("int_start", "int_mid", "int_end")
    cols = [f"{n}_{scale}" for scale in ("MJD_UTC", "BJD_TDB") for n in names]
    table = np.zeros(nints, dtype=[("integration_number", "i4")] + [(c, "f8") for c in cols])
    table["integration_number"] = np.arange(1, nints + 1)
    day = seconds / 86400.0
    for k, n in enumerate(names):
        for scale in ("MJD_UTC", "BJD_TDB"):
            table[f"{n}_{scale}"] = start_mjd + day * (np.arange(nints) + 0.5 * k)
    return table


def miri_lrs_model(data_dir, *, slitless=False, nints=None, err=1e-3, filename=None):
    """
    MIRI LRS SlitModel cal file with the real instrument WCS and empty arrays.

    The WCS is assigned twice: the reference point (``v2_ref``, ``v3_ref``) is set to
    the V2/V3 position of the middle of the slit (the middle of the bounding box) as
    given by the distortion itself, so that the sky coordinates are self-consistent.

    Parameters
    ----------
    data_dir : str or Path
        The shared data folder (holding ``miri_lrs/``).
    slitless : bool
        ``MIR_LRS-SLITLESS`` (subarray SLITLESSPRISM, 416 x 72) instead of
        ``MIR_LRS-FIXEDSLIT`` (full frame, 1024 x 1032).
    nints : int or None
        Number of integrations: a 3-D stack (as ``calints`` files hold) if given.
    err : float
        Per-pixel error (MJy/sr), also the noise sigma of :func:`inject_trace`.
    filename : str, optional
        ``meta.filename``; default ``miri_lrs_{slit,slitless}_cal.fits``
        (``_calints`` with integrations).

    Returns
    -------
    stdatamodels.jwst.datamodels.SlitModel
        SCI NaN and DQ DO_NOT_USE outside the slit's wavelength range, 0 inside; ERR
        ``err``; variances ``err**2 / 3`` each; ``meta.cal_step.assign_wcs = 'COMPLETE'``.

    Raises
    ------
    FileNotFoundError
        If a reference file is missing.
    """
    from jwst.assign_wcs.assign_wcs import load_wcs
    from stdatamodels.jwst import datamodels
    from stdatamodels.jwst.datamodels import dqflags

    exp_type = "MIR_LRS-SLITLESS" if slitless else "MIR_LRS-FIXEDSLIT"
    lrs = Path(data_dir) / "miri_lrs"
    refs = {"distortion": lrs / MIRI_LRS_FILES["distortion"], "specwcs": lrs / MIRI_LRS_FILES[exp_type]}
    for path in refs.values():
        if not path.is_file():
            raise FileNotFoundError(f"MIRI LRS test file missing: {path}")
    refs = {k: str(v) for k, v in refs.items()}

    image = load_wcs(_image_model(exp_type, nints), refs)
    (x0, x1), (y0, y1) = image.meta.wcs.bounding_box.bounding_box(order="F")
    xc, yc = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    v2, v3 = image.meta.wcs.get_transform("detector", "v2v3")(xc, yc)[:2]
    image.meta.wcsinfo.v2_ref, image.meta.wcsinfo.v3_ref = float(v2), float(v3)
    image = load_wcs(image, refs)
    image.meta.cal_step.assign_wcs = "COMPLETE"

    # as calwebb_spec2 does for LRS: the image becomes a SlitModel
    model = datamodels.SlitModel(image)
    for attr in ("xstart", "ystart", "xsize", "ysize"):
        setattr(model, attr, getattr(image.meta.subarray, attr))
    shape = image.data.shape
    ny, nx = shape[-2:]
    y, x = np.mgrid[:ny, :nx].astype(np.float64)
    _, _, lam = model.meta.wcs(x, y)
    outside = np.broadcast_to(~np.isfinite(lam), shape)
    data = np.zeros(shape, dtype=np.float32)
    data[outside] = np.nan
    model.data = data
    model.dq = np.where(
        outside, dqflags.pixel["DO_NOT_USE"] | dqflags.pixel["NON_SCIENCE"], 0
    ).astype(np.uint32)
    model.err = np.where(outside, np.nan, err).astype(np.float32)
    for name in ("var_poisson", "var_rnoise", "var_flat"):
        setattr(model, name, np.where(outside, np.nan, err**2 / 3).astype(np.float32))
    if nints is not None:
        # calints files carry one row of integration times per integration
        model.meta.visit.tsovisit = True
        model.int_times = _int_times(nints)
    kind = "slitless" if slitless else "slit"
    model.meta.filename = filename or f"miri_lrs_{kind}_{'cal' if nints is None else 'calints'}.fits"
    return model


def trace_truth(wcs, x, y, *, alpha0=0.0, flux=None, background=0.05, nsub=5):
    """
    Noise-free LRS point-source image at pixels of a WCS's input frame.

    Each value is the mean of the Airy profile at ``nsub`` sub-positions spread over
    the pixel along detector x (one unit of the input frame: a native pixel, or an
    oversampled pixel of an ATM product), at the wavelength of the pixel centre.

    Parameters
    ----------
    wcs : gwcs.WCS
        LRS WCS (input frame ``detector`` or ``coordinates``).
    x, y : ndarray
        Pixel coordinates in the WCS's input frame.
    alpha0 : float
        Source position along the slit (arcsec).
    flux : callable or None
        Peak surface brightness (MJy/sr) as a function of wavelength (um); default
        ``10 * (lambda / 8)**-1``.
    background : float
        Constant background (MJy/sr).
    nsub : int
        Sub-positions per pixel along x.

    Returns
    -------
    ndarray
        Surface brightness (MJy/sr); NaN outside the bounding box.
    """
    to_ab = wcs.get_transform(wcs.available_frames[0], "alpha_beta")
    _, _, wave = wcs(x, y)
    prof = np.zeros(np.shape(x))
    for k in range(nsub):
        a, _, lam = to_ab(x + ((k + 0.5) / nsub - 0.5), y)
        prof += airy_pixel_integrated(np.abs(a - alpha0), lam)
    prof /= nsub
    peak = 10.0 * (np.asarray(wave) / 8.0) ** -1 if flux is None else flux(np.asarray(wave))
    return peak * prof + background


def inject_trace(model, *, alpha0=0.0, flux=None, background=0.05, nsub=5, seed=1, noise=True):
    """
    Add a pixel-integrated point-source trace (and noise) to an LRS model from
    :func:`miri_lrs_model`.

    Parameters
    ----------
    model : SlitModel
        Updated in place; with integrations, every integration gets the same source
        and its own noise.
    alpha0, flux, background, nsub
        As for :func:`trace_truth`.
    seed : int
        Noise seed.
    noise : bool
        Add Gaussian noise of ``model.err``.

    Returns
    -------
    SlitModel
        The same model.
    """
    shape = model.data.shape
    ny, nx = shape[-2:]
    y, x = np.mgrid[:ny, :nx].astype(np.float64)
    truth = trace_truth(model.meta.wcs, x, y, alpha0=alpha0, flux=flux, background=background, nsub=nsub)
    rng = np.random.default_rng(seed)
    data = np.broadcast_to(truth, shape) + noise * rng.normal(0.0, 1.0, shape) * np.asarray(model.err)
    data[~np.isfinite(np.asarray(model.data))] = np.nan
    model.data = data.astype(np.float32)
    return model
