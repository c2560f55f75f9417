"""Reusable builders for tests, benchmarks and batch-runner tests.

Everything here reads the real files in the shared data folder (see
``/work/shared/data/README.md``) and writes derived products to a caller-given
directory; the shared files are never modified.
"""

import logging
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy.special import j1

__all__ = [
    "MIRI_MRS_FILES",
    "miri_mrs_model",
    "miri_mrs_reference_files",
    "inject_point_source",
    "airy_pixel_integrated",
    "write_cubepar",
]

log = logging.getLogger(__name__)

#: Files of ``miri_mrs/`` used to build a MIRI MRS model, by role.
MIRI_MRS_FILES = {
    "distortion": "jwst_miri_mrs34C_distortion_flt9.asdf",
    "specwcs": "jwst_miri_mrs34C_specwcs_flt9.asdf",
    "wavelengthrange": "jwst_miri_mrs_wavelengthrange_flt9.asdf",
    "regions": "jwst_miri_regions_0017.asdf",
    "template": "template_34C.fits.gz",
}


def miri_mrs_reference_files(data_dir, workdir):
    """
    Reference-file map for ``load_wcs`` built from ``<data_dir>/miri_mrs``.

    The ground-test regions file holds one slice-map plane; jwst 3.0 expects 9
    throughput planes, so a copy with the plane repeated 9 times is written to
    ``workdir`` (once; reused when present).

    Parameters
    ----------
    data_dir : str or Path
        The shared data folder (holding ``miri_mrs/``).
    workdir : str or Path
        Writable folder for the derived regions file.

    Returns
    -------
    dict of str to str
        Reftype to path: distortion, specwcs, wavelengthrange, regions.

    Raises
    ------
    FileNotFoundError
        If one of the files is missing.
    """
    from stdatamodels.jwst.datamodels import RegionsModel

    mrs = Path(data_dir) / "miri_mrs"
    for name in MIRI_MRS_FILES.values():
        if not (mrs / name).is_file():
            raise FileNotFoundError(f"MIRI MRS test file missing: {mrs / name}")
    regions9 = Path(workdir) / "miri_regions_9planes.asdf"
    if not regions9.is_file():
        with RegionsModel(str(mrs / MIRI_MRS_FILES["regions"])) as ref:
            plane = np.asarray(ref.regions)
            out = ref.copy()
        out.regions = np.repeat(plane[None, :, :], 9, axis=0)
        out.save(str(regions9))
        out.close()
    return {
        "distortion": str(mrs / MIRI_MRS_FILES["distortion"]),
        "specwcs": str(mrs / MIRI_MRS_FILES["specwcs"]),
        "wavelengthrange": str(mrs / MIRI_MRS_FILES["wavelengthrange"]),
        "regions": str(regions9),
    }


def miri_mrs_model(data_dir, workdir):
    """
    MIRI MRS channel 3+4 LONG IFUImageModel with a real instrument WCS.

    The MIRISim template's own ASDF extension (unreadable by stdatamodels 6) is
    dropped and a WCS is assigned from the flight distortion, specwcs and
    wavelengthrange files and the ground regions map with
    ``jwst.assign_wcs.assign_wcs.load_wcs``. Arrays: SCI zeros, ERR 1e-3, DQ 0,
    variances 1e-6 (MJy/sr units).

    Parameters
    ----------
    data_dir, workdir : str or Path
        As for :func:`miri_mrs_reference_files`.

    Returns
    -------
    stdatamodels.jwst.datamodels.IFUImageModel
        Shape (1024, 1032); ``meta.cal_step.assign_wcs = 'COMPLETE'``.
    """
    from jwst.assign_wcs.assign_wcs import load_wcs
    from stdatamodels.jwst import datamodels

    refs = miri_mrs_reference_files(data_dir, workdir)
    template = Path(data_dir) / "miri_mrs" / MIRI_MRS_FILES["template"]
    with fits.open(template) as hdul:
        kept = fits.HDUList([hdu.copy() for hdu in hdul if hdu.name != "ASDF"])
    model = datamodels.IFUImageModel(kept)
    shape = model.data.shape
    model.data = np.zeros(shape, dtype=np.float32)
    model.err = np.full(shape, 1e-3, dtype=np.float32)
    model.dq = np.zeros(shape, dtype=np.uint32)
    for name in ("var_poisson", "var_rnoise", "var_flat"):
        setattr(model, name, np.full(shape, 1e-6 / 3, dtype=np.float32))
    model = load_wcs(model, refs)
    model.meta.cal_step.assign_wcs = "COMPLETE"
    model.meta.filename = "miri_mrs_34long_cal.fits"
    return model


def airy_pixel_integrated(r_arcsec, wave_um, diameter_m=6.5):
    """
    Airy profile (peak 1) of a circular aperture at ``r`` arcsec and ``wave`` um.

    Parameters
    ----------
    r_arcsec, wave_um : ndarray
        Radius from the source and wavelength, broadcast together.
    diameter_m : float
        Aperture diameter in metres.

    Returns
    -------
    ndarray
        ``(2 J1(x) / x)**2`` with ``x = pi D r / lambda``.
    """
    x = np.pi * diameter_m * np.radians(np.asarray(r_arcsec) / 3600.0) / (wave_um * 1e-6)
    x = np.where(np.abs(x) < 1e-8, 1e-8, x)
    return (2.0 * j1(x) / x) ** 2


def inject_point_source(
    model, *, alpha0=0.0, beta0=0.0, flux=None, background=0.05, nsub=5, seed=1
):
    """
    Add an Airy point source, integrated over each pixel along the slice, to a MIRI MRS model.

    The source sits at slice coordinates ``(alpha0, beta0)`` arcsec. Each pixel's
    value is the mean of the profile at ``nsub`` sub-positions spread over the pixel
    along detector x (the along-slice direction), mapped through the model's own
    ``detector -> alpha_beta`` transform; across the slice the profile is evaluated
    at the slice centre ``beta``. A constant background and Gaussian noise of
    ``model.err`` are added. Pixels outside slices become NaN with DO_NOT_USE.

    Parameters
    ----------
    model : IFUImageModel
        MIRI MRS model with a WCS; updated in place.
    alpha0, beta0 : float
        Source position in the alpha-beta frame (arcsec).
    flux : callable or None
        Peak surface brightness (MJy/sr) as a function of wavelength (um); default a
        gentle slope ``10 * (lambda / 20)**-1``.
    background : float
        Constant background (MJy/sr).
    nsub : int
        Sub-positions per pixel along the slice.
    seed : int
        Seed of the noise generator.

    Returns
    -------
    IFUImageModel
        The same model.
    """
    from stdatamodels.jwst.datamodels import dqflags

    ny, nx = model.data.shape
    det2ab = model.meta.wcs.get_transform("detector", "alpha_beta")
    y, x = np.mgrid[:ny, :nx].astype(np.float64)
    prof = np.zeros((ny, nx))
    wave = None
    for k in range(nsub):
        dx = (k + 0.5) / nsub - 0.5
        alpha, beta, lam = det2ab(x + dx, y)
        if wave is None:
            wave = lam
        r = np.hypot(alpha - alpha0, beta - beta0)
        prof += airy_pixel_integrated(r, lam)
    prof /= nsub
    if flux is None:
        peak = 10.0 * (wave / 20.0) ** -1
    else:
        peak = flux(wave)
    rng = np.random.default_rng(seed)
    data = peak * prof + background + rng.normal(0.0, 1.0, (ny, nx)) * np.asarray(model.err)
    bad = ~np.isfinite(data)
    data[bad] = np.nan
    model.data = data.astype(np.float32)
    dq = np.asarray(model.dq).copy()
    dq[bad] |= dqflags.pixel["DO_NOT_USE"] | dqflags.pixel["NON_SCIENCE"]
    model.dq = dq
    for name in ("err", "var_poisson", "var_rnoise", "var_flat"):
        arr = np.asarray(getattr(model, name)).copy()
        arr[bad] = np.nan
        setattr(model, name, arr)
    return model


def write_cubepar(path):
    """
    Write a small MIRI MRS ``cubepar`` reference file for offline ``cube_build``.

    Layout as in jwst's own cube_build tests (CUBEPAR, CUBEPAR_MSM, CUBEPAR_EMSM,
    MULTICHANNEL_MSM, MULTICHANNEL_EMSM), plus a MULTICHANNEL_DRIZ table (column
    WAVELENGTH) so that the default ``weighting='drizzle'`` works too. Spaxel sizes and
    wavelength steps are the usual ones (0.2 arcsec / 3 nm in channel 3, 0.35 arcsec /
    6 nm in channel 4).

    Parameters
    ----------
    path : str or Path
        Output FITS file.

    Returns
    -------
    str
        The path written.
    """
    channel = np.repeat(["1", "2", "3", "4"], 3)
    band = np.tile(["SHORT", "MEDIUM", "LONG"], 4)
    spsize = np.repeat([0.13, 0.17, 0.2, 0.35], 3)
    wsamp = np.repeat([0.001, 0.002, 0.003, 0.006], 3)
    wmin = np.array([4.89, 5.65, 6.52, 7.49, 8.65, 10.0, 11.53, 13.37, 15.44, 17.66, 20.54, 23.95])
    wmax = np.array([5.75, 6.64, 7.66, 8.78, 10.14, 11.7, 13.48, 15.63, 18.05, 20.92, 24.4, 28.8])
    roispat = np.repeat([0.1, 0.15, 0.2, 0.4], 3)
    softrad = np.full(12, 0.01)
    power = np.full(12, 2)

    def table(name, cols):
        hdu = fits.BinTableHDU.from_columns(cols)
        hdu.header["EXTNAME"] = name
        return hdu

    ch = fits.Column(name="CHANNEL", format="1A", array=channel)
    bd = fits.Column(name="BAND", format="6A", array=band)
    roi_s = fits.Column(name="ROISPATIAL", format="E", array=roispat, unit="arcsec")
    roi_w = fits.Column(name="ROISPECTRAL", format="E", array=wsamp, unit="micron")
    primary = fits.PrimaryHDU()
    for key, value in (
        ("REFTYPE", "CUBEPAR"),
        ("INSTRUME", "MIRI"),
        ("MODELNAM", "FM"),
        ("DETECTOR", "N/A"),
        ("EXP_TYPE", "MIR_MRS"),
    ):
        primary.header[key] = value
    wave = np.array([5.0, 10.0, 15.0, 20.0, 25.0, 29.0])
    mroi_s = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.5])
    mroi_w = np.array([0.001, 0.002, 0.003, 0.004, 0.005, 0.006])
    mwave = fits.Column(name="WAVELENGTH", format="D", array=wave, unit="micron")
    hdul = fits.HDUList(
        [
            primary,
            table(
                "CUBEPAR",
                [
                    ch,
                    bd,
                    fits.Column(name="WAVEMIN", format="E", array=wmin, unit="micron"),
                    fits.Column(name="WAVEMAX", format="E", array=wmax, unit="micron"),
                    fits.Column(name="SPAXELSIZE", format="E", array=spsize, unit="arcsec"),
                    fits.Column(name="SPECTRALSTEP", format="D", array=wsamp, unit="micron"),
                ],
            ),
            table(
                "CUBEPAR_MSM",
                [
                    ch,
                    bd,
                    roi_s,
                    roi_w,
                    fits.Column(name="POWER", format="I", array=power),
                    fits.Column(name="SOFTRAD", format="E", array=softrad, unit="arcsec"),
                ],
            ),
            table(
                "MULTICHANNEL_MSM",
                [
                    mwave,
                    fits.Column(name="ROISPATIAL", format="E", array=mroi_s, unit="arcsec"),
                    fits.Column(name="ROISPECTRAL", format="E", array=mroi_w, unit="micron"),
                    fits.Column(name="POWER", format="I", array=np.full(6, 2)),
                    fits.Column(name="SOFTRAD", format="E", array=np.full(6, 0.01)),
                ],
            ),
            table(
                "CUBEPAR_EMSM",
                [
                    ch,
                    bd,
                    roi_s,
                    roi_w,
                    fits.Column(name="SCALERAD", format="E", array=roispat / 2, unit="arcsec"),
                ],
            ),
            table(
                "MULTICHANNEL_EMSM",
                [
                    mwave,
                    fits.Column(name="ROISPATIAL", format="E", array=mroi_s, unit="arcsec"),
                    fits.Column(name="ROISPECTRAL", format="E", array=mroi_w, unit="micron"),
                    fits.Column(name="SCALERAD", format="E", array=np.full(6, 0.01)),
                ],
            ),
            table(
                "MULTICHANNEL_DRIZ",
                [mwave],
            ),
        ]
    )
    hdul.writeto(path, overwrite=True)
    return str(path)


#: Header keywords allowed to differ between two runs (dates, names, versions).
VOLATILE_KEYWORDS = {"DATE", "FILENAME", "CAL_VCS", "CAL_VER", "CRDS_CTX", "CRDS_VER"}


def assert_same_layout(file_theirs, file_ours):
    """
    Assert two saved products carry the same extensions, keywords and shapes.

    Extension names and order, header keyword sets of every HDU (minus
    :data:`VOLATILE_KEYWORDS`), header values of every HDU but ASDF (whose size
    follows the step's own log), and array shapes must agree.

    Parameters
    ----------
    file_theirs, file_ours : str or Path
        FITS files written by jwst's step and by atm-step.
    """
    with fits.open(file_theirs) as a, fits.open(file_ours) as b:
        assert [h.name for h in a] == [h.name for h in b]
        for ha, hb in zip(a, b, strict=True):
            keys_a = {k for k in ha.header if k} - VOLATILE_KEYWORDS
            keys_b = {k for k in hb.header if k} - VOLATILE_KEYWORDS
            assert keys_a == keys_b, f"{ha.name}: {sorted(keys_a ^ keys_b)}"
            if ha.name == "ASDF":
                continue
            for key in keys_a - {"HISTORY", "COMMENT"}:
                va, vb = ha.header[key], hb.header[key]
                if isinstance(va, float):
                    assert abs(va - vb) <= 1e-12 * max(abs(va), 1e-300), (ha.name, key, va, vb)
                else:
                    assert va == vb, (ha.name, key, va, vb)
            if ha.data is not None:
                assert np.shape(ha.data) == np.shape(hb.data), ha.name


def world_coordinate_differences(model_theirs, model_ours):
    """
    World coordinates of every pixel through both models' WCS.

    Returns
    -------
    dict
        ``inside`` (pixels with finite wavelength in ``model_theirs``),
        ``same_footprint`` (bool), and max |difference| of ``ra``, ``dec`` (deg) and
        ``wave`` (um) over ``inside``.
    """
    ny, nx = model_theirs.data.shape[-2:]
    y, x = np.mgrid[:ny, :nx].astype(np.float64)
    ra_a, dec_a, lam_a = model_theirs.meta.wcs(x, y)
    ra_b, dec_b, lam_b = model_ours.meta.wcs(x, y)
    inside = np.isfinite(lam_a)
    dra = np.abs(ra_a - ra_b)
    dra = np.minimum(dra, 360.0 - dra)
    return {
        "inside": inside,
        "same_footprint": bool(np.array_equal(np.isfinite(lam_b), inside)),
        "ra": float(np.max(dra[inside])),
        "dec": float(np.max(np.abs(dec_a - dec_b)[inside])),
        "wave": float(np.max(np.abs(lam_a - lam_b)[inside])),
    }
