"""Stand-ins for what an offline test or validation run lacks: CRDS and a cubepar file.

Not needed to run the step. ``atm_step.validation`` and the tests use these to run
jwst's ``pixel_replace`` and ``cube_build`` with no CRDS server and no CRDS cache:

- :func:`offline_crds`: answers stpipe's question "which CRDS context was used?"
  locally (jwst asks it after any step that used a reference file);
- :func:`write_cubepar`: a small MIRI MRS ``cubepar`` reference file, for
  ``cube_build``'s ``override_cubepar``.

Example, the documented chain run offline from Python::

    from jwst.cube_build import CubeBuildStep
    from atm_step.testing import offline_crds, write_cubepar

    cubepar = write_cubepar("cubepar.fits")
    with offline_crds():
        CubeBuildStep.call("x_atm_pixelreplacestep.fits", override_cubepar=cubepar,
                           save_results=True)
"""

import contextlib
import os

import numpy as np
from astropy.io import fits

from atm_step.atomic import atomic_write

__all__ = ["offline_crds", "write_cubepar"]


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
    return atomic_write(path, hdul.writeto, binary=True)


@contextlib.contextmanager
def offline_crds(context="jwst_0000.pmap"):
    """
    Answer stpipe's ``crds_client.get_context_used`` locally while inside the block.

    jwst's ``finalize_result`` asks CRDS which context was used whenever a step used a
    reference file (cube_build with ``override_cubepar``); with no CRDS cache that
    ends the process. Also sets ``STPIPE_DISABLE_CRDS_STEPPARS=True`` if unset.

    Parameters
    ----------
    context : str
        The context name reported.
    """
    from stpipe import crds_client

    os.environ.setdefault("STPIPE_DISABLE_CRDS_STEPPARS", "True")
    saved = {name: getattr(crds_client, name, None) for name in ("get_context_used", "get_svn_version")}
    crds_client.get_context_used = lambda observatory: context
    crds_client.get_svn_version = lambda: "local"
    try:
        yield context
    finally:
        for name, fn in saved.items():
            if fn is None:
                with contextlib.suppress(AttributeError):
                    delattr(crds_client, name)
            else:
                setattr(crds_client, name, fn)
