"""Every parameter checked once, where it enters (issue 10, defect 5).

FitParameters and the core's arguments share one table of ranges
(`atm_step.core.parameters.LIMITS`); the step, `atm-step run` and
`atm_step.batch.run` check against it before reading any data.
"""

import dataclasses
import logging
import math

import numpy as np
import pytest

from atm_step import AdaptiveTraceModelStep
from atm_step.core import FitParameters, adaptive_trace_model
from atm_step.core.parameters import LIMITS
from atm_step.step import requested_cores

NAN = float("nan")

BAD_FIT_PARAMETERS = [
    ("nknots", 1), ("nknots", 2), ("nknots", 10000), ("nknots", 68.5), ("nknots", NAN),
    ("knots_per_row", NAN), ("knots_per_row", 0.0), ("knots_per_row", -1.0),
    ("sigma_reject", NAN), ("sigma_reject", 0.0), ("gap_ratio", NAN), ("gap_ratio", -1.0),
    ("window", -1), ("window", True), ("max_iter", 0), ("min_good", -1),
    ("max_reject_fraction", 1.0), ("scale_top", 0), ("scale_sigma", math.inf),
    ("residual_shrinkage", -1.0), ("residual_shrinkage", NAN),
]  # fmt: skip


@pytest.mark.parametrize("name, value", BAD_FIT_PARAMETERS)
def test_fit_parameters_refuse_out_of_range(name, value):
    with pytest.raises(ValueError, match=rf"parameter {name}=.* it must be .*") as info:
        FitParameters(**{name: value})
    assert LIMITS[name].describe() in str(info.value)


def test_fit_parameters_accept_presets_and_edges():
    for preset in (FitParameters(), FitParameters.nirspec_ifu("NRS2"),
                   FitParameters.nirspec_slit("NRS1", "PRISM"), FitParameters.miri_mrs()):
        assert dataclasses.replace(preset) == preset
    p = FitParameters(nknots=4.0, knots_per_row=10, sigma_reject=1e9, gap_ratio=1e9,
                      window=np.int64(0), min_good=0)
    assert p.nknots == 4 and isinstance(p.nknots, int) and p.window == 0
    assert FitParameters(nknots=1000).nknots == 1000


@pytest.mark.parametrize("name", ["scale_offset", "two_profiles"])
@pytest.mark.parametrize("value", ["yes", 1, None])
def test_switches_must_be_bools(name, value):
    with pytest.raises(ValueError, match=f"parameter {name}=.* must be True or False"):
        FitParameters(**{name: value})


def test_every_fit_parameter_has_a_range():
    """A new FitParameters field must declare its allowed values in LIMITS (the
    switches, checked as bools, and the column order, checked against its names,
    apart)."""
    names = {f.name for f in dataclasses.fields(FitParameters)} - {
        "column_order", "scale_offset", "two_profiles"}
    assert names <= set(LIMITS), f"no LIMITS entry for {sorted(names - set(LIMITS))}"


@pytest.mark.parametrize("name, value", [
    ("oversample", None), ("oversample", 0), ("oversample", NAN), ("oversample", math.inf),
    ("oversample", 11), ("fit_threshold", NAN), ("slope_limit", NAN), ("pad", -1),
    ("pad", 1.5),
])  # fmt: skip
def test_core_refuses_bad_arguments(name, value):
    ones = np.ones((6, 8))
    with pytest.raises(ValueError, match=rf"parameter {name}=.* must be"):
        adaptive_trace_model(ones, np.cumsum(ones, 0), ones.astype(int), **{name: value})


@pytest.mark.parametrize("value, expect", [
    ("none", 1), ("one", 1), ("quarter", 2), ("half", 4), ("all", 8), ("3", 3), (" HALF ", 4),
])  # fmt: skip
def test_maximum_cores_accepted(value, expect):
    assert requested_cores(value, 8) == expect


@pytest.mark.parametrize("value", ["lots", "0", "-2", "1.5", ""])
def test_maximum_cores_refused(value):
    with pytest.raises(ValueError, match=r"maximum_cores=.* 'none', 'one', 'quarter'"):
        requested_cores(value, 8)


def test_maximum_cores_above_the_machine_warns_and_caps(caplog):
    with caplog.at_level(logging.WARNING, logger="atm_step"):
        assert requested_cores("999", 2) == 2
    assert "maximum_cores=999 is more than the 2 cores" in caplog.text


@pytest.mark.parametrize("params, match", [
    (dict(maximum_cores="lots"), "maximum_cores='lots'"),
    (dict(maximum_cores="0"), "maximum_cores='0'"),
    (dict(fit_threshold=NAN), "fit_threshold=nan"),
    (dict(gap_ratio=NAN), "gap_ratio=nan"),
    (dict(sigma_reject=NAN), "sigma_reject=nan"),
    (dict(pad=-1), "pad=-1"),
    (dict(nknots=2), "nknots=2"),
    (dict(oversample=0.5), "oversample=0.5"),
    (dict(residual_shrinkage=-1.0), "residual_shrinkage=-1.0"),
])  # fmt: skip
def test_step_refuses_before_reading_data(params, match, tmp_path):
    missing = tmp_path / "never_read_cal.fits"  # a bad parameter is reported first
    with pytest.raises(ValueError, match=match):
        AdaptiveTraceModelStep.call(str(missing), **params)


def test_step_maximum_cores_above_the_machine_runs_with_a_warning(mos_files, caplog):
    with caplog.at_level(logging.WARNING, logger="atm_step"):
        result = AdaptiveTraceModelStep.call(str(mos_files[0]), maximum_cores="999")
    assert result.meta.cal_step.adaptive_trace_model == "COMPLETE"
    assert "maximum_cores=999 is more than the" in caplog.text


# ------------------------------------------------------------------ batch and CLI
@pytest.mark.parametrize("argv, match", [
    (["--oversample", "0"], "oversample=0"),
    (["--oversample", "nan"], "oversample=nan"),
    (["--fit-threshold", "nan"], "fit_threshold=nan"),
    (["--maximum-cores", "lots"], "maximum_cores='lots'"),
    (["--workers", "0"], "workers=0"),
])  # fmt: skip
def test_atm_step_run_refuses_once_before_any_task(argv, match, mos_files, tmp_path, capsys,
                                                   monkeypatch):
    import distributed  # noqa: F401  (in the [test] extra: missing must fail)
    import atm_step.batch.runner as runner
    from atm_step.cli import main

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started for invalid parameters")

    monkeypatch.setattr(runner, "_client", no_cluster)
    out = tmp_path / "out"
    status = main(["run", str(mos_files[0]), "-o", str(out), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert status == 2
    assert match in err and "allowed" in err and err.count("\n") == 1, err
    assert not list(out.glob("*.fits")) if out.exists() else True


def test_batch_run_refuses_workers_zero_from_python(mos_files, tmp_path):
    import distributed  # noqa: F401  (in the [test] extra: missing must fail)
    from atm_step.batch import run

    with pytest.raises(ValueError, match="workers=0 is not allowed"):
        run(mos_files[:1], output_dir=tmp_path, workers=0)
