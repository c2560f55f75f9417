"""The ``atm-step`` command: one entry point, one subcommand per job.

Subcommands load their module on demand, so ``atm-step --help`` is fast and an
optional extra (dask, matplotlib) is needed only by the subcommand that uses it.

A user error (a missing file, a bad option value, an unknown scene) is answered with
one line on stderr, ``atm-step <command>: error: <what is wrong>``, and exit status 2;
``atm-step --debug <command> ...`` shows the traceback instead.
"""

import argparse
import importlib
import sys

__all__ = ["UsageError", "factor", "main", "positive_int"]

#: subcommand -> (module, one-line help). Each module provides
#: ``add_arguments(parser)`` and ``run_from_args(args) -> int`` (the exit status).
SUBCOMMANDS = {
    "example": ("atm_step.example", "simulate an exposure, run `strun atm` on it, show before/after"),
    "run": ("atm_step.batch", "apply the step to many exposures on Dask"),
    "qa": ("atm_step.qa.cli", "write QA pictures for a run of the step"),
}

#: Exit status of a user error (as argparse's).
USAGE_ERROR = 2


class UsageError(Exception):
    """A user error a subcommand reports in one line (missing file, bad value...)."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``<prog>: error: <message>``, exit status 2."""

    def error(self, message):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def factor(text):
    """
    argparse type of an oversampling factor, checked against the step's range.

    Parameters
    ----------
    text : str

    Returns
    -------
    float

    Raises
    ------
    argparse.ArgumentTypeError
        If ``text`` is not a number, or is outside ``LIMITS["oversample"]``
        (`atm_step.core.parameters`), with the message the step gives.
    """
    from atm_step.core.parameters import check_parameter

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    try:
        return float(check_parameter("oversample", value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text):
    """
    argparse type of a count: an integer >= 1.

    Raises
    ------
    argparse.ArgumentTypeError
        If ``text`` is not an integer >= 1.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def _versions():
    from importlib.metadata import PackageNotFoundError, version

    from atm_step import __version__

    found = []
    for dist in ("jwst", "stpipe", "numba"):
        try:
            found.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:  # pragma: no cover - depends on the environment
            found.append(f"{dist} not installed")
    return f"atm-step {__version__} ({', '.join(found)})"


def main(argv=None):
    """
    Run the ``atm-step`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments after the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 on success, 2 for a user error, otherwise the subcommand's.
    """
    parser = _Parser(
        prog="atm-step", description="Adaptive Trace Modeling for JWST IFU and slit spectra."
    )
    parser.add_argument("--version", action="version", version=_versions())
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, helptext) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version or a usage error, already printed
        return int(exc.code or 0)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    try:
        return int(module.run_from_args(args) or 0)
    except UsageError as exc:
        if args.debug:
            raise
        print(f"atm-step {args.command}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"atm-step {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
