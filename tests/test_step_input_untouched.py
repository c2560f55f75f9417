"""Step.call never modifies the caller's model: it builds each output model anew
(no deep copy of the input). Checked on every array, every metadata value and the WCS
(frames, bounding box, coordinates of a pixel grid in every frame) of the input, for
MIRI MRS (real geometry), a mocked NIRSpec IFU model and a NIRSpec MOS MultiSlitModel,
at N = 1 and N = 3; and the output shares no array memory with the input.
"""

import numpy as np
import pytest
from stdatamodels.jwst import datamodels
from stdatamodels.validate import ValidationWarning

import helpers
from atm_step import AdaptiveTraceModelStep


def _arrays(model):
    return [v for v in model.to_flat_dict(include_arrays=True).values()
            if isinstance(v, np.ndarray) and v.size > 1]


def _check(model, oversample):
    before = helpers.model_snapshot(model)
    result = AdaptiveTraceModelStep.call(model, oversample=oversample)
    helpers.assert_same_snapshot(before, helpers.model_snapshot(model))
    assert result is not model
    assert result.meta.cal_step.adaptive_trace_model == "COMPLETE"
    assert model.meta.cal_step.adaptive_trace_model is None
    for a in _arrays(result):
        assert not any(np.shares_memory(a, b) for b in _arrays(model))
    # the output is valid against its schema (it was built without validating each
    # assignment), and validates assignments afterwards as a model normally does
    result.validate()
    with pytest.warns(ValidationWarning):
        result.meta.cal_step.adaptive_trace_model = "NOT A STATUS"
    return result


@pytest.fixture(scope="module")
def miri_model(miri_data, tmp_path_factory):
    work = tmp_path_factory.mktemp("miri_untouched")
    model = helpers.miri_mrs_model(miri_data, work)
    helpers.inject_point_source(model, alpha0=0.05, beta0=0.1)
    return model


@pytest.mark.parametrize("oversample", [1, 3])
def test_miri_mrs_input_untouched(miri_model, oversample):
    result = _check(miri_model, oversample)
    assert result.data.shape == (1024, 1032 * oversample)
    if oversample > 1:
        # the wavelength image, blanked from the channels' wavelength ranges, is the
        # wavelength of the full WCS (which blanks in alpha_beta -> v2v3) at every pixel
        y, x = np.mgrid[: result.data.shape[0], : result.data.shape[1]].astype(np.float64)
        wave = result.meta.wcs(x, y)[2]
        assert np.array_equal(np.isfinite(wave), np.isfinite(result.wavelength))
        assert np.nanmax(np.abs(wave - result.wavelength)) < 1e-5 * 28.8


@pytest.mark.parametrize("oversample", [1, 3])
def test_nirspec_ifu_input_untouched(oversample):
    from atm_step.simulate import make_scene
    from atm_step.simulate.to_datamodel import scene_to_ifu_model

    scene = make_scene("point_source", nx=100, ny=440, noise=0.01, seed=2,
                       rows_per_slice=12, gap_rows=2)  # fmt: skip
    model = scene_to_ifu_model(scene, filename="sim_nrs1_cal.fits")
    result = _check(model, oversample)
    assert result.data.shape == (440 * oversample, 100)


def test_nirspec_mos_multislit_input_untouched(mos_files):
    multi = datamodels.MultiSlitModel()
    with datamodels.open(str(mos_files[0])) as slit:
        multi.update(slit)
        for _ in range(2):
            multi.slits.append(slit.copy())
    result = _check(multi, 3)
    assert [s.data.shape for s in result.slits] == [(75, 341)] * 2


def _sha(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_output_named_as_the_input_is_refused(mos_files, tmp_path):
    """``strun atm x_cal.fits --suffix=cal`` in the input's folder wrote the output over
    the input; now the save is refused with the path, and the input is unchanged."""
    import shutil

    cal = tmp_path / "jw01345062001_03101_00001_nrs2_cal.fits"
    shutil.copy(mos_files[0], cal)
    before = _sha(cal)
    with pytest.raises(FileExistsError, match=rf"{cal.name}: cannot save the output: it would "
                                              "overwrite the input file"):
        AdaptiveTraceModelStep.call(str(cal), save_results=True, suffix="cal",
                                    output_dir=str(tmp_path))
    assert _sha(cal) == before
    # another suffix in the same folder is fine
    AdaptiveTraceModelStep.call(str(cal), save_results=True, output_dir=str(tmp_path))
    assert (tmp_path / cal.name.replace("_cal", "_atm")).is_file() and _sha(cal) == before


def test_unwritable_output_folder_fails_before_the_fit(mos_files, tmp_path, monkeypatch):
    """A folder where no file can be created is found before any work (it was found
    only when the fitted model was saved)."""
    import errno
    import types

    import atm_step.atomic as atomic
    import atm_step.core as core

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    def no_fit(*args, **kwargs):
        raise AssertionError("the fit ran before the output folder was checked")

    # only the check's temporary file fails (Numba's cache uses tempfile too)
    monkeypatch.setattr(atomic, "tempfile", types.SimpleNamespace(TemporaryFile=read_only))
    monkeypatch.setattr(core, "adaptive_trace_model", no_fit)
    with pytest.raises(OSError, match=r"cannot write the outputs there \(OSError: Read-only"):
        AdaptiveTraceModelStep.call(str(mos_files[0]), save_results=True,
                                    output_dir=str(tmp_path))


def test_rerun_on_an_output_warns(mos_files, caplog):
    """The step's own output as input: modelled again, with a warning saying so."""
    out = AdaptiveTraceModelStep.call(str(mos_files[0]), oversample=2)
    with caplog.at_level("WARNING", logger="atm_step.step"):
        again = AdaptiveTraceModelStep.call(out, oversample=2)
    assert "already went through adaptive_trace_model (S_TRCMOD = COMPLETE)" in caplog.text
    assert "oversampled again" in caplog.text
    # a slit's rows run along it: they are oversampled a second time
    assert again.data.shape == (2 * out.data.shape[0], out.data.shape[1])
