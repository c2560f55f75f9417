"""Behaviour on inconsistent or unsupported inputs, stated and warned about (issue 10,
defect 7), on a real NIRSpec MOS cutout at N = 2.

- ERR all NaN (a file made without errors): SCI is kept, as with a real ERR, and ERR
  stays NaN, with a warning. jwst's NaN matching would blank every SCI pixel.
- DQ all DO_NOT_USE with finite SCI: the flags are kept (nothing becomes
  FLUX_ESTIMATED; jwst's step re-flags every pixel), with a warning.
- Unsupported input (imaging): ``strun atm`` exits 0 as jwst's does, and the batch
  runner reports the exposure as not processed.
"""

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from stdatamodels.jwst import datamodels
from stdatamodels.jwst.datamodels import dqflags

from atm_step import AdaptiveTraceModelStep

DNU = dqflags.pixel["DO_NOT_USE"]
EST = dqflags.pixel["FLUX_ESTIMATED"]


@pytest.fixture(scope="module")
def normal(mos_files):
    return AdaptiveTraceModelStep.call(str(mos_files[0]), oversample=2)


def _variant(mos_files, tmp_path, name, change):
    model = datamodels.open(str(mos_files[0]))
    change(model)
    path = tmp_path / name
    model.save(str(path))
    return path


def test_err_all_nan_keeps_sci(mos_files, tmp_path, normal, caplog):
    def no_err(m):
        m.err = np.full_like(m.err, np.nan)

    path = _variant(mos_files, tmp_path, "noerr_cal.fits", no_err)
    with caplog.at_level(logging.WARNING, logger="atm_step"):
        result = AdaptiveTraceModelStep.call(str(path), oversample=2)
    assert np.isfinite(normal.data).sum() > 10000
    np.testing.assert_array_equal(result.data, normal.data)  # SCI as with a real ERR
    assert np.isnan(result.err).all()
    np.testing.assert_array_equal(result.dq, normal.dq)
    assert "ERR holds no usable value where SCI is finite" in caplog.text


def test_dq_all_do_not_use_is_not_reflagged_estimated(mos_files, tmp_path, caplog):
    def all_bad(m):
        m.dq = m.dq | DNU

    path = _variant(mos_files, tmp_path, "allbad_cal.fits", all_bad)
    with caplog.at_level(logging.WARNING, logger="atm_step"):
        result = AdaptiveTraceModelStep.call(str(path), oversample=2)
    assert not np.any(result.dq & EST)
    assert np.all(result.dq & DNU) and np.isnan(result.data).all()
    assert "pixels flagged DO_NOT_USE hold finite SCI values" in caplog.text


def test_unsupported_input_strun_exit_0_batch_not_processed(tmp_path):
    model = datamodels.ImageModel(np.ones((20, 30), dtype=np.float32))
    model.meta.instrument.name = "NIRCAM"
    model.meta.instrument.detector = "NRCA1"
    model.meta.exposure.type = "NRC_IMAGE"
    path = tmp_path / "jw01000001001_01101_00001_nrca1_cal.fits"
    model.save(str(path))
    strun = str(Path(sys.executable).with_name("strun"))
    proc = subprocess.run([strun, "atm", str(path), f"--output_dir={tmp_path / 'out'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]  # as jwst's step
    (saved,) = (tmp_path / "out").glob("*.fits")
    assert datamodels.open(str(saved)).meta.cal_step.adaptive_trace_model == "FAILED"

    from atm_step.batch.task import Job, process_exposure

    row = process_exposure(Job(input=str(path), output=str(tmp_path / "x_atm.fits")))
    assert row.status == "failed"
    assert "the step did not process this ImageModel" in row.error
    assert not (tmp_path / "x_atm.fits").exists()
