"""
A first run's compilation, shared with a helper process.

With an empty Numba cache the first call of `atm_step.core.adaptive_trace_model`
compiles every kernel it uses, one after another, under Numba's compiler lock: about
15 s on a 2-core machine (2026-12-02), of which the spline-fit kernels
(`atm_step.core.trace_fit`) are a little over half and the kernels of the image stages
after them (background, combination, errors) the rest. Those two groups are
independent, so when the cache is cold the caller starts one helper process
(`start`) that compiles the image-stage kernels into the same on-disk cache while
the caller compiles the spline fits; the caller then waits
for the helper (`CompileHelper.join`) before the image stages, and loads their machine
code from the cache instead of compiling it.

The helper runs the whole core on a small synthetic image with the options of the
caller's call (same oversampling, errors, presets), so that every image-stage kernel is
compiled for the argument types the caller will pass; its spline fit runs the kernels'
pure-Python forms (``Dispatcher.py_func``), which compiles none of them. Nothing is
shared but the cache: a helper that fails or is slow costs the caller nothing but the
wait, which is bounded, after which the caller compiles what is missing itself.

Off with ``ATM_STEP_COMPILE_HELPER=0``, and never started on one CPU, with Numba's JIT
disabled, when the cache already holds the image-stage kernels, or after a process's
first call. Run as
``python -m atm_step.core.precompile SPEC`` (the helper's entry point; ``SPEC`` is
JSON, see `start`).
"""

import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager

import numpy as np

from atm_step.core.parameters import FitParameters

log = logging.getLogger(__name__)

__all__ = ["CompileHelper", "image_stage_cache_is_cold", "kernel_is_cached", "run_helper",
           "start"]

#: environment switch: "0" (or "false", "no", "off") turns the helper off
ENV_SWITCH = "ATM_STEP_COMPILE_HELPER"
#: the longest the caller waits for the helper before compiling what is left itself, s
JOIN_TIMEOUT = 300.0

_lock = threading.Lock()
#: set by the first call in a process: whether to start a helper is decided once
_decided = False


def _enabled():
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if os.environ.get("NUMBA_DISABLE_JIT", "0").strip() not in ("", "0"):
        return False
    if "python" not in os.path.basename(sys.executable or "").lower():
        return False  # an embedding program: no interpreter to start
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return cpus >= 2


def kernel_is_cached(kernel):
    """
    Whether the on-disk Numba cache holds machine code of a compiled kernel.

    Parameters
    ----------
    kernel : numba.core.registry.CPUDispatcher
        A kernel of this package (``cache=True``).

    Returns
    -------
    bool or None
        True if its cache index lists a compiled version; False if the index is missing
        or was written for another version of the source (Numba would load nothing);
        None when the index cannot be inspected (caching off, or a Numba whose cache
        internals differ).
    """
    try:
        index = kernel._cache._cache_file._load_index()
    except Exception:  # noqa: BLE001 - Numba internals: any failure means "unknown"
        return None
    return len(index) > 0


def image_stage_cache_is_cold():
    """
    Whether the on-disk Numba cache lacks the image-stage kernels.

    Looks at the combination kernel (`atm_step.core.combine._combine_kernel`), which
    every oversampling call compiles after the spline fits (`kernel_is_cached`).

    Returns
    -------
    bool
        False also when the cache cannot be inspected, so that no helper is started.
    """
    from atm_step.core import combine

    return kernel_is_cached(combine._combine_kernel) is False


class CompileHelper:
    """
    A running helper process (`start`).

    Attributes
    ----------
    process : subprocess.Popen
    started : float
        `time.perf_counter` at start.
    """

    def __init__(self, process, output, started):
        self.process = process
        self._output = output
        self.started = started

    def join(self, timeout=JOIN_TIMEOUT):
        """
        Wait for the helper to finish; stop it after ``timeout`` seconds.

        Parameters
        ----------
        timeout : float
            Seconds to wait at most.

        Returns
        -------
        int or None
            The helper's exit status (0: its kernels are in the cache), or None if it
            was stopped. Never raises: a failed helper only means the caller compiles.
        """
        t0 = time.perf_counter()
        try:
            rc = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            log.info("compile helper still running after %.0f s: stopped; compiling here",
                     timeout)
            return None
        waited = time.perf_counter() - t0
        if rc == 0:
            log.info("compile helper done in %.1f s (waited %.1f s for it)",
                     time.perf_counter() - self.started, waited)
        else:
            log.info("compile helper failed (exit status %s); compiling here. Its output:\n%s",
                     rc, self._read_output())
        self._close_output()
        return rc

    def close(self):
        """Stop the helper if it still runs, and release its output file."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_output()

    def _read_output(self):
        try:
            self._output.seek(0)
            return self._output.read().decode(errors="replace")[-4000:]
        except (OSError, ValueError):
            return ""

    def _close_output(self):
        try:
            self._output.close()
        except OSError:
            pass


def start(params, *, oversample, err, variances, psf_optimal, slope_limit, alpha_os):
    """
    Start the helper process if this is a first run: the cache is cold and the helper
    is enabled. Decided once per process, at its first call (later calls find the
    kernels in memory or in the cache).

    Parameters
    ----------
    params : FitParameters
        The call's parameters (the helper compiles what they switch on).
    oversample : float
        Oversampling factor ``N`` of the call.
    err : ndarray or None
        The call's error image (only whether there is one matters).
    variances : dict or None
        The call's variance images (only their number matters).
    psf_optimal, slope_limit : bool, float
        As given to `adaptive_trace_model`.
    alpha_os : ndarray or None
        The call's oversampled alpha (only whether there is one matters).

    Returns
    -------
    CompileHelper or None
        None when no helper is started (see the module's notes); never raises.
    """
    global _decided
    with _lock:
        if _decided:
            return None
        _decided = True
        if not _enabled() or not image_stage_cache_is_cold():
            return None
    spec = {
        "parameters": dataclasses.asdict(params),
        "oversample": float(oversample),
        "err": err is not None,
        "variances": len(variances or {}),
        "psf_optimal": bool(psf_optimal),
        "slope_limit": float(slope_limit),
        "alpha_os": alpha_os is not None,
    }
    env = dict(os.environ)
    env[ENV_SWITCH] = "0"
    # the helper must import this very package (its source paths key the cache): first
    # on its path, and ``-P`` keeps the working directory off it (``-m`` would put it
    # first, and a source checkout there would shadow the installed package)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    try:
        output = tempfile.TemporaryFile()
        process = subprocess.Popen(
            [sys.executable, "-P", "-m", "atm_step.core.precompile", json.dumps(spec)],
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=env,
        )
    except OSError as exc:
        log.info("compile helper not started (%s); compiling here", exc)
        return None
    log.info("first run (empty Numba cache): compiling, with a helper process "
             "(pid %d) for the image-stage kernels; later runs load them from the cache",
             process.pid)
    return CompileHelper(process, output, time.perf_counter())


def _synthetic_scene():
    """
    Three 30-row slices of 32 columns: a compact source with extended emission under it
    in the first (which sets off the compact-source band and the background model), a
    fainter one in the second, two sources whose flux ratio changes from column to
    column in the third (the two-profile model), a tilted trace and two missing pixels.

    Returns
    -------
    flux, alpha, regions, err : ndarray, shape (96, 32)
        Flux (MJy/sr-like), alpha (arcsec, NaN outside slices), region map, errors.
    """
    ny, nx = 96, 32
    regions = np.zeros((ny, nx), dtype=np.int64)
    regions[1:31] = 1
    regions[33:63] = 2
    regions[65:95] = 3
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    # the third slice's trace is steeper: its 32 columns then sample every phase
    centre = np.choose(np.clip(regions - 1, 0, 2), (16.0 + xx / 80.0, 48.0 + xx / 80.0,
                                                    78.0 + xx / 10.0))
    alpha = np.where(regions > 0, 0.1 * (yy - centre), np.nan)
    rng = np.random.default_rng(1)
    compact = np.exp(-0.5 * (alpha / 0.08) ** 2) * np.where(regions == 1, 100.0, 10.0)
    extended = 5.0 * np.exp(-0.5 * (alpha / 0.5) ** 2)
    flux = np.where((regions > 0) & (regions < 3), 1.0 + compact + extended, 0.0)
    # the third slice: two stars 0.5" apart, their ratio changing along the columns
    ratio = 0.6 + 0.1 * np.sin(0.9 * xx)
    pair = (np.exp(-0.5 * ((alpha + 0.25) / 0.09) ** 2)
            + ratio * np.exp(-0.5 * ((alpha - 0.25) / 0.09) ** 2))
    flux = np.where(regions == 3, 1.0 + 100.0 * pair, flux) + rng.normal(0.0, 0.1, (ny, nx))
    flux[15:17, 10] = np.nan
    return flux, alpha, regions, np.full((ny, nx), 0.1)


@contextmanager
def _spline_fits_in_python():
    """
    Within the block, `trace_fit.fit_regions` runs its kernels' pure-Python forms
    (compiling none of them) with a fixed roughness penalty and no rejection passes
    (GCV and the rejection sweeps are slow in Python, about 1 s of the helper's time on
    the helper's scene; the fit's output types do not depend on them). Only for the
    helper process: it swaps module globals of `atm_step.core.trace_fit` and
    `atm_step.core.bspline`.
    """
    from numba.core.dispatcher import Dispatcher

    from atm_step.core import bspline, trace_fit

    modules = (trace_fit, bspline)
    fit_regions = trace_fit.fit_regions
    compiled = [{k: v for k, v in vars(m).items() if isinstance(v, Dispatcher)} for m in modules]

    def python_fit(flux, alpha, regions, ids, alpha_os, near, params, **kwargs):
        for m, kernels in zip(modules, compiled, strict=True):
            vars(m).update({k: v.py_func for k, v in kernels.items()})
        try:
            params = dataclasses.replace(params, penalty=1e-3, max_iter=1)
            return fit_regions(flux, alpha, regions, ids, alpha_os, near, params, **kwargs)
        finally:
            for m, kernels in zip(modules, compiled, strict=True):
                vars(m).update(kernels)

    trace_fit.fit_regions = python_fit
    try:
        yield
    finally:
        trace_fit.fit_regions = fit_regions


def run_helper(spec):
    """
    The helper's work: the core on `_synthetic_scene` with the options in ``spec``,
    spline fits in pure Python, every other kernel compiled (and cached), and the
    image-stage kernels the scene may not reach.

    Parameters
    ----------
    spec : dict
        As `start` writes it: ``parameters`` (fields of `FitParameters`),
        ``oversample``, ``err``, ``variances``, ``psf_optimal``, ``slope_limit``,
        ``alpha_os``.

    Returns
    -------
    ATMResult
    """
    from atm_step.core import combine, grid
    from atm_step.core.api import adaptive_trace_model

    flux, alpha, regions, err = _synthetic_scene()
    # a kernel only some data reach: the profile that fills a hole in a compact-source
    # band (a blended core). `mean_profile` fixes its kernel's argument types, so any
    # call compiles the version every caller uses; here region 1 (rows 1-30, alpha
    # -1.5 to 1.4) in 64 bins of 0.05 from -1.6
    combine.mean_profile(flux, alpha, regions, 1, 1, 30, -1.6, 0.05, 64)
    n = float(spec["oversample"])
    alpha_os = None
    if spec["alpha_os"]:
        near = grid.nearest_native_row(flux.shape[0], n)
        alpha_os = alpha[near]
    variances = {f"var{i}": err**2 for i in range(int(spec["variances"]))}
    with _spline_fits_in_python():
        return adaptive_trace_model(
            flux, alpha, regions, err=err if spec["err"] else None, variances=variances or None,
            oversample=n, fit_threshold=0.0, slope_limit=spec["slope_limit"],
            psf_optimal=spec["psf_optimal"], alpha_os=alpha_os,
            parameters=FitParameters(**spec["parameters"]), maximum_cores=1,
        )


def main(argv=None):
    """Entry point of the helper process: ``python -m atm_step.core.precompile SPEC``."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m atm_step.core.precompile SPEC_JSON")
    run_helper(json.loads(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
