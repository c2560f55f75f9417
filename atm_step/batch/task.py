"""What a worker does for one exposure: open, run the step, write atomically, summarise.

Everything here runs inside a Dask worker process (or in-process for tests) and never
raises: any problem becomes a ``failed`` :class:`~atm_step.batch.report.ExposureResult`.
"""

import contextlib
import importlib
import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from atm_step.atomic import PARTIAL_MARK, atomic_save, remove_partials
from atm_step.batch.report import DONE, FAILED, SKIPPED, ExposureResult
from atm_step.input_files import InputFileError, check_input_file, open_failure

__all__ = [
    "DEFAULT_STEP",
    "PARTIAL_MARK",
    "Job",
    "atomic_save",
    "is_complete",
    "make_step",
    "process_exposure",
    "remove_partials",
    "same_oversampling",
    "resolve_step_class",
]

log = logging.getLogger(__name__)

#: The step a batch runs unless told otherwise.
DEFAULT_STEP = "atm_step.step.AdaptiveTraceModelStep"
#: Loggers whose records are captured per exposure.
CAPTURED_LOGGERS = ("atm_step", "jwst", "stpipe", "stdatamodels")

@dataclass
class Job:
    """
    One exposure's task, as sent to a worker.

    Attributes
    ----------
    input : str
        Absolute input path.
    output : str
        Absolute output path.
    step_class : str
        Import path of the Step class (``"package.module.Class"``).
    param_file : str or None
        stpipe parameter file (ASDF or cfg) applied before ``options``.
    options : dict
        Step parameters (e.g. ``{"oversample": 2.0}``).
    overwrite : bool
        Reprocess even if a complete output exists.
    limit_threads : bool
        Pin Numba to one thread (the batch's own parallelism is one task per core).
    """

    input: str
    output: str
    step_class: str = DEFAULT_STEP
    param_file: str | None = None
    options: dict = field(default_factory=dict)
    overwrite: bool = False
    limit_threads: bool = True


def resolve_step_class(step_class=None):
    """
    Import a Step class from ``"package.module.Class"`` (or return a class as is).

    Parameters
    ----------
    step_class : str, type or None
        None means :data:`DEFAULT_STEP`.

    Returns
    -------
    type
        A subclass of `stpipe.Step`.

    Raises
    ------
    ValueError
        If the path cannot be imported or is not a Step.
    """
    from stpipe import Step

    if step_class is None:
        step_class = DEFAULT_STEP
    if isinstance(step_class, str):
        module, _, name = step_class.replace(":", ".").rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ValueError(f"cannot import step class {step_class!r}: {exc}") from None
    else:
        cls = step_class
    if not (isinstance(cls, type) and issubclass(cls, Step)):
        raise ValueError(f"{step_class!r} is not an stpipe Step class")
    return cls


def step_class_path(step_class):
    """Import path ``"module.Class"`` of a Step class (or a path string, unchanged)."""
    if isinstance(step_class, str) or step_class is None:
        return step_class or DEFAULT_STEP
    return f"{step_class.__module__}.{step_class.__qualname__}"


def make_step(step_class=None, param_file=None, options=None):
    """
    Build a configured Step instance, the way ``Step.call`` does, without CRDS.

    Parameters are merged in stpipe's order: the step's defaults, then ``param_file``,
    then ``options``. ``skip`` is forced to False (a batch exists to run the step) and
    the step saves nothing itself (``save_results = False``); the batch writes the
    output.

    Parameters
    ----------
    step_class : str, type or None
        See :func:`resolve_step_class`.
    param_file : str or None
        stpipe parameter file.
    options : dict or None
        Step parameters by name.

    Returns
    -------
    stpipe.Step

    Raises
    ------
    ValueError
        If the class cannot be imported, the parameter file cannot be read, or a
        parameter is unknown or has a bad value.
    """
    cls = resolve_step_class(step_class)
    kwargs = dict(options or {})
    kwargs["skip"] = False
    if param_file is not None:
        if not os.path.isfile(param_file):
            raise ValueError(f"parameter file {param_file} not found")
        kwargs["config_file"] = str(param_file)
    try:
        config, config_file = cls.build_config(None, **kwargs)
        config.pop("class", None)
        name = config.pop("name", None)
        step = cls.from_config_section(config, name=name, config_file=config_file)
        check = getattr(step, "check_parameters", None)  # atm-step's ranges, NaN refused
        if check is not None:
            check()
    except Exception as exc:  # stpipe raises several types for bad parameters
        where = f" (parameter file {param_file})" if param_file else ""
        raise ValueError(f"invalid step parameters{where}: {exc}") from None
    step.skip = False
    step.save_results = False
    return step


def is_complete(path):
    """
    Whether ``path`` is a complete output of the step.

    Complete means: the file exists, is a FITS file whose HDUs extend exactly to the
    end of the file (nothing truncated), and its primary header says
    ``S_TRCMOD = 'COMPLETE'``. The batch only ever creates outputs by renaming a
    finished file into place, so this mainly guards against files left by other tools.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    bool
    """
    import warnings

    from astropy.io import fits

    path = Path(path)
    try:
        size = path.stat().st_size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
                status = hdul[0].header.get("S_TRCMOD")
                end = max(
                    hdul.fileinfo(i)["datLoc"] + hdul.fileinfo(i)["datSpan"]
                    for i in range(len(hdul))
                )
    except Exception:  # missing, unreadable, not FITS, truncated header
        return False
    return status == "COMPLETE" and end <= size


def same_oversampling(input_path, output_path, oversample):
    """
    Whether an existing output holds the input oversampled ``oversample`` times.

    Read from the FITS headers only: each SCI array of the output must have the
    shape of the input's, one axis grown to ``ceil(n * N)`` (the step's grid,
    `atm_step.core.grid`); the same shape for N = 1.

    Parameters
    ----------
    input_path, output_path : str or Path
        A cal file and an output of the step for it.
    oversample : float
        N asked for now.

    Returns
    -------
    bool
        False also when either file cannot be read or their SCI arrays differ in
        number.
    """
    import warnings

    from astropy.io import fits

    from atm_step.core.grid import oversampled_shape

    def shapes(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=False) as hdul:
                return [tuple(h.shape) for h in hdul if h.name == "SCI" and h.shape]

    try:
        before, after = shapes(input_path), shapes(output_path)
    except Exception:  # noqa: BLE001 - unreadable: not the same, so it is redone
        return False
    if len(before) != len(after) or not before:
        return False
    n = float(oversample)
    for a, b in zip(before, after, strict=True):
        rows = oversampled_shape(a[-2:], n)  # along the rows (NIRSpec) or the columns (MIRI)
        columns = oversampled_shape(a[-2:][::-1], n)[::-1]
        if b[:-2] != a[:-2] or b[-2:] not in (rows, columns):
            return False
    return True


class _Capture(logging.Handler):
    """Collect the log records of one exposure."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@contextlib.contextmanager
def _captured_logs():
    handler = _Capture()
    saved = []
    for name in CAPTURED_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)


def _single_thread():
    """Pin Numba to one thread in this worker thread."""
    import numba

    numba.set_num_threads(1)


def _models_of(result):
    from jwst.datamodels import ModelContainer

    return list(result) if isinstance(result, ModelContainer) else [result]


def summarise(result, summaries=None):
    """
    Regions fitted and pixels from the model for a step result.

    Preferred source: the step's own summaries (``AdaptiveTraceModelStep.summaries``,
    one dict per processed model). Otherwise (e.g. jwst's own step) the finite pixels
    of ``trace_model`` are counted in the output and the regions are not known.

    Parameters
    ----------
    result : DataModel or ModelContainer
        The step's output.
    summaries : list of dict, optional
        The step's ``summaries`` after the run.

    Returns
    -------
    dict
        ``regions_fitted``, ``regions_total``, ``model_pixels`` (int or None) and
        ``counts_from`` (``'step'`` or ``'output'``).
    """
    import numpy as np

    if summaries:
        return {
            "regions_fitted": int(sum(s["fitted"] for s in summaries)),
            "regions_total": int(sum(s["regions"] for s in summaries)),
            "model_pixels": int(sum(s["from_model"] for s in summaries)),
            "counts_from": "step",
        }
    pixels = 0
    for model in _models_of(result):
        parts = getattr(model, "slits", None) or [model]
        for part in parts:
            trace = getattr(part, "trace_model", None)
            if trace is not None:
                pixels += int(np.isfinite(np.asarray(trace)).sum())
    return {"regions_fitted": None, "regions_total": None, "model_pixels": pixels,
            "counts_from": "output"}


def _worker_address():
    try:
        from distributed import get_worker

        return get_worker().address
    except Exception:  # not inside a Dask worker
        return None


def _open_input(path):
    from stdatamodels.jwst import datamodels

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        check_input_file(path)
    except InputFileError as exc:
        raise InputOpenError(str(exc)) from None
    try:
        return datamodels.open(path)
    except Exception as exc:
        # the step's message for the same failure (`atm_step.input_files.open_failure`)
        raise InputOpenError(str(open_failure(path, exc))) from None


class InputOpenError(ValueError):
    """An input file is corrupt or not a JWST datamodel."""


class StepDidNotRun(RuntimeError):
    """The step returned without processing the exposure (e.g. unsupported model)."""


def process_exposure(job):
    """
    Process one exposure: open it, run the step, write the output atomically.

    Never raises: failures are returned as a row with status ``'failed'`` and a
    message naming the file and the problem. The input file is opened read-only and
    never written.

    Parameters
    ----------
    job : Job

    Returns
    -------
    ExposureResult
    """
    t0 = time.perf_counter()
    row = ExposureResult(input=job.input, output=job.output, status=FAILED,
                         worker=_worker_address())
    os.environ.setdefault("STPIPE_DISABLE_CRDS_STEPPARS", "True")
    if job.limit_threads:
        _single_thread()
    if not job.overwrite and is_complete(job.output):
        row.status = SKIPPED
        return row
    model = result = None
    with _captured_logs() as records:
        try:
            step = make_step(job.step_class, job.param_file, job.options)
            step.output_dir = str(Path(job.output).parent)  # intermediate products
            model = _open_input(job.input)
            result = step.run(model)
            bad = [m for m in _models_of(result)
                   if m.meta.cal_step.adaptive_trace_model != "COMPLETE"]
            if bad:
                why = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
                reason = why[0] if why else "no reason logged"
                raise StepDidNotRun(
                    f"{job.input}: the step did not process this "
                    f"{type(bad[0]).__name__} (S_TRCMOD={bad[0].meta.cal_step.adaptive_trace_model}"
                    f"): {reason}"
                )
            row.__dict__.update(summarise(result, getattr(step, "summaries", None)))
            if len(_models_of(result)) != 1:
                raise StepDidNotRun(f"{job.input}: the step returned several models; "
                                    "give the exposures one by one")
            atomic_save(_models_of(result)[0], job.output)
            row.status = DONE
        except (InputOpenError, StepDidNotRun, FileNotFoundError, ValueError) as exc:
            row.error = _one_line(exc, job.input)
        except Exception as exc:
            row.error = _one_line(exc, job.input)
            row.traceback = traceback.format_exc()
        finally:
            row.warnings = [f"{r.levelname}: {r.getMessage()}" for r in records
                            if r.levelno >= logging.WARNING]
            for m in {id(x): x for x in (model, result) if x is not None}.values():
                with contextlib.suppress(Exception):
                    m.close()
    row.wall_time = time.perf_counter() - t0
    return row


def _one_line(exc, path):
    text = " ".join(str(exc).split()) or type(exc).__name__
    if path not in text:
        text = f"{path}: {type(exc).__name__}: {text}"
    return text
