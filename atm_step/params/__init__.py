"""Parameter files shipped with atm-step, for ``strun`` and ``Step.call``.

- ``crowded_field``: every region fitted and the spline model used everywhere
  (``fit_threshold=0``, ``slope_limit=0``), for crowded fields (paper, Appendix A.4).
- ``point_source``: an isolated point source (``psf_optimal=True``: no residual model).

Use: ``strun $(python -m atm_step.params crowded_field) my_cal.fits --oversample=3``,
or ``atm-step run ... --param-file crowded_field`` (the batch runner takes the names).
"""

import sys
from importlib.resources import files

__all__ = ["NAMES", "main", "path", "resolve"]

NAMES = ("crowded_field", "point_source")


def path(name):
    """
    Path of a shipped parameter file.

    Parameters
    ----------
    name : {"crowded_field", "point_source"}

    Returns
    -------
    str
        Absolute path of ``<name>.asdf``.

    Raises
    ------
    ValueError
        If ``name`` is not one of `NAMES`.
    """
    if name not in NAMES:
        raise ValueError(f"no parameter file {name!r}; shipped: {', '.join(NAMES)}")
    return str(files(__name__) / f"{name}.asdf")


def resolve(name_or_path):
    """
    Path of a parameter file given by path or by shipped name.

    An existing file wins (a ``crowded_field.asdf`` of your own in the current
    folder is used as it is); otherwise a shipped name, with or without ``.asdf``,
    gives the shipped file.

    Parameters
    ----------
    name_or_path : str or Path
        A parameter file, or one of `NAMES` (``"crowded_field"``,
        ``"crowded_field.asdf"``...).

    Returns
    -------
    str
        Path of the file.

    Raises
    ------
    FileNotFoundError
        If ``name_or_path`` is neither an existing file nor a shipped name; the
        message lists the shipped names.

    Examples
    --------
    >>> resolve("point_source").endswith("point_source.asdf")
    True
    """
    import os

    text = os.fspath(name_or_path)
    if os.path.isfile(text):
        return text
    stem = text[: -len(".asdf")] if text.endswith(".asdf") else text
    if stem in NAMES:
        return path(stem)
    raise FileNotFoundError(
        f"parameter file {text} not found, and it is not a shipped name ({', '.join(NAMES)})"
    )


def main(argv=None):
    """``python -m atm_step.params NAME``: print the path of a shipped parameter file."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in NAMES:
        sys.stderr.write(f"usage: python -m atm_step.params {{{','.join(NAMES)}}}\n")
        return 2
    sys.stdout.write(path(argv[0]) + "\n")
    return 0
