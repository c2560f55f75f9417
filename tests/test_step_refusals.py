"""Inputs atm-step refuses: each returns the model with S_TRCMOD = 'FAILED' (SKIPPED
under jwst 2.0, whose schema has no FAILED), a clear
error naming the file and the reason, and the input file unchanged.

jwst 3.0's own step marks unsupported model types FAILED the same way; for a model
without a WCS it fails with an AttributeError, and for a TSO cube with oversample > 1
it raises ValueError. atm-step refuses all three the same way (see docs/modes.md).
"""

import hashlib
import logging
import warnings

import numpy as np
import pytest
from stdatamodels.jwst import datamodels

from atm_step import AdaptiveTraceModelStep


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused_status():
    """S_TRCMOD for refused input: FAILED with jwst 3.0's schemas; SKIPPED where the
    schema has no FAILED (jwst 2.0, stdatamodels 5, which warns and drops the value)."""
    node = datamodels.ImageModel((2, 2)).meta.cal_step
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        node.adaptive_trace_model = "FAILED"
    return "FAILED" if node.adaptive_trace_model == "FAILED" else "SKIPPED"


REFUSED = _refused_status()


def _run(path, caplog, **kwargs):
    before = _digest(path)
    with caplog.at_level(logging.INFO, logger="atm_step"):
        result = AdaptiveTraceModelStep.call(str(path), **kwargs)
    assert _digest(path) == before, f"{path} was modified"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return result, errors


def _saved_as(model, path, instrument, detector, exp_type):
    """``model`` saved to ``path`` with the instrument, detector and exposure type given."""
    model.meta.instrument.name = instrument
    model.meta.instrument.detector = detector
    model.meta.exposure.type = exp_type
    model.save(str(path))
    return path


def test_imaging_model_is_refused(tmp_path, caplog):
    model = datamodels.ImageModel(np.ones((20, 30), dtype=np.float32))
    path = _saved_as(model, tmp_path / "nircam_cal.fits", "NIRCAM", "NRCA1", "NRC_IMAGE")
    result, errors = _run(path, caplog, oversample=2)
    assert result.meta.cal_step.adaptive_trace_model == REFUSED
    assert result.data.shape == (20, 30)
    np.testing.assert_array_equal(result.data, 1.0)
    assert any("nircam_cal.fits" in e and "ImageModel" in e for e in errors), errors


def test_model_without_wcs_is_refused(mos_files, tmp_path, caplog):
    model = datamodels.open(str(mos_files[0]))
    model.meta.wcs = None
    path = tmp_path / "mos_nowcs_cal.fits"
    model.save(str(path))
    result, errors = _run(path, caplog, oversample=2)
    assert result.meta.cal_step.adaptive_trace_model == REFUSED
    assert result.data.shape == model.data.shape
    assert not result.hasattr("trace_model")
    assert any("mos_nowcs_cal.fits" in e and "no WCS" in e for e in errors), errors


@pytest.fixture
def tso_file(mos_files, tmp_path):
    """A 3-integration NIRSpec BOTS SlitModel built from a MOS cutout (the WCS is 2-D):
    the integrations are the cutout times 0.9, 1 and 1.2, so their per-pixel median is
    the cutout itself."""
    model = datamodels.open(str(mos_files[0]))
    cube = datamodels.SlitModel()
    cube.update(model)
    cube.meta.wcs = model.meta.wcs
    scale = np.array([0.9, 1.0, 1.2], dtype=np.float32)[:, None, None]
    for name in ("data", "err", "var_poisson", "var_rnoise", "var_flat"):
        setattr(cube, name, getattr(model, name)[None] * scale)
    cube.dq = np.repeat(model.dq[None], 3, axis=0)
    cube.meta.exposure.type = "NRS_BRIGHTOBJ"
    path = tmp_path / "tso_calints.fits"
    cube.save(str(path))
    return path


def test_tso_cube_with_oversampling_is_refused(tso_file, caplog):
    result, errors = _run(tso_file, caplog, oversample=2)
    assert result.meta.cal_step.adaptive_trace_model == REFUSED
    assert result.data.shape == (3, 25, 341)
    assert any("tso_calints.fits" in e and "TSO" in e for e in errors), errors


def test_tso_cube_without_oversampling_gets_a_trace_model(tso_file, mos_files, caplog):
    result, errors = _run(tso_file, caplog, oversample=1, fit_threshold=0, slope_limit=0)
    assert not errors
    assert result.meta.cal_step.adaptive_trace_model == "COMPLETE"
    assert result.data.shape == (3, 25, 341)
    assert result.trace_model.shape == (25, 341)
    assert np.isfinite(result.trace_model).sum() > 1000
    # jwst's semantics: the profile is fitted to the median image, here the cutout
    single = AdaptiveTraceModelStep.call(str(mos_files[0]), oversample=1, fit_threshold=0,
                                         slope_limit=0)  # fmt: skip
    np.testing.assert_array_equal(result.trace_model, single.trace_model)


def test_miri_slit_model_other_than_lrs_is_refused(tmp_path, caplog):
    model = datamodels.SlitModel(np.ones((20, 30), dtype=np.float32))
    path = _saved_as(model, tmp_path / "miri_wfss_cal.fits", "MIRI", "MIRIMAGE", "MIR_WFSS")
    result, errors = _run(path, caplog, oversample=2)
    assert result.meta.cal_step.adaptive_trace_model == REFUSED
    np.testing.assert_array_equal(result.data, 1.0)
    assert any("miri_wfss_cal.fits" in e and "MIR_WFSS" in e for e in errors), errors


def test_oversample_below_one_raises(mos_files):
    with pytest.raises(ValueError, match=r"oversample=0.5 is not allowed: it must be a finite "
                                         r"number in \[1, 10\]"):
        AdaptiveTraceModelStep.call(str(mos_files[0]), oversample=0.5)


@pytest.mark.parametrize("array", ["dq", "err", "var_poisson"])
def test_array_of_another_shape_than_sci_is_refused(mos_files, tmp_path, caplog, array):
    """A DQ, ERR or VAR_* array whose shape is not SCI's: refused with the array named,
    not an IndexError from inside NumPy (DQ) nor an output silently without the array
    (ERR, VAR_*)."""
    model = datamodels.open(str(mos_files[0]))
    ny, nx = model.data.shape
    setattr(model, array, np.ones((ny, nx - 1), dtype=getattr(model, array).dtype))
    path = tmp_path / f"mos_bad_{array}_cal.fits"
    model.save(str(path))
    result, errors = _run(path, caplog, oversample=3)
    assert result.meta.cal_step.adaptive_trace_model == REFUSED
    assert result.data.shape == (ny, nx)
    assert any(path.name in e and f"{array.upper()} array has shape ({ny}, {nx - 1})" in e
               and f"SCI has ({ny}, {nx})" in e for e in errors), errors


def test_slit_model_with_a_miri_detector_is_refused_naming_the_file(mos_files, tmp_path,
                                                                     caplog):
    """A NIRSpec slit WCS under a MIRI LRS header: the LRS adapter finds no alpha_beta
    frame. The error names the file and the slit, and the model is FAILED (it used to
    escape as a ValueError naming only the slit)."""
    model = datamodels.open(str(mos_files[0]))
    path = _saved_as(model, tmp_path / "mos_as_lrs_cal.fits", "MIRI", "MIRIMAGE",
                     "MIR_LRS-FIXEDSLIT")
    result, errors = _run(path, caplog, oversample=3)
    assert result.meta.cal_step.adaptive_trace_model == REFUSED
    assert any(e.startswith(f"{path.name} (slit {model.name}): MIRI LRS WCS has no "
                            "'alpha_beta' frame") for e in errors), errors


def test_miri_mrs_wcs_without_slice_map_is_refused(miri_data, tmp_path, caplog):
    """A MIRI MRS WCS whose detector -> alpha_beta transform has no label mapper (not
    written by assign_wcs): refused naming the file, not an AttributeError from
    astropy.modeling."""
    from astropy.modeling.models import Identity, Mapping

    from atm_step.validation.miri import miri_mrs_model

    model = miri_mrs_model(miri_data, tmp_path)
    wcs = model.meta.wcs
    steps = wcs.pipeline
    # detector -> alpha_beta as a plain model with the same inputs and outputs
    steps[0].transform = Mapping((0, 1, 0)) | (Identity(1) & Identity(1) & Identity(1))
    model.meta.filename = "miri_noslicemap_cal.fits"
    result = AdaptiveTraceModelStep.call(model, oversample=3)
    assert result.meta.cal_step.adaptive_trace_model == REFUSED
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(e.startswith("miri_noslicemap_cal.fits: the MIRI MRS WCS's detector -> "
                            "alpha_beta transform has no slice map") for e in errors), errors


def test_image_without_any_pixel_in_a_region_is_refused(caplog):
    """A NIRSpec IFU model whose slice map is all 0 (no pixel in a slice): FAILED, with
    the reason, instead of an output that is all NaN and COMPLETE."""
    from atm_step.simulate import make_scene
    from atm_step.simulate.to_datamodel import scene_to_ifu_model

    model = scene_to_ifu_model(make_scene("point_source", nx=120, ny=None, noise=0.01, seed=2))
    model.meta.filename = "ifu_noslices_cal.fits"
    model.regions[:] = 0
    with caplog.at_level(logging.INFO, logger="atm_step"):
        result = AdaptiveTraceModelStep.call(model, oversample=3)
    assert result.meta.cal_step.adaptive_trace_model == REFUSED
    assert result.data.shape == model.data.shape
    np.testing.assert_array_equal(result.data, model.data)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(e.startswith("ifu_noslices_cal.fits: no pixel lies in a NRS_IFU region")
               for e in errors), errors


def test_negative_variances_leave_sci_and_are_named(mos_files, tmp_path, caplog):
    """A VAR_RNOISE that is negative everywhere has no standard deviation to oversample:
    it is left out of NaN matching (SCI kept, as for an all-NaN variance) with a
    warning, instead of blanking every SCI pixel. A few negative values are named too:
    those pixels become NaN."""
    model = datamodels.open(str(mos_files[0]))
    good = np.isfinite(model.data)
    model.var_rnoise = -np.abs(model.var_rnoise) - 1.0
    path = tmp_path / "mos_negvar_cal.fits"
    model.save(str(path))
    with caplog.at_level(logging.WARNING, logger="atm_step"):
        result = AdaptiveTraceModelStep.call(str(path), oversample=3)
    assert result.meta.cal_step.adaptive_trace_model == "COMPLETE"
    assert np.isfinite(result.data).sum() >= 2 * good.sum()
    assert not np.isfinite(result.var_rnoise).any()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("VAR_RNOISE" in w and "no usable value" in w for w in warned), warned

    caplog.clear()
    model = datamodels.open(str(mos_files[0]))
    rows, cols = np.nonzero(good)
    model.var_rnoise[rows[:5], cols[:5]] = -1.0
    path = tmp_path / "mos_fewnegvar_cal.fits"
    model.save(str(path))
    with caplog.at_level(logging.WARNING, logger="atm_step"):
        result = AdaptiveTraceModelStep.call(str(path), oversample=3)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("VAR_RNOISE holds 5 negative values" in w for w in warned), warned
    assert np.isfinite(result.var_rnoise).any()
