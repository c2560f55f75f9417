"""Turn command-line inputs (files, globs, associations) into exposures and output names."""

import glob
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Exposure", "InputError", "expand_inputs", "output_name"]

log = logging.getLogger(__name__)

#: Association member types that are processed (backgrounds, imprints etc. are not).
SCIENCE_EXPTYPES = ("science",)
#: Level-2a suffixes: an association member with one of these is mapped to its ``_cal``.
RATE_SUFFIXES = ("_rate", "_rateints")
_GLOB_CHARS = set("*?[")


class InputError(ValueError):
    """An input could not be turned into exposures (missing file, bad association...)."""


@dataclass(frozen=True)
class Exposure:
    """
    One exposure to process.

    Attributes
    ----------
    path : str
        Absolute path of the input cal file; for an unresolved input, the input as
        given.
    source : str
        The command-line input it came from (the file, pattern or association).
    error : str or None
        Why the input could not be resolved (missing file, pattern matching nothing,
        bad association); None for a real exposure.
    """

    path: str
    source: str
    error: str | None = None


def output_name(path, suffix="atm"):
    """
    Output file name for an input, following stpipe's suffix convention.

    A known pipeline suffix (``_cal``, ``_photom``, ``_s2d`` ...) is replaced by
    ``_<suffix>``; other names get ``_<suffix>`` appended. The extension is ``.fits``.

    Parameters
    ----------
    path : str or Path
        Input file.
    suffix : str
        Output suffix, without the underscore.

    Returns
    -------
    str
        A bare file name, e.g. ``jw01_nrs1_cal.fits -> jw01_nrs1_atm.fits``.

    Examples
    --------
    >>> output_name("/data/jw02732001001_02101_00001_mirifulong_cal.fits")
    'jw02732001001_02101_00001_mirifulong_atm.fits'
    """
    from jwst.lib.suffix import remove_suffix

    name = Path(path).name
    for ext in (".fits.gz", ".fits", ".fit", ".asdf"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    root, sep = remove_suffix(name)
    return f"{root}{sep}{suffix}.fits"


def _is_association(path):
    return path.lower().endswith(".json")


def _association_members(asn_path):
    """Science members of a level-2 or level-3 association, as absolute cal-file paths."""
    try:
        with open(asn_path, encoding="utf-8") as fh:
            asn = json.load(fh)
    except json.JSONDecodeError as exc:
        raise InputError(f"{asn_path}: not a valid association (JSON error: {exc})") from None
    except UnicodeDecodeError:
        raise InputError(f"{asn_path}: not a valid association (not UTF-8 text)") from None
    except OSError as exc:
        raise InputError(f"{asn_path}: cannot read association ({exc.strerror})") from None
    products = asn.get("products") if isinstance(asn, dict) else None
    if not isinstance(products, list):
        raise InputError(f"{asn_path}: not an association (no 'products' list)")
    base = Path(asn_path).resolve().parent
    members = []
    for product in products:
        for member in product.get("members", []) if isinstance(product, dict) else []:
            if str(member.get("exptype", "")).lower() not in SCIENCE_EXPTYPES:
                continue
            expname = member.get("expname")
            if not expname:
                raise InputError(f"{asn_path}: a science member has no 'expname'")
            members.append(_cal_for_member(base / expname, asn_path))
    if not members:
        raise InputError(f"{asn_path}: association has no science members")
    return members


def _cal_for_member(path, asn_path):
    """Map a level-2a (rate) member to the cal file calwebb_spec2 writes beside it."""
    stem = path.name
    for ext in (".fits",):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    for rate in RATE_SUFFIXES:
        if stem.endswith(rate):
            cal = path.with_name(stem[: -len(rate)] + "_cal.fits")
            if not cal.is_file():
                raise InputError(
                    f"{asn_path}: member {path.name} is a level-2a (rate) file and its cal "
                    f"file {cal.name} was not found; run calwebb_spec2 first"
                )
            return str(cal)
    return str(path)


def expand_inputs(inputs):
    """
    Expand files, glob patterns and association files into exposures.

    Parameters
    ----------
    inputs : str, Path or iterable of them
        Cal files (FITS), glob patterns (``"obs/*_cal.fits"``) or association files
        (``*.json``, level 2 or 3: their science members are used; level-2a ``_rate``
        members are mapped to the ``_cal`` file beside them).

    Returns
    -------
    list of Exposure
        In input order, duplicates (same absolute path) removed. Inputs that could
        not be resolved (a missing file, a pattern matching nothing, an unreadable
        association) are included with their ``error`` set.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    exposures, seen = [], set()

    def problem(what, message):
        exposures.append(Exposure(str(what), str(what), message))


    def add(path, source):
        path = str(Path(path).resolve())
        if path not in seen:
            seen.add(path)
            exposures.append(Exposure(path, str(source)))

    for item in inputs:
        text = os.fspath(item)
        if _GLOB_CHARS & set(text) and not os.path.exists(text):
            matches = sorted(glob.glob(os.path.expanduser(text)))
            if not matches:
                problem(text, f"{text}: pattern matched no files")
            for m in matches:
                if _is_association(m):
                    _add_association(m, add, problem)
                elif os.path.isfile(m):
                    add(m, text)
            continue
        path = os.path.expanduser(text)
        if not os.path.exists(path):
            problem(text, f"{text}: no such file")
        elif os.path.isdir(path):
            problem(text, f"{text}: is a directory (give files or a pattern)")
        elif _is_association(path):
            _add_association(path, add, problem)
        else:
            add(path, text)
    return exposures


def _add_association(path, add, problem):
    try:
        members = _association_members(path)
    except InputError as exc:
        problem(path, str(exc))
        return
    for member in members:
        if os.path.isfile(member):
            add(member, path)
        else:
            problem(member, f"{path}: member {member} not found")
