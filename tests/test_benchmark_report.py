"""The benchmark report's core-speed row against the baseline commit (issue 12, goal 3).

Renders ``benchmarks/run_benchmarks.py``'s headline and report from small fake results
dicts (no measurement runs), and checks that the worker's stage wrappers tolerate a
core without one of the wrapped functions (the baseline commit's core).
"""

import importlib.util
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    path = REPO_ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rb():
    return _load("run_benchmarks")


def _run(wall, stages, tuning=None):
    return {
        "wall": wall,
        "user_cpu": 0.7 * wall,
        "system_cpu": 0.25 * wall,
        "stages": stages,
        "n_fitted": 30,
        "tuning_applied": tuning or {},
        "tuning_absent": [],
        "stages_unwrapped": [],
    }


def _results(baseline):
    return {
        "config": {"nx": 2048, "ny": 2048, "repeats": 3, "jwst_max_fit": 3},
        "quick": False,
        "started": "2026-11-30 22:00:00",
        "elapsed": 60.0,
        "commit": "abc1234567",
        "command": "python benchmarks/run_benchmarks.py",
        "baseline": baseline,
    }


def _baseline(rb, wall_base, wall_head, wall_off):
    off = {"penalty": 0.0, "scale_offset": False}
    runs = {
        "baseline": [_run(wall_base + 0.5, {}), _run(wall_base, {"spline fits": 4.0})],
        "head": [_run(wall_head, {"spline fits": 2.0}), _run(wall_head + 0.1, {})],
        "head_off": [_run(wall_off, {"spline fits": 1.0}, off), _run(wall_off + 0.2, {}, off)],
        "head_advice": [_run(wall_head + 1.0, {}), _run(wall_head + 0.5, {"spline fits": 2.0})],
    }
    best = {k: min(v, key=lambda r: r["wall"]) for k, v in runs.items()}
    return {
        "rev": "30e6aa3",
        "commit": "30e6aa35e1",
        "N": 3.0,
        "rounds": 2,
        "repeats": 3,
        "runs": runs,
        "best": best,
        "ratio": wall_base / wall_head,
        "ratio_off": wall_base / wall_off,
        "ratio_advice": wall_base / (wall_head + 0.5),
        "worker_spec": {"kind": "ours_core", "oversample": 3.0},
    }


def _row(rows, start):
    found = [r for r in rows if r[0].startswith(start)]
    assert len(found) == 1, rows
    return found[0]


NAME = "core on 1 thread, crowded N=3: speed-up over 30e6aa35e1"


@pytest.mark.parametrize(
    ("wall_head", "measured", "status"),
    [(3.0, "2.0x", "met"), (5.0, "1.2x", "MISSED (0.80 of the goal)")],
)
def test_headline_row_goal(rb, wall_head, measured, status):
    rows = rb.headline(_results(_baseline(rb, 6.0, wall_head, 2.0)))
    assert _row(rows, NAME) == (NAME, measured, ">= 1.5x", status)
    off = _row(rows, "core on 1 thread, crowded N=3, accuracy additions off")
    assert off[1:] == ("3.0x", "-", "-")


def test_headline_row_not_measured(rb):
    rows = rb.headline(_results({"rev": "30e6aa3", "error": "git is not available"}))
    name = "core on 1 thread, crowded N=3: speed-up over 30e6aa3"
    assert _row(rows, name)[1:] == ("not measured", ">= 1.5x", "-")
    assert _row(rb.headline(_results(None)), name)[1] == "not measured"


def test_report_section(rb, tmp_path):
    out = tmp_path / "performance.md"
    rb.report(_results(_baseline(rb, 6.0, 3.0, 2.0)), out, tmp_path / "x.png")
    text = out.read_text()
    assert "## Core on 1 thread against commit 30e6aa35e1" in text
    assert f"| {NAME} | 2.0x | >= 1.5x | met |" in text
    lines = text.splitlines()
    base = next(line for line in lines if line.startswith("| 30e6aa35e1 (before issue 12)"))
    head = next(line for line in lines if line.startswith("| abc1234567, its preset"))
    off = next(line for line in lines if line.startswith("| abc1234567, accuracy additions"))
    advice = next(line for line in lines if line.startswith("| abc1234567, its preset, with"))
    # best, speed-up, per-round times, user and system CPU of the best run, then the
    # stage breakdown (spline fits third)
    assert base.split(" | ")[1:7] == ["6.00", "1.0x", "6.50, 6.00", "4.20", "1.50", "0.000"]
    assert base.split(" | ")[7] == "4.00"
    assert head.split(" | ")[1:6] == ["3.00", "2.0x", "3.00, 3.10", "2.10", "0.750"]
    assert off.split(" | ")[1:4] == ["2.00", "3.0x", "2.00, 2.20"]
    assert advice.split(" | ")[1:4] == ["3.50", "1.7x", "4.00, 3.50"]
    assert "NUMPY_MADVISE_HUGEPAGE=1" in advice
    assert "huge-page advice on (as 30e6aa35e1): speed-up over 30e6aa35e1 | 1.7x" in text
    assert "`penalty=0.0`, `scale_offset=False`" in text
    assert "git archive 30e6aa35e1 atm_step" in text


def test_report_section_not_measured(rb, tmp_path):
    out = tmp_path / "performance.md"
    rb.report(
        _results({"rev": "30e6aa3", "error": "git is not available (no git)"}),
        out,
        tmp_path / "x.png",
    )
    text = out.read_text()
    assert (
        "## Core on 1 thread against commit 30e6aa3\n\nNot measured: git is not "
        "available (no git)." in text
    )


def test_stage_wrappers_tolerate_a_missing_function(monkeypatch):
    """A core without ``errors.oversample_errors`` is timed; the absence is reported."""
    from atm_step.core import combine, errors, linear, stats, trace_fit

    workers = _load("workers")
    wrapped = [
        (stats, "image_statistics"),
        (stats, "regions_over_threshold"),
        (trace_fit, "fit_regions"),
        (linear, "linear_oversample"),
        (combine, "combine_models"),
    ]
    for owner, name in wrapped:  # restored by monkeypatch after the test
        monkeypatch.setattr(owner, name, getattr(owner, name))
    monkeypatch.delattr(errors, "oversample_errors")
    timer = workers.StageTimer()
    assert workers._ours_core_stages(timer) == ["errors.oversample_errors"]
    assert [(o, n) for o, n, _ in timer._undo] == wrapped
    monkeypatch.undo()
    assert all(getattr(o, n) is f for o, n, f in timer._undo)


def test_first_run_section_with_and_without_the_compile_helper(rb, tmp_path):
    out = tmp_path / "performance.md"
    core = {"import": 1.0, "first": 12.0, "steady": 1.0, "compile": 11.0, "process_wall": 14.0}
    results = {**_results(None), "jit": {
        "cold": core, "warm": {**core, "first": 1.5, "compile": 0.5},
        "strun_cold": {"wall": 19.0}, "strun_warm": {"wall": 8.5},
        "strun_cold_no_helper": {"wall": 24.0}}}
    rb.report(results, out, tmp_path / "x.png")
    text = out.read_text()
    assert "19.00 s and 8.50 s, so the first run costs **10.50 s** more" in text
    assert "the first `strun` took 24.00 s, 15.50 s more than the warm one" in text
    assert "first strun with an empty Numba cache: extra over a second run (s) | 10.50" in text


def test_strun_memory_names_numbas_fixed_cost(rb, tmp_path):
    """Where our strun peak is above jwst's, the goal line and the strun table give the
    floors' peaks and Numba's fixed memory, measured by the floor process."""
    out = tmp_path / "performance.md"

    def strun(wall, peak, floor_peak, **floor):
        return {"wall": wall, "peak_mb": peak, "floor": {
            "import": 0.7, "open": 0.5, "save": 0.4, "process_wall": 2.0,
            "peak_mb": floor_peak, **floor}}

    results = {**_results(None), "strun": [{
        "label": "NIRSpec MOS nod 1", "N": 3.0, "ratio": 1.0,
        "jwst": strun(2.6, 182.0, 182.4), "ours": strun(2.7, 254.0, 151.8, numba_mb=89.7)}]}
    rb.report(results, out, tmp_path / "x.png")
    text = out.read_text()
    assert ("ours higher in strun NIRSpec MOS nod 1: 254 vs 182 MB (Numba's import and "
            "JIT engine: 90 MB of ours)") in text
    assert "| 182 / 254 | 182 / 152 | 90 |" in text
