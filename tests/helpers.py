"""Reusable builders for tests, benchmarks and batch-runner tests.

Everything here reads the real files in the shared data folder (see
``/work/shared/data/README.md``) and writes derived products to a caller-given
directory; the shared files are never modified.
"""

import logging
import time

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


def model_snapshot(model):
    """
    Everything a step must leave unchanged in its input model: a copy of every array
    and metadata value (flattened), and the WCS of the model and of every slit, as
    frames, bounding box, and the coordinates of a pixel grid in every frame.

    Compare two snapshots with :func:`assert_same_snapshot`.
    """
    flat = {}
    for key, val in model.to_flat_dict(include_arrays=True).items():
        if ".wcs" in key or key.endswith("wcs"):
            continue
        flat[key] = np.array(val, copy=True) if isinstance(val, np.ndarray) else repr(val)
    units = list(model.slits) if hasattr(model, "slits") else [model]
    wcs_state = []
    for unit in units:
        wcs = unit.meta.wcs
        if wcs is None:
            wcs_state.append(None)
            continue
        ny, nx = unit.data.shape[-2:]
        y, x = np.mgrid[: ny : max(ny // 40, 1), : nx : max(nx // 40, 1)].astype(np.float64)
        frames = wcs.available_frames
        coords = [
            [np.array(c, dtype=np.float64) for c in wcs.get_transform(frames[0], f)(x, y)]
            for f in frames[1:]
        ]
        wcs_state.append((frames, repr(wcs.bounding_box), coords, id(wcs)))
    return {"flat": flat, "wcs": wcs_state}


def assert_same_snapshot(before, after):
    """Assert two :func:`model_snapshot` results are identical (NaN equal to NaN)."""
    assert sorted(before["flat"]) == sorted(after["flat"])
    for key, val in before["flat"].items():
        if isinstance(val, np.ndarray):
            assert val.dtype == after["flat"][key].dtype, key
            assert np.array_equal(val, after["flat"][key], equal_nan=val.dtype.kind == "f"), key
        else:
            assert val == after["flat"][key], key
    assert len(before["wcs"]) == len(after["wcs"])
    for wa, wb in zip(before["wcs"], after["wcs"], strict=True):
        if wa is None:
            assert wb is None
            continue
        assert wa[0] == wb[0] and wa[1] == wb[1] and wa[3] == wb[3]
        for ca, cb in zip(wa[2], wb[2], strict=True):
            for u, v in zip(ca, cb, strict=True):
                assert np.array_equal(u, v, equal_nan=True)


def wait_for(predicate, timeout, what):
    """Poll ``predicate`` every 0.1 s; AssertionError naming ``what`` after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
