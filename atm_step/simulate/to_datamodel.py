"""Turn a simulated `Scene` into a NIRSpec IFU ``IFUImageModel`` with a mocked WCS.

No real NIRSpec IFU WCS (nor its reference files) is available offline, so this
module builds a *mock* WCS with the same structure as the coordinate-based WCS that
jwst 3.0's ``assign_wcs`` writes for NIRSpec IFU:

``coordinates --(Identity "coord2det")--> detector --(RegionsSelector "det2slicer")-->
slicer --(mock sky projection)--> world``

What the mock reproduces (and what atm-step's NIRSpec IFU adapter and jwst's own
``adaptive_trace_model`` step read from it):

- the frame names and the coordinate-based layout, so that
  `jwst.assign_wcs.nirspec.nrs_wcs_set_input` / ``nrs_ifu_wcs`` build one WCS per
  slice, with the per-slice bounding box taken from the selector;
- per slice, the along-slice ``slicer`` coordinate ``y_slicer = -alpha`` of the
  scene's analytic geometry (linear in detector row, with the scene's trace tilt
  tabulated per column) and the wavelength in metres (tabulated per column), so that
  the WCS agrees with ``scene.alpha`` / ``scene.wavelength`` at every native pixel and
  continues them exactly to fractional rows (oversampled positions);
- the slice map in the ``regions`` extension (1..30, 0 outside), DQ with
  DO_NOT_USE | NON_SCIENCE where the scene is NaN, and ERR / variances from
  ``scene.err``; the model saves to a ``_cal``-like FITS file that ``strun atm``
  reads back (all transforms are standard, ASDF-serialisable astropy models).

What it does not reproduce:

- the real NIRSpec optics (GWA, slicer, MSA, OTE, FPA and camera distortion) and
  the ``sca``, ``gwa``, ``slit_frame``, ``msa_frame``, ``oteip`` and ``v2v3`` frames:
  the ``slicer -> world`` step is a plain linear map (``ra = ra0 + beta``,
  ``dec = dec0 + alpha`` in arcsec, no rotation, no cos(dec)), so sky positions are
  only indicative;
- the inverse transforms (``world -> detector``), so steps that need them
  (``cube_build``, ``resample_spec``, ``extract_1d``) are not supported on these
  models;
- header keywords a real cal file carries beyond those set here (pointing, dither,
  photometric conversion, reference-file names).
"""

import logging

import numpy as np
from astropy import coordinates as coord
from astropy import units as u
from astropy.modeling import bind_bounding_box
from astropy.modeling.models import Identity, Mapping, Scale, Shift, Tabular1D

__all__ = ["scene_to_ifu_model", "mock_nirspec_ifu_wcs"]

log = logging.getLogger(__name__)


def _slice_transform(geo, region, x_grid, tilt, wave_m, beta):
    """(x, y) -> (x_slicer, y_slicer, lam) for one slice; y_slicer = -alpha (arcsec)."""
    first = float(np.asarray(geo.first_rows)[region - 1])
    rh = float(geo.row_height)
    # alpha = alpha_min + (y - first + 0.5 - tilt(x)) * rh  ->  y_slicer = -alpha
    offset = -(geo.alpha_min + (0.5 - first) * rh)
    table = dict(bounds_error=False, fill_value=np.nan)
    tilt_tab = Tabular1D(points=x_grid, lookup_table=tilt * rh, **table)
    wave_tab = Tabular1D(points=x_grid, lookup_table=wave_m, **table)
    y_slicer = (
        (Mapping((1,), n_inputs=2) | Scale(-rh) | Shift(offset))
        + (Mapping((0,), n_inputs=2) | tilt_tab)
    )
    x_slicer = Mapping((0,), n_inputs=2) | Scale(0.0) | Shift(float(beta))
    lam = Mapping((0,), n_inputs=2) | wave_tab
    transform = Mapping((0, 1, 0, 1, 0, 1)) | (x_slicer & y_slicer & lam)
    transform.inputs = ("x", "y")
    transform.outputs = ("x_slice", "y_slice", "lam")
    return transform


def mock_nirspec_ifu_wcs(scene, ra0=150.0, dec0=2.0):
    """
    Mock coordinate-based NIRSpec IFU WCS for a scene (see the module docstring).

    Parameters
    ----------
    scene : atm_step.simulate.Scene
        Scene whose ``geometry``, ``regions`` and ``column_wavelength`` define the WCS.
    ra0, dec0 : float
        Sky position (deg) of ``alpha = beta = 0``.

    Returns
    -------
    gwcs.WCS
        Frames ``coordinates``, ``detector``, ``slicer``, ``world``; world outputs
        (RA deg, Dec deg, wavelength um).
    """
    import gwcs
    from gwcs import coordinate_frames as cf
    from gwcs import selector

    geo = scene.geometry
    regions = np.asarray(scene.regions, dtype=np.int32)
    nx = regions.shape[1]
    x_grid = np.arange(nx, dtype=np.float64)
    tilt = np.asarray(geo.tilt(x_grid), dtype=np.float64)
    wave_m = np.asarray(scene.column_wavelength, dtype=np.float64) * 1e-6
    betas = np.asarray(geo.beta, dtype=np.float64)

    transforms = {}
    for rid in np.unique(regions[regions > 0]):
        t = _slice_transform(geo, int(rid), x_grid, tilt, wave_m, betas[int(rid) - 1])
        yy, xx = np.nonzero(regions == rid)
        bbox = ((xx.min() - 0.5, xx.max() + 0.5), (yy.min() - 0.5, yy.max() + 0.5))
        bind_bounding_box(t, tuple(tuple(float(v) for v in b) for b in bbox), order="F")
        transforms[int(rid)] = t
    det2slicer = selector.RegionsSelector(
        ("x", "y"),
        ("x_slice", "y_slice", "lam"),
        label_mapper=selector.LabelMapperArray(regions),
        selector=transforms,
        name="det2slicer",
    )
    det2slicer.inputs = ("x", "y")
    det2slicer.outputs = ("x_slice", "y_slice", "lam")

    coord2det = Identity(2)
    coord2det.name = "coord2det"
    coord2det.inputs = ("x", "y")
    coord2det.outputs = ("x", "y")

    deg = 1.0 / 3600.0
    slicer2world = (
        (Scale(deg) | Shift(ra0)) & (Scale(-deg) | Shift(dec0)) & Scale(1e6)
    ) | Mapping((0, 1, 2))
    slicer2world.name = "slicer2world"

    spec = cf.SpectralFrame(
        name="spectral", axes_order=(2,), unit=(u.micron,), axes_names=("wavelength",)
    )
    slicer_spatial = cf.Frame2D(
        name="slicer_spatial", axes_order=(0, 1), unit=("", ""), axes_names=("x_slicer", "y_slicer")
    )
    sky = cf.CelestialFrame(name="sky", axes_order=(0, 1), reference_frame=coord.ICRS())
    pipeline = [
        (cf.Frame2D(name="coordinates", axes_order=(0, 1)), coord2det),
        (cf.Frame2D(name="detector", axes_order=(0, 1)), det2slicer),
        (cf.CompositeFrame([slicer_spatial, spec], name="slicer"), slicer2world),
        (cf.CompositeFrame([sky, spec], name="world"), None),
    ]
    return gwcs.WCS(pipeline)


def scene_to_ifu_model(
    scene,
    *,
    detector="NRS1",
    grating="G140H",
    filtername="F100LP",
    filename="atm_sim_nrs1_cal.fits",
    ra0=150.0,
    dec0=2.0,
):
    """
    Build a NIRSpec IFU ``IFUImageModel`` (a ``_cal``-like product) from a scene.

    Parameters
    ----------
    scene : atm_step.simulate.Scene
        Simulated image (MJy/sr) with ``flux``, ``err``, ``regions``, ``geometry`` and
        ``column_wavelength``.
    detector, grating, filtername : str
        Instrument keywords (they select the fit preset, e.g. column order by detector).
    filename : str
        ``meta.filename`` of the model.
    ra0, dec0 : float
        Sky position (deg) of the mock field centre.

    Returns
    -------
    stdatamodels.jwst.datamodels.IFUImageModel
        SCI/ERR/DQ/VAR_POISSON/VAR_RNOISE/VAR_FLAT/REGIONS, the mock WCS, EXP_TYPE
        NRS_IFU, BUNIT MJy/sr, ``S_WCS = 'COMPLETE'``. Variances split ``err**2``
        equally between Poisson and read noise; VAR_FLAT is 0.

    Notes
    -----
    What the mock WCS does and does not reproduce is listed in the module docstring.
    """
    from stdatamodels.jwst import datamodels
    from stdatamodels.jwst.datamodels import dqflags

    flux = np.asarray(scene.flux, dtype=np.float32)
    err = np.asarray(scene.err, dtype=np.float32)
    bad = ~np.isfinite(flux)
    dq = np.zeros(flux.shape, dtype=np.uint32)
    dq[bad] = dqflags.pixel["DO_NOT_USE"] | dqflags.pixel["NON_SCIENCE"]
    err = np.where(bad, np.nan, err).astype(np.float32)
    var = (0.5 * err.astype(np.float64) ** 2).astype(np.float32)
    model = datamodels.IFUImageModel(
        data=flux,
        err=err,
        dq=dq,
        var_poisson=var,
        var_rnoise=var.copy(),
        var_flat=np.where(bad, np.nan, 0.0).astype(np.float32),
    )
    model.regions = np.asarray(scene.regions, dtype=np.int32)
    meta = model.meta
    meta.filename = filename
    meta.telescope = "JWST"
    meta.instrument.name = "NIRSPEC"
    meta.instrument.detector = detector
    meta.instrument.grating = grating
    meta.instrument.filter = filtername
    meta.exposure.type = "NRS_IFU"
    meta.observation.date = "2025-01-01"
    meta.observation.time = "00:00:00"
    meta.subarray.name = "FULL"
    meta.bunit_data = "MJy/sr"
    meta.bunit_err = "MJy/sr"
    pixel_arcsec = float(scene.geometry.row_height)
    meta.photometry.pixelarea_arcsecsq = pixel_arcsec**2
    meta.photometry.pixelarea_steradians = pixel_arcsec**2 * (np.pi / 180 / 3600) ** 2
    meta.wcsinfo.dispersion_direction = 1
    meta.wcs = mock_nirspec_ifu_wcs(scene, ra0=ra0, dec0=dec0)
    meta.cal_step.assign_wcs = "COMPLETE"
    n_slices = len(np.unique(scene.regions[scene.regions > 0]))
    log.info("Mock NIRSpec IFU model %s: %s, %d slices", filename, flux.shape, n_slices)
    return model
