"""Benchmark workers: each measurement runs in its own process.

Invoked by ``run_benchmarks.py`` as ``python benchmarks/workers.py '<json spec>'``;
prints one JSON line prefixed with ``RESULT `` on stdout. Every worker reports wall
times (``time.perf_counter``), a per-stage breakdown, the output shape and its peak
resident memory: the kernel's high-water mark is reset (``/proc/self/clear_refs``)
once the inputs are loaded, so ``peak_mb`` is the peak RSS reached while the
implementation ran and ``peak_delta_mb`` that peak minus the RSS before it started.

Stage timing wraps module-level functions of each implementation (ours:
``atm_step.core.*`` and the mode adapters; jwst: ``jwst.adaptive_trace_model.trace_model``)
in this process only; no code of either implementation is changed or copied.
"""

import json
import os
import resource
import sys
import time
import warnings
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("ATM_STEP_TEST_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("STPIPE_DISABLE_CRDS_STEPPARS", "True")
os.environ.setdefault("CRDS_SERVER_URL", "https://jwst-crds.invalid")


# ----------------------------------------------------------------------------- memory
def _status_kb(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class PeakMemory:
    """Peak RSS of this process from ``reset()`` on (MB)."""

    def reset(self):
        self.base_kb = _status_kb("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.exact = True
        except OSError:
            self.exact = False
        return self

    def report(self):
        hwm = _status_kb("VmHWM")
        return {
            "peak_mb": hwm / 1024.0,
            "peak_delta_mb": (hwm - self.base_kb) / 1024.0,
            "base_mb": self.base_kb / 1024.0,
            "peak_exact": self.exact,
        }


# ----------------------------------------------------------------------------- stages
class StageTimer:
    """Attribute wall time to named stages by wrapping functions (outermost wins)."""

    def __init__(self):
        self.times = defaultdict(float)
        self.depth = 0
        self._undo = []

    def wrap(self, owner, name, stage):
        original = getattr(owner, name)
        timer = self

        def wrapper(*args, **kwargs):
            if timer.depth:
                return original(*args, **kwargs)
            timer.depth += 1
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timer.times[stage] += time.perf_counter() - t0
                timer.depth -= 1

        setattr(owner, name, wrapper)
        self._undo.append((owner, name, original))
        return original

    def clear(self):
        self.times = defaultdict(float)

    @contextmanager
    def stage(self, stage):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.times[stage] += time.perf_counter() - t0


def _quiet_logs():
    import logging

    for name in ("stpipe", "jwst", "atm_step", "stcal", "py.warnings", "CRDS", "crds"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.simplefilter("ignore")


def _load_scene(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _local_crds():
    """Answer stpipe's CRDS context query locally (see the shared data README)."""
    try:
        from stpipe import crds_client

        crds_client.get_context_used = lambda observatory: "jwst_0000.pmap"
    except Exception:  # noqa: BLE001 - optional
        pass


# ----------------------------------------------------------------------------- ours, arrays
def _ours_core_stages(timer):
    """Wrap the core's stage functions; return the names absent from this code.

    Tolerant of older or newer versions of the core (the baseline measurement runs
    this on an earlier commit's ``atm_step``): a module or function that does not
    exist is skipped and named in the result, its time falls into "other".
    """
    import importlib

    missing = []
    for module, name, stage in (
        ("stats", "image_statistics", "statistics"),
        ("stats", "regions_over_threshold", "statistics"),
        ("trace_fit", "fit_regions", "spline fits"),
        ("linear", "linear_oversample", "oversampling"),
        ("combine", "combine_models", "oversampling"),
        ("errors", "oversample_errors", "errors/DQ/WCS"),
    ):
        try:
            owner = importlib.import_module(f"atm_step.core.{module}")
        except ImportError:
            owner = None
        if owner is None or not hasattr(owner, name):
            missing.append(f"{module}.{name}")
            continue
        timer.wrap(owner, name, stage)
    return missing


_FORCED = {"k": None, "installed": False}


def _force_fitted(k):
    """Make the fit threshold pass for exactly ``k`` regions (spread over the detector)."""
    from atm_step.core import stats

    _FORCED["k"] = k
    if _FORCED["installed"]:
        return
    _FORCED["installed"] = True
    original = stats.regions_over_threshold

    def forced(flux, alpha, regions, ids, *args, **kwargs):
        mask = original(flux, alpha, regions, ids, *args, **kwargs)  # keep its cost
        k = _FORCED["k"]
        if k is None:
            return mask
        mask = np.zeros(len(ids), dtype=bool)
        if k > 0:
            mask[np.unique(np.linspace(0, len(ids) - 1, k).round().astype(int))] = True
        return mask

    stats.regions_over_threshold = forced


def ours_core(spec):
    """Our core on a saved scene: one warm-up call, then best of ``repeats``.

    ``tuning``: `FitParameters` overrides, every one applied. ``tuning_if_present``:
    overrides applied only where this version of `FitParameters` has the field (the
    result lists the ones applied and the ones absent). The result names the
    ``atm_step`` package measured (``module``), so a baseline run can be checked.
    """
    import dataclasses

    t_import = time.perf_counter()
    import atm_step
    from atm_step.core import FitParameters, adaptive_trace_model

    t_import = time.perf_counter() - t_import
    scenes = [_load_scene(p) for p in spec["scenes"]]
    mem = PeakMemory()
    timer = StageTimer()
    unwrapped = _ours_core_stages(timer)
    if spec.get("force_fitted") is not None:
        _force_fitted(int(spec["force_fitted"]))
    params = FitParameters.nirspec_ifu("NRS1")
    known = {f.name for f in dataclasses.fields(FitParameters)}
    optional = spec.get("tuning_if_present", {})
    tuning = {k: v for k, v in optional.items() if k in known}
    tuning.update(spec.get("tuning", {}))
    kwargs = dict(
        oversample=spec["oversample"],
        fit_threshold=spec["fit_threshold"],
        slope_limit=spec["slope_limit"],
        parameters=params,
        maximum_cores=spec.get("cores", 1),
        **tuning,
    )

    def run_all():
        out = None
        for s in scenes:
            out = adaptive_trace_model(s["flux"], s["alpha"], s["regions"], err=s["err"], **kwargs)
        return out

    t0 = time.perf_counter()
    run_all()
    first = time.perf_counter() - t0
    mem.reset()
    best, best_stages, result, best_cpu = np.inf, None, None, (np.nan, np.nan)
    for _ in range(spec.get("repeats", 3)):
        timer.clear()
        result = None  # drop the previous result: the memory peak is one run's
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        result = run_all()
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        if wall < best:
            best, best_stages = wall, dict(timer.times)
            best_cpu = (r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime)
    best_stages["other"] = max(best - sum(best_stages.values()), 0.0)
    return {
        "wall": best,
        "user_cpu": best_cpu[0],
        "system_cpu": best_cpu[1],
        "first_call": first,
        "import": t_import,
        "stages": best_stages,
        "n_fitted": result.n_fitted,
        "n_regions": int(result.region_ids.size),
        "shape": list(result.flux.shape),
        "module": str(Path(atm_step.__file__).resolve().parent),
        "tuning_applied": tuning,
        "tuning_absent": sorted(set(optional) - known),
        "stages_unwrapped": unwrapped,
        **mem.report(),
    }


class JwstFitCap:
    """
    Let jwst's ``fit_2d_spline_trace`` really fit only the first ``max_fit`` regions
    that pass jwst's own threshold test (the others get no splines), and extrapolate.

    ``oversample_flux`` calls are recorded so that the extra oversampling cost of a
    fitted region over a linear-only one can be measured afterwards on subsets.
    """

    def __init__(self, tm, max_fit):
        self.tm = tm
        self.max_fit = max_fit
        self.passed = 0
        self.fitted = 0
        self.fit_time = 0.0
        self.os_call = None
        original = tm.fit_2d_spline_trace
        original_os = tm.oversample_flux
        cap = self

        def capped_fit(*args, **kwargs):
            cap.passed += 1
            if cap.max_fit is not None and cap.fitted >= cap.max_fit:
                return {}
            t0 = time.perf_counter()
            out = original(*args, **kwargs)
            cap.fit_time += time.perf_counter() - t0
            cap.fitted += 1
            return out

        def recording_os(*args, **kwargs):
            cap.os_call = (args, kwargs)
            return original_os(*args, **kwargs)

        self._original_os = original_os
        tm.fit_2d_spline_trace = capped_fit
        tm.oversample_flux = recording_os

    @property
    def extrapolated(self):
        return self.fitted < self.passed

    @property
    def per_slice_fit(self):
        return self.fit_time / self.fitted if self.fitted else 0.0

    def oversample_extra_per_slice(self, trace_image_time=None):
        """Measured extra oversampling cost of one fitted region (s)."""
        if self.os_call is None:
            return (trace_image_time or 0.0) / max(self.fitted, 1)
        args, kwargs = self.os_call
        flux, alpha, regions, splines = args[:4]
        ids = np.unique(regions[regions > 0])
        fitted_ids = [r for r in ids if splines.get(r)]
        other_ids = [r for r in ids if not splines.get(r)][: len(fitted_ids)]

        def cost(sel):
            sub = np.where(np.isin(regions, sel), regions, 0)
            t0 = time.perf_counter()
            self._original_os(flux, alpha, sub, splines, *args[4:], **kwargs)
            return time.perf_counter() - t0

        if not fitted_ids:
            return 0.0
        return max((cost(fitted_ids) - cost(other_ids)) / len(fitted_ids), 0.0)

    def extrapolate(self, stages):
        """Stage times with the missing regions added; also returns the details."""
        est = dict(stages)
        info = {"extrapolated": self.extrapolated, "n_fitted": self.passed,
                "n_fitted_really": self.fitted, "fit_per_slice": self.per_slice_fit,
                "oversample_extra_per_slice": None}
        if self.extrapolated:
            missing = self.passed - self.fitted
            extra = self.oversample_extra_per_slice(stages.get("oversampling", 0.0))
            est["spline fits"] = est.get("spline fits", 0.0) + missing * self.per_slice_fit
            est["oversampling"] = est.get("oversampling", 0.0) + missing * extra
            info["oversample_extra_per_slice"] = extra
        return est, info


# ----------------------------------------------------------------------------- jwst, arrays
def jwst_core(spec):
    """
    jwst 3.0's array functions on a saved scene, as ``fit_and_oversample`` chains them.

    Statistics (``scs``) and thresholds as ``fit_and_oversample`` computes them for
    NRS_IFU; ``fit_all_regions`` with ``_set_fit_kwargs("NRS_IFU", "NRS1", None, nx)``;
    ``oversample_flux`` (N > 1) or ``_trace_image`` (N = 1); ``linear_oversample`` of
    the errors and ``_inflate_error``. The along-slice coordinate at the oversampled
    rows is given (the same linear interpolation our core computes itself).

    With ``max_fit = K``, only the first K regions that pass jwst's own threshold test
    are really fitted (``fit_2d_spline_trace`` returns no splines for the others); the
    fit and oversampling times are then extrapolated to all passing regions from the
    measured per-slice costs and reported as ``extrapolated``.
    """
    from jwst.adaptive_trace_model import trace_model as tm

    from atm_step.core import grid, linear

    _quiet_logs()
    s = _load_scene(spec["scenes"][0])
    flux = s["flux"].astype(np.float64)
    err = s["err"].astype(np.float64)
    regions = s["regions"].astype(np.int32)
    alpha = np.where(regions > 0, s["alpha"], np.nan)
    ny, nx = flux.shape
    N = float(spec["oversample"])
    fit_threshold = spec["fit_threshold"]
    slope_limit = spec["slope_limit"]
    max_fit = spec.get("max_fit")

    cap = JwstFitCap(tm, max_fit)
    mem = PeakMemory().reset()
    # the oversampled along-slice coordinate (jwst: from the WCS): counted in the
    # memory peak, not in the time
    y_os = grid.oversampled_rows(ny, N)
    near = grid.nearest_native_row(ny, N)
    alpha_os = linear.linear_oversample(
        alpha, regions.astype(np.int64), y_os, near, preserve_nan=False, extrapolate=True
    )
    st = StageTimer()
    t_start = time.perf_counter()
    with st.stage("statistics"):
        mean, _, rms = tm.scs(flux[regions > 0])
        mean = mean if np.isfinite(mean) else 0.0
        rms = rms if np.isfinite(rms) else 0.0
        if mean < 0:
            flux = flux - mean
            mean = 0.0
    fit_kwargs = tm._set_fit_kwargs("NRS_IFU", "NRS1", None, nx)
    ids = np.unique(regions[regions > 0])
    if fit_threshold > 0:
        fit_kwargs["peak_threshold"] = dict.fromkeys(ids, mean + fit_threshold * rms)
    else:
        fit_kwargs["snr_threshold"] = None
    with st.stage("spline fits"):
        splines = tm.fit_all_regions(flux, err, alpha, regions, **fit_kwargs)
    pad = tm._set_oversample_kwargs("NRS_IFU", "NRS1")
    with st.stage("oversampling"):
        if N == 1:
            tm._trace_image(flux.shape, splines, regions, alpha, slope_limit=slope_limit, pad=2)
            shape = list(flux.shape)
        else:
            out = tm.oversample_flux(
                flux, alpha, regions, splines, N, alpha_os, slope_limit=slope_limit, **pad
            )
            shape = list(out[0].shape)
    with st.stage("errors/DQ/WCS"):
        if N != 1:
            err_os = tm.linear_oversample(err, regions, N, pad["require_ngood"], 0, False)
            tm._inflate_error(err_os, "err", N)
    wall = time.perf_counter() - t_start
    stages = dict(st.times)
    est, info = cap.extrapolate(stages)
    return {
        "wall": sum(est.values()),
        "wall_measured": wall,
        "stages": est,
        "stages_measured": stages,
        **info,
        "n_regions": int(ids.size),
        "shape": shape,
        **mem.report(),
    }


# ----------------------------------------------------------------------------- steps
def _miri_input(workdir):
    """A MIRI MRS ch3+4 LONG exposure with a point source, saved once as FITS."""
    path = Path(workdir) / "miri_mrs_point_source_cal.fits"
    if not path.is_file():
        from atm_step.validation.miri import inject_point_source, miri_mrs_model

        model = miri_mrs_model(DATA_DIR, workdir)
        inject_point_source(model, alpha0=0.3, beta0=0.0)
        model.save(str(path))
        model.close()
    return path


def _in_pipeline(step_cls, N):
    """The step as a pipeline holds it: its parent is set, so stpipe makes no copy of
    the input (``prepare_output``), as in ``calwebb_spec2``."""
    from jwst.stpipe import Pipeline

    class OneStepPipeline(Pipeline):
        """A pipeline of one step, to run the step as pipelines do."""

        step_defs = {"atm": step_cls}

        def process(self, data):
            return self.atm.run(data)

    return OneStepPipeline(steps={"atm": {"oversample": N, "skip": False}}).atm


def step_run(spec):
    """
    One step end to end on a file: open (I/O), run, save (I/O); stage breakdown.

    ``how = "call"``: ``Step.call(model)`` (stpipe's standalone call: jwst's step
    deep-copies the input there). ``how = "pipeline"``: ``step.run(model)`` on a step
    whose parent is a pipeline, as in ``calwebb_spec2`` (no copy by either step).
    """
    _quiet_logs()
    _local_crds()
    from stdatamodels.jwst import datamodels

    impl = spec["impl"]
    path = spec["path"]
    N = float(spec["oversample"])
    timer = StageTimer()
    if impl == "jwst":
        import jwst.adaptive_trace_model.adaptive_trace_model_step as jstep
        from jwst.adaptive_trace_model import trace_model as tm

        timer.wrap(tm, "scs", "statistics")
        timer.wrap(tm, "fit_all_regions", "spline fits")
        timer.wrap(tm, "oversample_flux", "oversampling")
        timer.wrap(tm, "_trace_image", "oversampling")
        timer.wrap(tm, "linear_oversample", "errors/DQ/WCS")
        inner = {"t": 0.0}
        original = jstep.fit_and_oversample

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                inner["t"] += time.perf_counter() - t0

        jstep.fit_and_oversample = timed
        step_cls = jstep.AdaptiveTraceModelStep
        repeats = 1
        cap = JwstFitCap(tm, spec.get("max_fit"))
    else:
        import atm_step.modes.base as mbase
        import atm_step.modes.writeback as wb
        from atm_step import AdaptiveTraceModelStep as step_cls

        _ours_core_stages(timer)
        timer.wrap(mbase.ModeAdapter, "core_inputs", "errors/DQ/WCS")
        timer.wrap(wb, "apply_result", "errors/DQ/WCS")
        inner = None
        cap = None
        repeats = spec.get("repeats", 3)
        # warm-up (JIT from the cache), not timed
        with datamodels.open(path) as m:
            step_cls.call(m, oversample=N, skip=False).close()
    how = spec.get("how", "call")
    if how == "pipeline":
        step = _in_pipeline(step_cls, N)

        def run_step(model):
            return step.run(model)
    else:

        def run_step(model):
            return step_cls.call(model, oversample=N, skip=False)

    out_path = Path(spec["workdir"]) / f"{impl}_N{N:g}_{Path(path).name}"
    mem = PeakMemory().reset()
    best = None
    for _ in range(repeats):
        timer.clear()
        if inner:
            inner["t"] = 0.0
        t0 = time.perf_counter()
        with timer.stage("I/O"):
            model = datamodels.open(path)
        t1 = time.perf_counter()
        result = run_step(model)
        t2 = time.perf_counter()
        with timer.stage("I/O"):
            result.save(str(out_path))
        t3 = time.perf_counter()
        stages = dict(timer.times)
        if inner is not None:
            known = sum(v for k, v in stages.items() if k not in ("I/O", "errors/DQ/WCS"))
            stages["errors/DQ/WCS"] = stages.get("errors/DQ/WCS", 0.0) + max(
                inner["t"] - known - stages.get("errors/DQ/WCS", 0.0), 0.0
            )
        run = {
            "wall": t2 - t1,
            "wall_with_io": t3 - t0,
            "stages": stages,
            "shape": list(result.data.shape),
            "status": str(result.meta.cal_step.adaptive_trace_model),
        }
        run["stages"]["other"] = max(
            run["wall_with_io"] - sum(v for v in stages.values()), 0.0
        )
        if best is None or run["wall"] < best["wall"]:
            best = run
        if result is not model:
            result.close()
        model.close()
        result = model = None  # the memory peak is one run's
    best.update(mem.report())
    if cap is not None:
        est, info = cap.extrapolate(best["stages"])
        best["wall"] += sum(est.values()) - sum(best["stages"].values())
        best["stages"] = est
        best.update(info)
    return best


def strun_run(spec):
    """
    ``strun`` end to end in a fresh process (file in, file out), then the floor of
    that: a fresh process that only imports stpipe, jwst's Step machinery and the
    step's module, opens the input (reading every array) and saves the product
    ``strun`` wrote. Peak memory is the ``strun`` process's maximum resident size;
    the floor's is that process's (``floor["peak_mb"]``). For our step a third fresh
    process, with the floor's imports and no data, measures Numba's fixed memory
    (``floor["numba_mb"]``): its resident size before ``import numba`` and after one
    of our cached kernels has run (the import and the JIT engine every process that
    runs a kernel pays).
    """
    import subprocess

    impl = spec["impl"]
    path = Path(spec["path"])
    N = float(spec["oversample"])
    outdir = Path(spec["workdir"]) / f"strun_{impl}_N{N:g}"
    outdir.mkdir(parents=True, exist_ok=True)
    cls = ("atm_step.AdaptiveTraceModelStep" if impl == "ours"
           else "jwst.adaptive_trace_model.AdaptiveTraceModelStep")
    exe = str(Path(sys.executable).with_name("strun"))
    cmd = [exe, cls, str(path), f"--oversample={N:g}", "--skip=False",
           f"--output_dir={outdir}"]
    env = dict(os.environ, STPIPE_DISABLE_CRDS_STEPPARS="True")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    products = sorted(outdir.glob("*.fits"), key=lambda p: p.stat().st_mtime)
    if proc.returncode != 0 or not products:
        raise RuntimeError(f"strun failed ({proc.returncode}): {proc.stderr[-2000:]}")
    module = "atm_step.step" if impl == "ours" else \
        "jwst.adaptive_trace_model.adaptive_trace_model_step"
    # the subprocesses read their memory with this module's `_status_kb` (they run in
    # this folder, which `python -c` puts first on the module path)
    status_code = """
from workers import _status_kb
"""
    here = str(Path(__file__).resolve().parent)
    floor_code = f"""
import time, json
t0 = time.perf_counter()
import stpipe, jwst.stpipe
from stdatamodels.jwst import datamodels
import {module}
t1 = time.perf_counter()
m = datamodels.open({str(path)!r})
for key, val in m.to_flat_dict(include_arrays=True).items():
    getattr(val, "shape", None)
t2 = time.perf_counter()
out = datamodels.open({str(products[-1])!r})
_ = out.data.sum()
t3 = time.perf_counter()
out.save({str(outdir / "floor_copy.fits")!r})
t4 = time.perf_counter()
{status_code}
print("FLOOR " + json.dumps({{"import": t1 - t0, "open": t2 - t1, "save": t4 - t3,
                             "peak_mb": _status_kb("VmHWM") / 1024.0}}))
"""
    # Numba's fixed memory, in a process of its own that opens no data (freed data
    # buffers would otherwise absorb part of it): the floor's imports, then numba and
    # one of our cached kernels
    numba_code = f"""
import json
import numpy as np
import stpipe, jwst.stpipe
from stdatamodels.jwst import datamodels
import atm_step.step
{status_code}
rss0 = _status_kb("VmRSS")
import numba
from atm_step.core import grid, linear
linear.linear_oversample(np.ones((8, 4)), np.ones((8, 4), dtype=np.int64),
                         grid.oversampled_rows(8, 3.0), grid.nearest_native_row(8, 3.0))
print("NUMBA " + json.dumps({{"numba_mb": (_status_kb("VmRSS") - rss0) / 1024.0}}))
"""
    t0 = time.perf_counter()
    fl = subprocess.run([sys.executable, "-c", floor_code], capture_output=True, text=True,
                        env=env, cwd=here)
    floor_wall = time.perf_counter() - t0
    lines = fl.stdout.splitlines()
    if impl == "ours":
        lines += subprocess.run([sys.executable, "-c", numba_code], capture_output=True,
                                text=True, env=env, cwd=here, check=False).stdout.splitlines()
    floor = {}
    for line in lines:
        if line.startswith(("FLOOR ", "NUMBA ")):
            floor.update(json.loads(line[6:]))
    floor["process_wall"] = floor_wall
    (outdir / "floor_copy.fits").unlink(missing_ok=True)
    return {"wall": wall, "peak_mb": peak_mb, "floor": floor, "command": " ".join(cmd[1:])}


def ours_step_core(spec):
    """Our core alone on the arrays our MIRI/MOS adapter hands it (best of repeats)."""
    _quiet_logs()
    from stdatamodels.jwst import datamodels

    from atm_step.core import adaptive_trace_model
    from atm_step.modes import adapters_for

    N = float(spec["oversample"])
    with datamodels.open(spec["path"]) as model:
        inputs = [a.core_inputs(N) for a in adapters_for(model)]

    def run():
        out = None
        for inp in inputs:
            out = adaptive_trace_model(
                inp.flux, inp.alpha, inp.regions, err=inp.err, variances=inp.variances,
                oversample=N, pad=inp.pad, alpha_os=inp.alpha_os,
                channel_groups=inp.channel_groups, parameters=inp.parameters,
            )
        return out

    run()
    best = np.inf
    for _ in range(spec.get("repeats", 3)):
        t0 = time.perf_counter()
        res = run()
        best = min(best, time.perf_counter() - t0)
    return {"wall": best, "n_fitted": res.n_fitted, "n_regions": int(res.region_ids.size)}


def make_miri(spec):
    """Build the MIRI MRS input file (once)."""
    _quiet_logs()
    return {"path": str(_miri_input(spec["workdir"]))}


def make_ifu(spec):
    """Build a NIRSpec IFU file with the mock WCS from a saved scene (once)."""
    _quiet_logs()
    path = Path(spec["workdir"]) / f"nrs_ifu_mock_{Path(spec['scene']).stem}_cal.fits"
    if not path.is_file():
        from atm_step.simulate import make_scene
        from atm_step.simulate.to_datamodel import scene_to_ifu_model

        sc = make_scene(spec["name"], nx=spec["nx"], ny=spec["ny"], seed=spec.get("seed", 1))
        scene_to_ifu_model(sc, filename=path.name).save(str(path))
    return {"path": str(path)}


# ----------------------------------------------------------------------------- JIT
def jit_start(spec):
    """Import, first call and steady call of our core in a fresh process."""
    t0 = time.perf_counter()
    from atm_step.core import FitParameters, adaptive_trace_model

    t_import = time.perf_counter() - t0
    s = _load_scene(spec["scenes"][0])
    kw = dict(
        err=s["err"], variances={"var_poisson": s["err"] ** 2}, oversample=3.0,
        fit_threshold=0.0, slope_limit=0.1, parameters=FitParameters.nirspec_ifu("NRS1"),
    )
    t0 = time.perf_counter()
    adaptive_trace_model(s["flux"], s["alpha"], s["regions"], **kw)
    first = time.perf_counter() - t0
    steady = np.inf
    for _ in range(2):
        t0 = time.perf_counter()
        adaptive_trace_model(s["flux"], s["alpha"], s["regions"], **kw)
        steady = min(steady, time.perf_counter() - t0)
    return {"import": t_import, "first": first, "steady": steady,
            "compile": max(first - steady, 0.0)}


def ours_sweep(spec):
    """Several configurations of our core in one process (scaling curves)."""
    out = []
    for job in spec["jobs"]:
        job = {**spec.get("common", {}), **job}
        k = job.get("force_fitted")
        _force_fitted(k)
        res = ours_core({**job, "force_fitted": None})
        out.append({**job, **res})
    return {"runs": out}


WORKERS = {
    "ours_sweep": ours_sweep,
    "ours_core": ours_core,
    "jwst_core": jwst_core,
    "step_run": step_run,
    "ours_step_core": ours_step_core,
    "make_miri": make_miri,
    "make_ifu": make_ifu,
    "strun_run": strun_run,
    "jit_start": jit_start,
}

if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    out = WORKERS[job["kind"]](job)
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")
