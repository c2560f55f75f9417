"""Reusable builders for tests, benchmarks and batch-runner tests.

Everything here reads the real files in the shared data folder (see
``/work/shared/data/README.md``) and writes derived products to a caller-given
directory; the shared files are never modified.
"""

import logging

import numpy as np
from astropy.io import fits

# The MIRI MRS builders live in the library (validation code must not import tests/).
from atm_step.testing import write_cubepar
from atm_step.validation.miri import (
    MIRI_MRS_FILES,
    airy_pixel_integrated,
    inject_point_source,
    miri_mrs_model,
    miri_mrs_reference_files,
)

__all__ = [
    "MIRI_MRS_FILES",
    "miri_mrs_model",
    "miri_mrs_reference_files",
    "inject_point_source",
    "airy_pixel_integrated",
    "write_cubepar",
    "assert_same_layout",
    "world_coordinate_differences",
]

log = logging.getLogger(__name__)

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
