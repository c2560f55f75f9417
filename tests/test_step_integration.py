"""stpipe integration: entry point, aliases, pipelines, parameter files."""

import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

from atm_step import AdaptiveTraceModelStep
from atm_step.batch.inputs import output_name


def test_entry_point_registers_alias_atm_and_pipelines():
    from stpipe import entry_points

    ours = {s.class_alias: s for s in entry_points.get_steps() if s.package_name == "atm-step"}
    assert set(ours) == {"atm", "calwebb_spec2_atm", "calwebb_spec3_atm", "calwebb_tso3_atm"}
    assert ours["atm"].class_name == "atm_step.step.AdaptiveTraceModelStep"
    assert ours["calwebb_spec3_atm"].is_pipeline
    assert ours["calwebb_tso3_atm"].class_name == "atm_step.pipelines.Tso3PipelineATM"
    assert ours["calwebb_tso3_atm"].is_pipeline
    # jwst keeps sole ownership of "adaptive_trace_model"
    owners = [s for s in entry_points.get_steps() if s.class_alias == "adaptive_trace_model"]
    assert [s.package_name for s in owners] == ["jwst"]


@pytest.mark.parametrize(
    "name", ["atm", "atm-step::atm", "atm_step.step.AdaptiveTraceModelStep"]
)
def test_strun_names_resolve_to_our_step(name):
    from stpipe.utilities import import_class, resolve_step_class_alias

    assert import_class(resolve_step_class_alias(name)) is AdaptiveTraceModelStep


@pytest.mark.parametrize("name", ["calwebb_tso3_atm", "atm-step::calwebb_tso3_atm"])
def test_strun_names_resolve_to_tso3_pipeline(name):
    from stpipe.utilities import import_class, resolve_step_class_alias

    from atm_step.pipelines import Tso3PipelineATM

    assert import_class(resolve_step_class_alias(name)) is Tso3PipelineATM


def test_strun_command_line_with_package_prefix(mos_files, tmp_path):
    strun = str(Path(sys.executable).with_name("strun"))
    proc = subprocess.run(
        [strun, "atm-step::atm", str(mos_files[1]), "--oversample=2", f"--output_dir={tmp_path}"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    from stdatamodels.jwst import datamodels

    # the same name as `atm-step run` and a parameter-file run give (one naming scheme)
    (out,) = tmp_path.glob("*.fits")
    assert out.name == output_name(mos_files[1]) == mos_files[1].name.replace(".fits", "_atm.fits")
    with datamodels.open(str(out)) as model:
        assert model.data.shape == (50, 341)
        assert model.meta.cal_step.adaptive_trace_model == "COMPLETE"
    assert "regions fitted" in proc.stderr + proc.stdout


def test_spec_is_a_superset_of_jwst_with_same_defaults_but_skip():
    from jwst.adaptive_trace_model import AdaptiveTraceModelStep as JwstATM

    ours, theirs = AdaptiveTraceModelStep(), JwstATM()
    for key in ("fit_threshold", "oversample", "slope_limit", "psf_optimal",
                "save_intermediate_results", "output_use_model", "maximum_cores"):
        assert getattr(ours, key) == getattr(theirs, key), key
    assert theirs.skip is True and ours.skip is False
    assert AdaptiveTraceModelStep.class_alias == "adaptive_trace_model"


def test_jwst_parameter_files_configure_our_step_and_pipelines(tmp_path):
    from jwst.adaptive_trace_model import AdaptiveTraceModelStep as JwstATM
    from jwst.pipeline import Spec3Pipeline

    from atm_step.pipelines import PipelineAdaptiveTraceModelStep, Spec3PipelineATM

    step_file = tmp_path / "jwst_atm_pars.asdf"
    JwstATM(oversample=2.0, fit_threshold=5.0, psf_optimal=True).export_config(str(step_file))
    step = AdaptiveTraceModelStep.from_config_file(str(step_file))
    assert type(step) is AdaptiveTraceModelStep
    assert (step.oversample, step.fit_threshold, step.psf_optimal) == (2.0, 5.0, True)

    pipe_file = tmp_path / "jwst_spec3_pars.asdf"
    Spec3Pipeline(steps={"adaptive_trace_model": {"oversample": 3.0, "skip": False}}).export_config(
        str(pipe_file)
    )
    pipe = Spec3PipelineATM.from_config_file(str(pipe_file))
    assert type(pipe.adaptive_trace_model) is PipelineAdaptiveTraceModelStep
    assert pipe.adaptive_trace_model.oversample == 3.0
    assert pipe.adaptive_trace_model.skip is False

    from jwst.pipeline import Tso3Pipeline

    from atm_step.pipelines import Tso3PipelineATM

    tso_file = tmp_path / "jwst_tso3_pars.asdf"
    Tso3Pipeline(steps={"adaptive_trace_model": {"fit_threshold": 4.0, "skip": False}}).export_config(
        str(tso_file)
    )
    pipe = Tso3PipelineATM.from_config_file(str(tso_file))
    assert type(pipe) is Tso3PipelineATM
    assert type(pipe.adaptive_trace_model) is PipelineAdaptiveTraceModelStep
    assert pipe.adaptive_trace_model.fit_threshold == 4.0
    assert pipe.adaptive_trace_model.skip is False


def test_pipelines_keep_jwst_default_of_skipping_the_slot():
    from atm_step.pipelines import Spec2PipelineATM, Spec3PipelineATM, Tso3PipelineATM

    for cls in (Spec2PipelineATM, Spec3PipelineATM, Tso3PipelineATM):
        pipe = cls()
        assert isinstance(pipe.adaptive_trace_model, AdaptiveTraceModelStep)
        assert pipe.adaptive_trace_model.skip is True
        on = cls(steps={"adaptive_trace_model": {"skip": False, "oversample": 3}})
        assert on.adaptive_trace_model.skip is False and on.adaptive_trace_model.oversample == 3


@pytest.mark.parametrize(
    "name, expect",
    [
        ("crowded_field.asdf", {"fit_threshold": 0.0, "slope_limit": 0.0, "psf_optimal": False}),
        ("point_source.asdf", {"psf_optimal": True}),
    ],
)
def test_shipped_parameter_files(name, expect, mos_files):
    path = files("atm_step") / "params" / name
    step = AdaptiveTraceModelStep.from_config_file(str(path))
    for key, value in expect.items():
        assert getattr(step, key) == value
    assert step.skip is False
    # every region fitted, spline used throughout: the faint MOS galaxy gets a trace
    result = AdaptiveTraceModelStep.call(str(mos_files[0]), config_file=str(path), oversample=2)
    finite = np.isfinite(result.data)
    assert np.isfinite(result.trace_model[finite]).mean() > 0.9


def test_save_intermediate_results(mos_files, tmp_path):
    AdaptiveTraceModelStep.call(
        str(mos_files[2]), oversample=2, save_intermediate_results=True, output_dir=str(tmp_path),
        fit_threshold=0,
    )
    names = sorted(p.name.split("_933_")[-1] for p in tmp_path.glob("*.fits"))
    assert names == [
        "linear_interp.fits", "spline_full.fits", "spline_residual.fits", "spline_used.fits"
    ]
    from stdatamodels.jwst import datamodels

    with datamodels.open(str(next(tmp_path.glob("*spline_full.fits")))) as full:
        assert full.data.shape == (50, 341)
        assert np.isfinite(full.data).sum() > 5000


def test_model_container_each_model_processed_input_untouched(mos_files):
    from jwst.datamodels import ModelContainer

    container = ModelContainer([str(p) for p in mos_files[:2]])
    result = AdaptiveTraceModelStep.call(container, oversample=2)
    assert isinstance(result, ModelContainer)
    assert [m.data.shape for m in result] == [(50, 341), (50, 341)]
    assert [m.meta.cal_step.adaptive_trace_model for m in result] == ["COMPLETE"] * 2
    assert [m.data.shape for m in container] == [(25, 341), (25, 341)]


def test_one_output_name_for_standalone_runs_and_jwst_names_in_pipelines(mos_files, tmp_path):
    """Step.call, a shipped parameter file and the batch runner all write <root>_atm.fits;
    inside the pipelines the step keeps jwst's name, adaptive_trace_model."""
    from atm_step import params
    from atm_step.pipelines import Spec2PipelineATM, Spec3PipelineATM

    src = mos_files[2]
    expected = output_name(src)
    assert expected.endswith("_933_atm.fits")
    AdaptiveTraceModelStep.call(str(src), save_results=True, output_dir=str(tmp_path / "call"))
    step = AdaptiveTraceModelStep.from_config_file(params.path("point_source"))
    step.output_dir = str(tmp_path / "pars")
    step.save_results = True
    step.run(str(src))
    for sub in ("call", "pars"):
        assert [p.name for p in (tmp_path / sub).iterdir()] == [expected]
    for cls in (Spec2PipelineATM, Spec3PipelineATM):
        slot = cls().adaptive_trace_model
        slot.suffix = None
        assert slot.default_suffix() == "adaptive_trace_model"


def test_per_region_lines_are_debug_and_the_summary_info(mos_files, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="atm_step"):
        AdaptiveTraceModelStep.call(str(mos_files[0]), oversample=2, fit_threshold=0)
    info = [r.getMessage() for r in caplog.records if r.name == "atm_step.step"
            and r.levelno == logging.INFO]
    assert not [m for m in info if " region " in m], info
    assert any("1/1 regions fitted" in m for m in info), info
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="atm_step"):  # stpipe would reset the level
        AdaptiveTraceModelStep.call(str(mos_files[0]), oversample=2, fit_threshold=0,
                                    configure_log=False)
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any(" region 1: fitted" in m for m in debug), debug


def test_pipelines_configure_atm_step_loggers():
    """The step's per-exposure summary shows under strun calwebb_spec*_atm as under strun atm
    (stpipe attaches its handlers only to the loggers a pipeline class names)."""
    from atm_step.pipelines import Spec2PipelineATM, Spec3PipelineATM, Tso3PipelineATM

    for cls in (Spec2PipelineATM, Spec3PipelineATM, Tso3PipelineATM):
        assert cls.get_stpipe_loggers()[0] == "atm_step"
        assert cls().get_stpipe_loggers() == AdaptiveTraceModelStep.get_stpipe_loggers()


def test_strun_help_keeps_the_description_readable():
    strun = str(Path(sys.executable).with_name("strun"))
    proc = subprocess.run([strun, "atm", "--help"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    head = " ".join(proc.stdout.split("options:")[0].split())  # argparse re-wraps lines
    assert "Fit adaptive trace models" in head
    assert "Source: D. R. Law" in head
    assert "---" not in head  # no flattened numpydoc section underline


def test_residual_shrinkage_reaches_the_core(mos_files):
    """The step parameter changes the band's pixels and keeps each column's flux
    (`atm_step.core.combine.shrink_band_residual`); off in the slit preset MOS uses."""
    plain = AdaptiveTraceModelStep.call(str(mos_files[0]), oversample=3, fit_threshold=0, slope_limit=0)
    shrunk = AdaptiveTraceModelStep.call(str(mos_files[0]), oversample=3, fit_threshold=0, slope_limit=0,
                                         residual_shrinkage=1.0)
    assert AdaptiveTraceModelStep().residual_shrinkage is None
    both = np.isfinite(plain.data) & np.isfinite(shrunk.data)
    assert (both == np.isfinite(plain.data)).all()
    changed = np.abs(shrunk.data - plain.data)[both] > 1e-6 * np.nanmax(np.abs(plain.data))
    assert changed.mean() > 0.3
    cols = lambda m: np.where(both, m.data, 0.0).sum(axis=0)  # noqa: E731
    # float32 output: rounding only
    np.testing.assert_allclose(cols(shrunk), cols(plain), rtol=1e-5, atol=1e-6 * np.nanmax(np.abs(plain.data)))
