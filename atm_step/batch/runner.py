"""Run the step over many exposures on a Dask cluster: local by default, or remote."""

import ast
import contextlib
import logging
import numbers
import os
import sys
import time
import uuid
from pathlib import Path

from atm_step.atomic import check_writable
from atm_step.batch.inputs import expand_inputs, output_name
from atm_step.batch.report import FAILED, SKIPPED, BatchReport, ExposureResult
from atm_step.batch.task import (
    Job,
    is_complete,
    make_step,
    process_exposure,
    remove_partials,
    same_oversampling,
    step_class_path,
)

__all__ = ["MainGuardError", "MissingDependencyError", "check_main_guard", "run"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'atm-step[batch]'  (installs dask[distributed] and tqdm)"
#: Environment of local workers: offline stpipe, one thread per numerical library.
WORKER_ENV = {
    "STPIPE_DISABLE_CRDS_STEPPARS": "True",
    "NUMBA_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


class MissingDependencyError(ImportError):
    """Dask (the ``batch`` extra) is not installed."""


def _require_distributed():
    try:
        import distributed
    except ImportError:
        raise MissingDependencyError(
            f"the batch runner needs Dask's distributed scheduler, which is not "
            f"installed; install it with: {INSTALL_HINT}"
        ) from None
    return distributed


def run(
    inputs,
    *,
    output_dir=None,
    oversample=None,
    param_file=None,
    workers=None,
    scheduler=None,
    overwrite=False,
    step_options=None,
    step_class=None,
    suffix="atm",
    progress=None,
    connect_timeout=30.0,
):
    """
    Apply the step to every exposure of ``inputs`` on a Dask cluster.

    One task per exposure. Without ``scheduler`` a `distributed.LocalCluster` of
    worker *processes* (one thread each, so Numba and the GIL do not serialise the
    work) is started for the batch and shut down after it; with ``scheduler`` the
    tasks go to that running cluster, whose workers must have atm-step installed and
    see the input and output paths. Outputs are written atomically; exposures whose
    output is already complete are skipped unless ``overwrite``. Inputs are never
    modified. A bad exposure is reported in its row and does not stop the others.

    Parameters
    ----------
    inputs : str, Path or list of them
        Cal files, glob patterns, or level-2/level-3 association files (``*.json``;
        their science members are processed).
    output_dir : str or Path, optional
        Folder for outputs (created if needed); default the current directory.
        Outputs are named ``<root>_<suffix>.fits`` where ``<root>`` is the input name
        with its pipeline suffix (``_cal``, ``_photom`` ...) removed.
    oversample : float, optional
        Oversampling factor (step parameter ``oversample``); default the step's.
    param_file : str or Path, optional
        stpipe parameter file (ASDF) for the step; ``oversample`` and
        ``step_options`` override it.
    workers : int, optional
        Local worker processes; default ``min(cpu_count, exposures to do)``.
        Ignored (with a warning) when ``scheduler`` is given.
    scheduler : str or distributed.Client, optional
        Address of a running Dask scheduler (``"tcp://host:8786"``) or a connected
        Client to use instead of a local cluster.
    overwrite : bool
        Reprocess exposures whose output is already complete.
    step_options : dict, optional
        Other step parameters (``fit_threshold``, ``slope_limit``, ``psf_optimal``,
        ``maximum_cores`` ...). ``maximum_cores`` stays ``'none'`` unless given here,
        and Numba runs one thread per task unless it is given, so that tasks do not
        oversubscribe the cores.
    step_class : str or type, optional
        The Step to run, default ``"atm_step.step.AdaptiveTraceModelStep"``; e.g.
        ``"jwst.adaptive_trace_model.AdaptiveTraceModelStep"`` for jwst's own.
    suffix : str
        Output suffix (default ``"atm"``).
    progress : bool or None
        Show a progress bar on stderr (tqdm if installed, else Dask's); None shows it
        when stderr is a terminal.
    connect_timeout : float
        Seconds to wait for a remote scheduler.

    Returns
    -------
    BatchReport
        One row per exposure, in input order; ``report.exit_status`` is 1 if any
        failed.

    Raises
    ------
    MissingDependencyError
        If dask.distributed is not installed.
    ValueError
        If no input was given, ``workers`` is not a whole number >= 1, or a step
        parameter is invalid (checked once, before any task is sent, against the
        ranges of `atm_step.core.parameters.LIMITS`; NaN is refused).
    OSError
        If the scheduler cannot be reached, or ``output_dir`` cannot be created or
        written in (checked before any work).
    MainGuardError
        If a local cluster would be started from top-level code of a script that
        lacks ``if __name__ == "__main__":`` (see `check_main_guard`).
    KeyboardInterrupt
        Re-raised after cancelling the outstanding tasks and shutting down the local
        cluster; finished outputs are complete and a rerun skips them.
    """
    t0 = time.perf_counter()
    if workers is not None and (isinstance(workers, bool)
                                or not isinstance(workers, numbers.Integral) or workers < 1):
        raise ValueError(f"workers={workers!r} is not allowed: it must be a whole number >= 1 "
                         "(or None: one per core)")
    distributed = _require_distributed()
    options = dict(step_options or {})
    if oversample is not None:
        options["oversample"] = oversample
    param_file = str(Path(param_file).resolve()) if param_file is not None else None
    step_path = step_class_path(step_class)
    # fail early, once, on bad parameters; the N the outputs must have
    oversample_now = float(getattr(make_step(step_path, param_file, options), "oversample", 1.0))
    out_dir = Path(output_dir if output_dir is not None else os.getcwd()).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    check_writable(out_dir)  # before any work, not after each exposure's

    exposures = expand_inputs(inputs)
    if not exposures:
        raise ValueError("no inputs given")
    rows, jobs, job_rows, claimed = [], [], [], {}
    for exp in exposures:
        if exp.error:
            rows.append(ExposureResult(input=exp.path, output=None, status=FAILED,
                                       error=exp.error))
            continue
        out = str(out_dir / output_name(exp.path, suffix))
        row = ExposureResult(input=exp.path, output=out, status=FAILED)
        rows.append(row)
        complete = not overwrite and is_complete(out)  # by an earlier run
        if out == exp.path:
            row.error = f"{exp.path}: output would overwrite the input; use another suffix"
        elif out in claimed:
            row.error = (f"{exp.path}: output name {Path(out).name} is also that of "
                         f"{claimed[out]}; process them into different output folders")
            row.output = None
        elif complete and same_oversampling(exp.path, out, oversample_now):
            claimed[out] = exp.path
            remove_partials(out)  # left by an attempt killed before a retry succeeded
            row.status = SKIPPED
        else:
            if complete:  # made with another N
                log.warning("%s: the existing output is not oversampled %g times; it is made "
                            "again", out, oversample_now)
            claimed[out] = exp.path
            remove_partials(out)
            jobs.append(Job(
                input=exp.path, output=out, step_class=step_path, param_file=param_file,
                options=options, overwrite=overwrite or complete,
                limit_threads="maximum_cores" not in options,
            ))
            job_rows.append(row)
    log.info("%d exposures: %d to process, %d skipped, %d failed before start",
             len(rows), len(jobs), sum(r.status == SKIPPED for r in rows),
             sum(r.status == FAILED for r in rows))

    report = BatchReport(rows=rows)
    if jobs:
        show = sys.stderr.isatty() if progress is None else bool(progress)
        with _client(distributed, scheduler, workers, len(jobs), options,
                     connect_timeout) as client:
            report.scheduler = client.scheduler.address
            report.n_workers = len(client.scheduler_info(n_workers=-1)["workers"])
            results = _compute(distributed, client, jobs, show)
        for row, result in zip(job_rows, results):
            row.__dict__.update(result.__dict__)
        # folders of attempts killed mid-write (a worker lost, the task retried); the
        # lock check in remove_partials leaves any save still running elsewhere alone
        for job in jobs:
            remove_partials(job.output)
    report.elapsed = time.perf_counter() - t0
    if report.n_failed:
        log.info("%d of %d exposures failed: %s", report.n_failed, len(rows),
                    "; ".join(r.error for r in report.failed))
    return report


class MainGuardError(RuntimeError):
    """`run` starts worker processes from a script without a ``__main__`` guard."""


def _is_main_guard(node):
    """Whether an ``ast.If`` tests ``__name__ == "__main__"`` (either order)."""
    test = node.test
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, *test.comparators]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    consts = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and consts == ["__main__"]


def check_main_guard():
    """
    Refuse to start local worker processes from unguarded top-level script code.

    Dask starts local workers with multiprocessing's ``spawn`` method, which imports
    the main script again in every new process. A script that calls `run` at its top
    level, outside ``if __name__ == "__main__":``, therefore starts a batch inside
    every worker as it starts, and Dask ends with ``RuntimeError: Nanny failed to
    start``. Here the call site is found in the script's source and, when unguarded,
    refused at once, in the script's process and in any process spawned from it.

    Raises
    ------
    MainGuardError
        Naming the script and line, and showing the guard.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path or not str(path).endswith(".py"):
        return  # interactive, python -c, a notebook, python -m some.module: no re-import
    frame = sys._getframe(1)  # noqa: SLF001
    while frame is not None and not (
        frame.f_globals is main.__dict__ and frame.f_code.co_name == "<module>"
    ):
        frame = frame.f_back
    if frame is None:
        return  # called from a function (e.g. main()), which the guard must call
    line = frame.f_lineno
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_guard(node) and \
                node.lineno <= line <= (node.end_lineno or node.lineno):
            return
    raise MainGuardError(
        f"{path}, line {line}: atm_step.batch.run() is called at the top level of the "
        "script. Dask starts local worker processes by importing the script again, so the "
        "call must be protected:\n\n    if __name__ == \"__main__\":\n        "
        "report = run(...)\n"
    )


@contextlib.contextmanager
def _client(distributed, scheduler, workers, n_jobs, options, connect_timeout):
    """A Client to a local cluster made for the batch, or to the given scheduler."""
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    if scheduler:
        if workers:
            log.warning("workers=%s ignored: using the cluster at %s", workers, scheduler)
        try:
            client = distributed.Client(scheduler, timeout=connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise OSError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        with client:
            if not client.scheduler_info()["workers"]:
                log.warning("the scheduler at %s has no workers yet; waiting", scheduler)
                client.wait_for_workers(1, timeout=connect_timeout)
            yield client
        return
    check_main_guard()
    n = int(workers) if workers is not None else min(os.cpu_count() or 1, n_jobs)
    env = dict(WORKER_ENV)
    if "maximum_cores" in options:  # asked for per-slice parallelism inside a task
        for key in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                    "OPENBLAS_NUM_THREADS"):
            env.pop(key)
    with _no_malloc_trim():
        cluster = distributed.LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # no clash with a dashboard on 8787
            silence_logs=logging.WARNING,
            env=env,
        )
        try:
            with distributed.Client(cluster) as client:
                yield client
        finally:
            _close_quietly(cluster)


@contextlib.contextmanager
def _no_malloc_trim():
    """
    Start local workers without Dask's ``MALLOC_TRIM_THRESHOLD_`` setting.

    Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` in its workers, which fixes
    glibc's allocation thresholds: every large temporary array of the step is then a
    fresh ``mmap`` with its page faults, and the step runs about 1.7x slower than in a
    plain process (measured on MIRI MRS exposures). The worker environment is left as
    a plain process's.
    """
    import dask

    key = "distributed.nanny.pre-spawn-environ"
    environ = dict(dask.config.get(key, default={}) or {})
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({key: environ}):
        yield


def _close_quietly(cluster):
    """Close a local cluster; silence the nanny's 'still alive, killing' warnings."""
    nanny = logging.getLogger("distributed.nanny")
    level = nanny.level
    nanny.setLevel(logging.ERROR)
    try:
        cluster.close(timeout=30)
    finally:
        nanny.setLevel(level)


def _compute(distributed, client, jobs, show):
    """Submit one task per job and gather the rows as they complete, in job order."""
    batch = uuid.uuid4().hex[:8]
    keys = [f"atm-{batch}-{i}-{Path(job.input).name}" for i, job in enumerate(jobs)]
    futures = client.map(process_exposure, jobs, key=keys, pure=False)
    index = {f.key: i for i, f in enumerate(futures)}
    results = [None] * len(jobs)
    bar = _progress_bar(len(jobs), show)
    try:
        for future in distributed.as_completed(futures):
            i = index[future.key]
            try:
                results[i] = future.result()
            except Exception as exc:  # the task itself never raises: the worker died
                results[i] = ExposureResult(
                    input=jobs[i].input, output=jobs[i].output, status=FAILED,
                    error=(f"{jobs[i].input}: the worker processing it died "
                           f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                           "out of memory? Rerun to retry."),
                )
            if bar is not None:
                bar.update(1)
                if results[i].status == FAILED:
                    bar.write(f"failed: {results[i].error}")
    except BaseException:
        client.cancel(futures, force=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    return results


def _progress_bar(total, show):
    if not show:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return _DaskProgressFallback(total)
    return tqdm(total=total, unit="exposure", desc="atm-step", file=sys.stderr)


class _DaskProgressFallback:
    """Counter on stderr when tqdm is missing."""

    def __init__(self, total):
        self.total, self.n = total, 0

    def update(self, k):
        self.n += k
        sys.stderr.write(f"\ratm-step: {self.n}/{self.total} exposures")
        sys.stderr.flush()

    def write(self, text):
        sys.stderr.write(f"\n{text}\n")

    def close(self):
        sys.stderr.write("\n")
