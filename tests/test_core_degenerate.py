"""Degenerate geometry in the core (issue 10, defect 1): no crash, clear errors.

Every case runs in one child process, capped at 3 GiB of address space, so that a
segmentation fault or a runaway allocation fails the test instead of killing pytest.
The child reports each case as one JSON line as soon as it finishes; a case with no
line is one the child died in.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

#: name -> (code building the call's keyword arguments, expected outcome)
#: Each snippet sees numpy as np and ``y, x`` (20 x 40 grids) and ``f`` (a Gaussian
#: trace along the slice) and sets ``kw`` for adaptive_trace_model.
CASES = {
    # the reproducer: alpha changes only across columns, every region fitted
    "alpha_along_dispersion_only": "kw = dict(flux=f, alpha=x / 40.0, regions=ones, fit_threshold=0)",
    "alpha_along_dispersion_only_N2": (
        "kw = dict(flux=f, alpha=x / 40.0, regions=ones, fit_threshold=0, oversample=2)"
    ),
    "alpha_along_dispersion_only_threshold": "kw = dict(flux=f, alpha=x / 40.0, regions=ones)",
    "alpha_constant": "kw = dict(flux=f, alpha=np.zeros_like(f), regions=ones)",
    "alpha_constant_fit_all": (
        "kw = dict(flux=f, alpha=np.zeros_like(f), regions=ones, fit_threshold=0)"
    ),
    "alpha_all_nan": "kw = dict(flux=f, alpha=np.full_like(f, np.nan), regions=ones, fit_threshold=0)",
    # alpha barely changes along the slice: the knot count must not explode
    "alpha_nearly_flat_along_slice": (
        "kw = dict(flux=f, alpha=x + 1e-9 * y, regions=ones, fit_threshold=0)"
    ),
    "knots_per_row_nan": (
        "kw = dict(flux=f, alpha=y, regions=ones, fit_threshold=0, knots_per_row=float('nan'))"
    ),
    "zero_width_slit": "kw = dict(flux=f[:, :0], alpha=y[:, :0], regions=ones[:, :0])",
    "zero_height_slit": "kw = dict(flux=f[:0], alpha=y[:0], regions=ones[:0])",
    "region_id_2_31": "kw = dict(flux=f, alpha=y, regions=ones * (2**31 - 1), fit_threshold=0)",
    "sparse_region_ids": (
        "reg = np.where(y < 10, 7, 2**40).astype(np.int64)\n"
        "kw = dict(flux=f, alpha=np.where(y < 10, y, y - 10), regions=reg, fit_threshold=0, "
        "oversample=2)"
    ),
}

#: name -> (exception type name or None, text in the message or None)
EXPECT = {
    "alpha_along_dispersion_only": (None, None),
    "alpha_along_dispersion_only_N2": (None, None),
    "alpha_along_dispersion_only_threshold": (None, None),
    "alpha_constant": (None, None),
    "alpha_constant_fit_all": (None, None),
    "alpha_all_nan": (None, None),
    "alpha_nearly_flat_along_slice": (None, None),
    "knots_per_row_nan": ("ValueError", "knots_per_row=nan"),
    "zero_width_slit": ("ValueError", "no pixels"),
    "zero_height_slit": ("ValueError", "no pixels"),
    "region_id_2_31": (None, None),
    "sparse_region_ids": (None, None),
}

CHILD = textwrap.dedent(
    """
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    import numpy as np
    from atm_step.core import adaptive_trace_model

    y, x = np.mgrid[:20, :40].astype(float)
    f = 100 * np.exp(-0.5 * ((y - 10) / 2) ** 2) + 1
    ones = np.ones((20, 40), int)
    cases = json.loads(sys.argv[1])
    for name, code in cases.items():
        ns = dict(np=np, x=x, y=y, f=f, ones=ones)
        exec(code, ns)
        kw = ns["kw"]
        out = {"case": name}
        try:
            res = adaptive_trace_model(kw.pop("flux"), kw.pop("alpha"), kw.pop("regions"), **kw)
        except Exception as exc:
            out.update(error=type(exc).__name__, message=str(exc))
        else:
            flux_in = ns["f"] if res.flux.shape[1] == 40 else None
            out.update(
                error=None,
                shape=list(res.flux.shape),
                region_ids=[int(r) for r in res.region_ids],
                fitted=[bool(v) for v in res.fitted],
                all_finite=bool(np.isfinite(res.flux).all()),
                unchanged=bool(res.oversample == 1 and np.array_equal(res.flux, flux_in)),
            )
        print(json.dumps(out), flush=True)
    """
)


@pytest.fixture(scope="module")
def outcomes():
    """Run every case in one capped child process; map case -> its JSON report."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(CASES)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    done = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            done[rec["case"]] = rec
    return done, proc


@pytest.mark.parametrize("case", list(CASES))
def test_degenerate_geometry_no_crash_clear_error(outcomes, case):
    done, proc = outcomes
    assert case in done, (
        f"the child process died (exit status {proc.returncode}) before finishing case "
        f"{case!r}:\n{proc.stderr[-2000:]}"
    )
    rec = done[case]
    error, text = EXPECT[case]
    assert rec["error"] == error, rec
    if error is not None:
        assert text in rec["message"], rec
        return
    assert rec["all_finite"], rec  # a finite input gives a finite output
    if case.startswith(("alpha_along", "alpha_constant", "alpha_all_nan")):
        # no spline can be fitted along the slice: not reported as fitted
        assert rec["fitted"] == [False], rec
    if case in ("alpha_along_dispersion_only", "alpha_constant_fit_all", "alpha_all_nan"):
        assert rec["unchanged"], rec  # N = 1: the input, unchanged
    if case.endswith("_N2"):
        assert rec["shape"] == [40, 40], rec
    if case == "region_id_2_31":
        assert rec["region_ids"] == [2**31 - 1] and rec["fitted"] == [True], rec
    if case == "sparse_region_ids":
        assert rec["region_ids"] == [7, 2**40] and rec["fitted"] == [True, True], rec
        assert rec["shape"] == [40, 40], rec


def test_zero_width_slit_in_a_multislit_model_is_refused_clearly(mos_files, caplog):
    """At the step: a slit with no pixels is named in a clear refusal, no deep error."""
    import logging

    from stdatamodels.jwst import datamodels

    from atm_step import AdaptiveTraceModelStep

    nod = datamodels.open(str(mos_files[0]))
    multi = datamodels.MultiSlitModel()
    multi.update(nod)
    multi.meta.filename = "mos_empty_slit_cal.fits"
    multi.slits.append(nod.copy())
    empty = datamodels.SlitModel(data=np.zeros((25, 0), dtype=np.float32))
    empty.name = "S200A2"
    empty.meta.wcs = nod.meta.wcs
    multi.slits.append(empty)
    with caplog.at_level(logging.ERROR, logger="atm_step"):
        result = AdaptiveTraceModelStep.call(multi, oversample=2)
    assert result.meta.cal_step.adaptive_trace_model == "FAILED"
    assert "mos_empty_slit_cal.fits: slit S200A2 holds no pixels (data shape (25, 0))" in (
        caplog.text
    )
