"""Batch runner: apply the step to many exposures on Dask (``atm-step run``).

From a Python script (the guard is required: Dask re-imports the script in each
local worker process)::

    from atm_step.batch import run

    if __name__ == "__main__":
        report = run(["obs/*_cal.fits"], output_dir="atm", oversample=2)
        print(report.table())

From the shell::

    atm-step run 'obs/*_cal.fits' --oversample 2 --output-dir atm
    atm-step run jw01234-o001_spec3_asn.json --scheduler tcp://head:8786

Dask is an optional extra: ``pip install 'atm-step[batch]'``. This package imports
it only when a batch starts, so ``atm-step run --help`` works without it.
See ``docs/batch.md``.
"""

import logging
import sys

from atm_step.batch.inputs import expand_inputs, output_name
from atm_step.batch.report import BatchReport, ExposureResult
from atm_step.batch.runner import MissingDependencyError, run
from atm_step.batch.task import is_complete

__all__ = [
    "BatchReport",
    "ExposureResult",
    "MissingDependencyError",
    "add_arguments",
    "expand_inputs",
    "is_complete",
    "output_name",
    "run",
    "run_from_args",
]

log = logging.getLogger(__name__)


def add_arguments(parser):
    """
    Add the ``atm-step run`` arguments to an argparse parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    """
    parser.description = (
        "Apply the adaptive_trace_model step to every exposure of the inputs on a Dask "
        "cluster: a local one sized to this machine by default, or a running one with "
        "--scheduler. Outputs are written atomically as <root>_atm.fits; complete "
        "outputs are skipped on a rerun. Exit status 1 if any exposure failed."
    )
    parser.add_argument("inputs", nargs="+", metavar="FILES_OR_ASSOCIATIONS",
                        help="cal files, glob patterns (quote them) or association "
                             "files (*.json)")
    parser.add_argument("--output-dir", "-o", default=None,
                        help="folder for the outputs (default: current directory)")
    parser.add_argument("--oversample", type=float, default=None,
                        help="oversampling factor (step default: 1)")
    parser.add_argument("--param-file", default=None,
                        help="stpipe parameter file (ASDF) for the step, or the name of a "
                             "shipped one: crowded_field, point_source")
    parser.add_argument("--fit-threshold", type=float, default=None,
                        help="step parameter fit_threshold")
    parser.add_argument("--slope-limit", type=float, default=None,
                        help="step parameter slope_limit")
    parser.add_argument("--psf-optimal", action="store_true", default=None,
                        help="step parameter psf_optimal=True")
    parser.add_argument("--maximum-cores", default=None,
                        help="step parameter maximum_cores inside each task (default "
                             "'none': the batch parallelises over exposures)")
    parser.add_argument("--save-intermediate-results", action="store_true", default=None,
                        help="also write the step's intermediate images to --output-dir")
    parser.add_argument("--workers", "-n", type=int, default=None,
                        help="local worker processes (default: one per core, at most "
                             "one per exposure)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="address of a running Dask scheduler, e.g. tcp://host:8786")
    parser.add_argument("--overwrite", action="store_true",
                        help="reprocess exposures whose output is already complete")
    parser.add_argument("--suffix", default="atm",
                        help="output suffix (default: atm)")
    parser.add_argument("--step", default=None, metavar="CLASS",
                        help="step class to run (default atm_step.step."
                             "AdaptiveTraceModelStep; jwst's own: jwst.adaptive_trace_model."
                             "AdaptiveTraceModelStep)")
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="always show the progress bar")
    bar.add_argument("--no-progress", dest="progress", action="store_false",
                     help="never show the progress bar")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="log progress and print tracebacks of unexpected errors")


def _step_options(args):
    names = ("fit_threshold", "slope_limit", "psf_optimal", "maximum_cores",
             "save_intermediate_results")
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def run_from_args(args):
    """
    Run ``atm-step run`` from parsed arguments; print the table; return the exit status.

    Parameters
    ----------
    args : argparse.Namespace
        As defined by :func:`add_arguments`.

    Returns
    -------
    int
        0 if every exposure is done or skipped, 1 if any failed, 2 for a usage or
        set-up problem (missing Dask, bad parameters, unreachable scheduler), 130 if
        interrupted.
    """
    if args.verbose:  # everything, Dask's cluster messages included
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    else:  # atm-step's own warnings only; Dask logs its cluster's life at INFO
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.WARNING)
        logging.getLogger("atm_step").addHandler(handler)
    from atm_step.params import resolve

    try:
        param_file = resolve(args.param_file) if args.param_file is not None else None
        report = run(
            args.inputs,
            output_dir=args.output_dir,
            oversample=args.oversample,
            param_file=param_file,
            workers=args.workers,
            scheduler=args.scheduler,
            overwrite=args.overwrite,
            step_options=_step_options(args),
            step_class=args.step,
            suffix=args.suffix,
            progress=args.progress,
        )
    except MissingDependencyError as exc:
        print(f"atm-step run: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"atm-step run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("atm-step run: interrupted; finished outputs are complete, rerun the same "
              "command to process the rest", file=sys.stderr)
        return 130
    print(report.table())
    if args.verbose:
        for row in report.failed:
            if row.traceback:
                print(f"\n{row.input}:\n{row.traceback}", file=sys.stderr)
    return report.exit_status
