"""The ``atm-step`` command: one entry point, one subcommand per job.

Subcommands load their module on demand, so ``atm-step --help`` is fast and an
optional extra (dask, matplotlib) is needed only by the subcommand that uses it.
"""

import argparse
import importlib
import sys

__all__ = ["main"]

#: subcommand -> (module, one-line help). Each module provides
#: ``add_arguments(parser)`` and ``run_from_args(args) -> int`` (the exit status).
SUBCOMMANDS = {
    "example": ("atm_step.example", "simulate an exposure, run `strun atm` on it, show before/after"),
    "run": ("atm_step.batch", "apply the step to many exposures on Dask"),
    "qa": ("atm_step.qa.cli", "write QA pictures for a run of the step"),
}


def main(argv=None):
    """Run the ``atm-step`` command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="atm-step", description="Adaptive Trace Modeling for JWST IFU and slit spectra."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    for name, (module, helptext) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(argv)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    return int(module.run_from_args(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
