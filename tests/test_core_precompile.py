"""A first run shares its compilation with a helper process (issue 12, goal 2).

The helper (`atm_step.core.precompile`) compiles the image-stage kernels into the
on-disk Numba cache while the caller compiles the spline fits; the caller then loads
them from the cache. Shown in fresh processes on an empty cache of their own.
"""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
from numba.core.dispatcher import Dispatcher

from atm_step.core import FitParameters, adaptive_trace_model, bspline, precompile, trace_fit

# The caller: a real call on a cold cache; prints the helper's log lines and which
# modules' kernels this process compiled.
_CALLER = textwrap.dedent("""
    import json, logging
    from numba.core import event
    compiled = []
    class Listener(event.Listener):
        def on_start(self, ev): pass
        def on_end(self, ev): compiled.append(ev.data["dispatcher"].py_func.__module__)
    event.register("numba:compile", Listener())
    messages = []
    class Keep(logging.Handler):
        def emit(self, record): messages.append(record.getMessage())
    logging.getLogger("atm_step.core.precompile").addHandler(Keep())
    logging.getLogger("atm_step.core.precompile").setLevel(logging.INFO)
    from atm_step.core import FitParameters, adaptive_trace_model, precompile
    at_import = len(compiled)
    flux, alpha, regions, err = precompile._synthetic_scene()
    res = adaptive_trace_model(flux, alpha, regions, err=err, oversample=3, fit_threshold=0,
                               parameters=FitParameters.nirspec_ifu("NRS1"))
    # kernels this process holds more than one compiled version of
    import importlib, pkgutil
    import atm_step.core
    from numba.core.dispatcher import Dispatcher
    several = {}
    for info in pkgutil.iter_modules(atm_step.core.__path__):
        module = importlib.import_module("atm_step.core." + info.name)
        for name, obj in vars(module).items():
            if isinstance(obj, Dispatcher) and obj.py_func.__module__ == module.__name__:
                if len(obj.signatures) > 1:
                    several[info.name + "." + name] = [str(s) for s in obj.signatures]
    print(json.dumps({"compiled": sorted(set(compiled)), "messages": messages,
                      "fitted": int(res.n_fitted), "compiled_at_import": at_import,
                      "several_versions": several}))
""")


def _run_caller(tmp_path, switch, cwd=None):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba_cache"))
    env[precompile.ENV_SWITCH] = switch
    args = [sys.executable, "-c", _CALLER]
    if cwd is not None:  # the caller imports this package, not one in its working directory
        root = os.path.dirname(os.path.dirname(os.path.dirname(precompile.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        args.insert(1, "-P")
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600,
                         check=True, cwd=cwd)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_helper_imports_the_callers_package_not_one_in_the_working_directory(tmp_path):
    """Run from a folder holding another ``atm_step`` (a source checkout beside an
    installed package), the helper still compiles the caller's kernels: the cache is
    keyed by source path, so a helper that imported the other copy would leave the
    caller to compile everything after waiting for it (the benchmark's first ``strun``:
    9.6 s more than a warm run instead of 6)."""
    decoy = tmp_path / "checkout" / "atm_step"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise ImportError('the checkout in the working directory')\n")
    got = _run_caller(tmp_path, "1", cwd=decoy.parent)
    assert got["fitted"] == 3
    assert any(m.startswith("compile helper done") for m in got["messages"]), got["messages"]
    for module in ("combine", "background", "two_profile"):
        assert f"atm_step.core.{module}" not in got["compiled"], got


def test_first_run_loads_the_image_stage_kernels_the_helper_compiled(tmp_path):
    got = _run_caller(tmp_path, "1")
    assert got["fitted"] == 3
    assert any(m.startswith("compile helper done") for m in got["messages"]), got["messages"]
    # the caller compiled the spline fits and nothing of the image stages
    assert "atm_step.core.trace_fit" in got["compiled"]
    for module in ("combine", "background", "two_profile"):
        assert f"atm_step.core.{module}" not in got["compiled"], got


def test_a_first_run_compiles_one_version_of_each_kernel_and_nothing_at_import(tmp_path):
    """Every kernel is compiled once, for the types the core passes, and only when first
    used: importing the core compiles nothing, so that the helper starts at once and
    neither process compiles kernels it does not run. Numba compiles a kernel again for
    each literal value a compiled caller passes (or that a variable of the caller is
    first typed as), so the callers pass typed constants (``np.int64(-1)``). Without
    the helper, this one process compiles every kernel of the call."""
    got = _run_caller(tmp_path, "0")
    assert got["fitted"] == 3
    assert got["compiled_at_import"] == 0
    assert got["several_versions"] == {}
    for module in ("trace_fit", "combine", "linear", "two_profile", "background"):
        assert f"atm_step.core.{module}" in got["compiled"], got["compiled"]


# Which top-level kernels of the image-stage modules have machine code in the cache.
_CACHED = textwrap.dedent("""
    import json
    from numba.core.dispatcher import Dispatcher
    from atm_step.core import background, combine, precompile, two_profile
    cached = {}
    for module in (background, combine, two_profile):
        for name, obj in vars(module).items():
            if (isinstance(obj, Dispatcher) and obj.py_func.__module__ == module.__name__
                    and not obj.targetoptions.get("no_cpython_wrapper")):
                cached[module.__name__.rsplit(".", 1)[1] + "." + name] = (
                    precompile.kernel_is_cached(obj))
    print(json.dumps(cached))
""")


@pytest.mark.parametrize("preset", ["nirspec_ifu", "miri_mrs"])
def test_the_helper_caches_every_image_stage_kernel_the_preset_uses(tmp_path, preset):
    """Also the kernels that only some data reach (the profile that fills a hole in a
    compact-source band): otherwise the caller compiles them itself, after waiting
    for the helper (0.3 s of a first MIRI MRS run)."""
    params = getattr(FitParameters, preset)()
    spec = {"parameters": dataclasses.asdict(params), "oversample": 3.0, "err": True,
            "variances": 3, "psf_optimal": False, "slope_limit": 0.1, "alpha_os": True}
    root = os.path.dirname(os.path.dirname(os.path.dirname(precompile.__file__)))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba_cache"), PYTHONPATH=root)
    env[precompile.ENV_SWITCH] = "0"
    subprocess.run([sys.executable, "-P", "-m", "atm_step.core.precompile", json.dumps(spec)],
                   env=env, capture_output=True, timeout=600, check=True)
    out = subprocess.run([sys.executable, "-P", "-c", _CACHED], env=env, capture_output=True,
                         text=True, timeout=600, check=True)
    cached = json.loads(out.stdout.strip().splitlines()[-1])
    used = {name for name in cached if params.two_profiles or not name.startswith("two_profile.")}
    assert "combine._mean_profile" in used and "background._fit_columns" in used
    assert {name for name in used if cached[name] is not True} == set(), cached


def test_helper_is_decided_once_and_started_only_on_a_cold_cache(monkeypatch):
    started = []

    class FakePopen:
        pid = 1

        def __init__(self, args, **kwargs):
            started.append((args, kwargs["env"]))

    monkeypatch.setattr(precompile.subprocess, "Popen", FakePopen)
    monkeypatch.setattr(precompile, "_decided", False)
    monkeypatch.setattr(precompile, "_enabled", lambda: True)
    kw = dict(oversample=2, err=None, variances={"var_rnoise": 0}, psf_optimal=False,
              slope_limit=0.1, alpha_os=None)
    looked = []
    monkeypatch.setattr(precompile, "image_stage_cache_is_cold", lambda: looked.append(1))
    assert precompile.start(FitParameters(), **kw) is None and started == []
    # a warm cache is looked at once: later calls in the process do not read it again
    assert precompile.start(FitParameters(), **kw) is None and looked == [1]
    monkeypatch.setattr(precompile, "_decided", False)
    monkeypatch.setattr(precompile, "image_stage_cache_is_cold", lambda: True)
    helper = precompile.start(FitParameters.nirspec_ifu("NRS1"), **kw)
    assert helper is not None and len(started) == 1
    args, env = started[0]
    spec = json.loads(args[-1])
    assert spec["oversample"] == 2.0 and spec["variances"] == 1 and spec["err"] is False
    assert FitParameters(**spec["parameters"]) == FitParameters.nirspec_ifu("NRS1")
    assert env[precompile.ENV_SWITCH] == "0"  # a helper never starts a helper
    assert precompile.start(FitParameters(), **kw) is None and len(started) == 1
    helper._close_output()


@pytest.mark.parametrize("value", ["0", "off", "False"])
def test_switched_off_by_the_environment(monkeypatch, value):
    monkeypatch.setenv(precompile.ENV_SWITCH, value)
    assert not precompile._enabled()


def test_a_failed_or_stuck_helper_is_only_waited_for(tmp_path):
    def helper(code):
        out = open(tmp_path / "out", "w+b")  # noqa: SIM115 - the helper owns it
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT)
        return precompile.CompileHelper(proc, out, 0.0)

    assert helper("raise SystemExit(3)").join() == 3
    stuck = helper("import time; time.sleep(60)")
    assert stuck.join(timeout=0.5) is None and stuck.process.poll() is not None


def test_the_helpers_work_gives_a_model_of_its_scene(monkeypatch):
    # the helper's scene and options make a real call: fitted slices, a band, and the
    # same image as compiled fits give (the fits differ only in the fixed penalty and
    # the absence of rejection passes);
    # its spline fits run the kernels' Python forms, which compile nothing
    kinds = []
    run_regions = trace_fit._run_regions

    def spy(*args):
        kinds.append((type(trace_fit._fit_columns), type(bspline.basis)))
        return run_regions(*args)

    monkeypatch.setattr(trace_fit, "_run_regions", spy)
    spec = {"parameters": dataclasses.asdict(FitParameters.nirspec_ifu("NRS1")), "oversample": 3.0,
            "err": True, "variances": 0, "psf_optimal": False, "slope_limit": 0.1,
            "alpha_os": False}
    res = precompile.run_helper(spec)
    helper_kinds = list(kinds)
    flux, alpha, regions, err = precompile._synthetic_scene()
    params = FitParameters.nirspec_ifu("NRS1").with_overrides(penalty=1e-3, max_iter=1)
    ref = adaptive_trace_model(flux, alpha, regions, err=err, oversample=3, fit_threshold=0,
                               slope_limit=0.1, parameters=params)
    assert helper_kinds and all(k == (types.FunctionType,) * 2 for k in helper_kinds)
    assert isinstance(trace_fit._fit_columns, Dispatcher)  # restored afterwards
    assert res.n_fitted == 3 and res.n_band_rows.max() > 0
    np.testing.assert_allclose(res.flux, ref.flux, rtol=1e-9, atol=1e-9, equal_nan=True)

