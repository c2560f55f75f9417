"""Check an input file before stpipe or stdatamodels opens it, so that a bad file gives
one message naming the file and the problem instead of a deep traceback.

Checked (`check_input_file`): missing and empty files; FITS files that astropy cannot
read, that are truncated (their headers describe more bytes than the file holds) or
that lack the ``ASDF`` extension every JWST pipeline product carries; gzip-compressed
FITS files (``*.fits.gz``), whose whole stream is read once to find a truncated or
corrupt file and whose decompressed content then gets the same FITS checks; a file
named ``*.gz`` that is not gzip-compressed (unless it is plain FITS or ASDF, which
jwst reads); gzip-compressed ASDF, which stdatamodels cannot read; ASDF files that are
stpipe parameter files rather than exposures.

Checked (`check_association`): an association file that jwst cannot load (missing,
not JSON, not an association), one whose first product lists no members, and every
member, resolved as jwst resolves it (relative to the association's folder), with
`check_input_file`; the message names the association and the member.

`check_step_input` applies the right check to whatever a step is given (a file name,
an association, a list of file names); datamodels pass unchanged. `open_failure` turns
an error raised while opening checked files into one `InputFileError` naming the file
that could not be opened; `opening` applies it around an opening.
"""

import gzip
import json
import logging
import os
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "InputFileError",
    "association_members",
    "check_association",
    "check_input_file",
    "check_step_input",
    "is_association",
    "open_failure",
    "opening",
]

log = logging.getLogger(__name__)

#: The first two bytes of every gzip stream (RFC 1952).
GZIP_MAGIC = b"\x1f\x8b"
#: Bytes decompressed at a time when a gzip file is read through (memory stays flat).
GZIP_CHUNK = 1 << 20
#: Longest underlying error message quoted in an `InputFileError`.
MAX_CAUSE = 400


class InputFileError(ValueError):
    """An input file is missing, empty, corrupt, truncated or not a JWST datamodel."""


def check_input_file(path):
    """
    Raise `InputFileError` if ``path`` cannot be a JWST datamodel the step can open.

    Parameters
    ----------
    path : str or os.PathLike
        The input as given to the step: a FITS (also gzip-compressed) or ASDF
        datamodel. Files of other types (an association) pass unchanged; see
        `check_association` for those.

    Raises
    ------
    InputFileError
        The message starts with the path and says what is wrong.

    Notes
    -----
    A file that passed is not read again in the same process while its size and
    modification time stay the same: stpipe reads an input's metadata before the
    step runs, and both places check it (a gzip-compressed file is read through).
    """
    p = Path(os.fspath(path))
    size = _check_exists(p, "an exposure file")
    stat = p.stat()
    key = (str(p.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _PASSED:
        _check_content(p, size)
        _PASSED.add(key)


#: files that passed `check_input_file` in this process: (path, size, mtime) keys
_PASSED = set()


def _check_content(p, size):
    """The checks of `check_input_file` on an existing, non-empty file of ``size`` bytes."""
    with open(p, "rb") as fh:
        head = fh.read(8)
    if head.startswith(GZIP_MAGIC):
        _check_gzip(p)
    elif p.suffix.lower() == ".gz" and not head.startswith((b"SIMPLE", b"#ASDF")):
        raise InputFileError(
            f"{p}: not a gzip-compressed file (it is named .gz but does not start with "
            "the gzip signature, nor as a FITS or ASDF file); corrupt or mislabelled"
        )
    elif head.startswith(b"SIMPLE"):
        _check_fits(p, size)
    elif head.startswith(b"#ASDF"):
        _check_asdf(p)
    elif p.suffix.lower() in (".fits", ".fit", ".asdf"):
        raise InputFileError(
            f"{p}: not a FITS or ASDF file (it does not start as one); corrupt or mislabelled"
        )


def _check_exists(p, what):
    """The size of ``p``; `InputFileError` if it is missing, a folder or empty."""
    if not p.exists():
        raise InputFileError(f"{p}: no such file")
    if p.is_dir():
        raise InputFileError(f"{p}: is a directory, not {what}")
    size = p.stat().st_size
    if size == 0:
        raise InputFileError(f"{p}: the file is empty (0 bytes)")
    return size


def _check_gzip(p):
    """Read a gzip file through (CRC and length checked at its end), then check what
    it holds: FITS gets `_check_fits` against the decompressed size."""
    size = 0
    head = b""
    buf = bytearray(GZIP_CHUNK)
    try:
        with gzip.open(p, "rb") as fh:
            while n := fh.readinto(buf):
                if size < 8:
                    head += bytes(buf[: min(n, 8 - size)])
                size += n
    except (EOFError, OSError, zlib.error) as exc:  # OSError includes gzip.BadGzipFile
        raise InputFileError(
            f"{p}: truncated or corrupt gzip file ({type(exc).__name__}: {_one_line(exc)}); "
            "an interrupted copy or download?"
        ) from None
    if head.startswith(b"SIMPLE"):
        _check_fits(p, size, compressed=True)
    elif head.startswith(b"#ASDF"):
        raise InputFileError(
            f"{p}: a gzip-compressed ASDF file, which stdatamodels cannot read; "
            "decompress it first (gunzip)"
        )
    else:
        raise InputFileError(
            f"{p}: a gzip-compressed file that does not hold a FITS file (its decompressed "
            "content does not start as one); corrupt or mislabelled"
        )


def _check_fits(p, size, compressed=False):
    """FITS checks; ``size`` is the file's size, or its decompressed size if
    ``compressed`` (astropy reads a gzip-compressed file through its path)."""
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy warns before it fails
            with fits.open(p, memmap=False, lazy_load_hdus=False) as hdul:
                names = [h.name for h in hdul]
                end = max(hdul.fileinfo(i)["datLoc"] + hdul.fileinfo(i)["datSpan"]
                          for i in range(len(hdul)))  # fmt: skip
    except Exception as exc:  # astropy raises OSError, ValueError, IndexError ...
        raise InputFileError(
            f"{p}: not a readable FITS file: corrupt or empty ({type(exc).__name__}: "
            f"{_one_line(exc)})"
        ) from None
    if end > size:
        holds = "decompresses to only" if compressed else "holds only"
        raise InputFileError(
            f"{p}: truncated FITS file: its headers describe {end} bytes but it {holds} "
            f"{size} (an interrupted copy, download or write?)"
        )
    if "ASDF" not in names:
        raise InputFileError(
            f"{p}: not a JWST datamodel: this FITS file has no ASDF extension, which every "
            f"JWST pipeline product carries (extensions: {', '.join(names)}); the step "
            "needs a cal file from calwebb_spec2"
        )


def _check_asdf(p):
    import asdf

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with asdf.open(p, lazy_load=True, memmap=False) as af:
                tree = dict(af.tree)
    except Exception as exc:  # asdf raises many types for a damaged file
        raise InputFileError(
            f"{p}: not a readable ASDF file: corrupt ({type(exc).__name__}: {_one_line(exc)})"
        ) from None
    if "class" in tree and isinstance(tree.get("parameters"), dict):
        raise InputFileError(
            f"{p}: this is a step parameter file (class {tree['class']}), not an exposure; "
            f"give it as the step's configuration: `strun {p.name} my_cal.fits` or "
            f"`Step.call('my_cal.fits', config_file='{p.name}')`"
        )


def is_association(path):
    """
    Whether a file name names an association: a ``.json`` suffix, as jwst's steps decide.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bool
    """
    return Path(os.fspath(path)).suffix.lower() == ".json"


def _load_association(p):
    """The association in ``p``, loaded as jwst's ``ModelContainer`` loads it."""
    from jwst.datamodels import ModelContainer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ModelContainer.read_asn(str(p))
    except Exception as exc:  # noqa: BLE001 - jwst raises several types; reason found below
        raise InputFileError(
            f"{p}: not a readable association: {_association_problem(p, exc)}"
        ) from None


def _association_problem(p, exc):
    """Why jwst could not load ``p``, in words: the JSON error or the schema's reason."""
    try:
        json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return "not a text file"
    except json.JSONDecodeError as jexc:
        return f"not valid JSON ({jexc})"
    except OSError as oexc:
        return f"cannot read it ({oexc.strerror or oexc})"
    cause = exc
    while cause is not None:
        message = getattr(cause, "message", None)  # jsonschema's ValidationError
        if isinstance(message, str) and message:
            return f"not a JWST association ({_one_line(message)})"
        cause = cause.__cause__ or cause.__context__
    return f"not a JWST association ({type(exc).__name__}: {_one_line(exc)})"


def association_members(path):
    """
    The member files jwst opens for an association, as it resolves them.

    jwst's ``ModelContainer`` opens every member of the association's first product,
    at ``expname`` relative to the association's folder.

    Parameters
    ----------
    path : str or os.PathLike
        The association file (``*.json``).

    Returns
    -------
    list of Path
        Member paths, in the association's order (empty if it lists none).

    Raises
    ------
    InputFileError
        If the association cannot be loaded or a member has no ``expname``.
    """
    p = Path(os.fspath(path))
    _check_exists(p, "an association file")
    asn = _load_association(p)
    products = asn.get("products") or [{}]
    members = products[0].get("members") or []
    paths = []
    for i, member in enumerate(members):
        expname = member.get("expname") if isinstance(member, dict) else None
        if not expname:
            raise InputFileError(f"{p}: member {i + 1} of its first product has no 'expname'")
        paths.append(p.parent / expname)
    return paths


def check_association(path):
    """
    Raise `InputFileError` if an association cannot be loaded or a member is bad.

    The association is loaded as jwst loads it; every member jwst would open
    (`association_members`) is checked with `check_input_file`.

    Parameters
    ----------
    path : str or os.PathLike
        The association file (``*.json``).

    Raises
    ------
    InputFileError
        The association cannot be read (missing, empty, not JSON, not an association),
        lists no members, or a member is missing, empty, corrupt, truncated or not a
        JWST datamodel. The message starts with the association's path; for a member
        it goes on with ``member <member path>: `` and the member's problem.
    """
    p = Path(os.fspath(path))
    members = association_members(p)
    if not members:
        raise InputFileError(
            f"{p}: the association lists no members in its first product; nothing to process"
        )
    for member in members:
        try:
            check_input_file(member)
        except InputFileError as exc:
            raise InputFileError(f"{p}: member {exc}") from None


def check_step_input(input_data):
    """
    Check what a step is given before it opens it.

    A file name gets `check_input_file`, an association (``*.json``)
    `check_association`, a list each of its file names. Datamodels and containers pass
    unchanged.

    Parameters
    ----------
    input_data : str, os.PathLike, list or datamodel
        The step's input.

    Raises
    ------
    InputFileError
        For the first bad file (see `check_input_file` and `check_association`), or an
        empty list.
    """
    if isinstance(input_data, (str, os.PathLike)):
        if is_association(input_data):
            check_association(input_data)
        else:
            check_input_file(input_data)
    elif isinstance(input_data, list):
        if not input_data:
            raise InputFileError("no input: the list of input files is empty")
        for item in input_data:
            if isinstance(item, (str, os.PathLike)):
                check_step_input(item)


def open_failure(input_data, exc):
    """
    One `InputFileError` for an error raised while opening an input that passed the checks.

    stdatamodels raises deep errors for a file whose FITS structure is sound but whose
    content is not (a corrupt embedded ASDF tree, no SCI extension, arrays of the wrong
    dimensions). For an association or a list, the member that fails is found by
    opening each one in turn; this happens only after a failure.

    Parameters
    ----------
    input_data : str, os.PathLike or list
        The input that failed to open.
    exc : Exception
        The error raised while opening it.

    Returns
    -------
    InputFileError
        Its message names the file (for a member, the association first) and quotes
        the error on one line: ``<file>: cannot be opened as a JWST datamodel (<type>:
        <message>)``.
    """
    files = _files_named(input_data)
    if len(files) == 1 and not files[0][1]:  # one file, not an association's member
        return _open_error(files[0][0], exc)
    from stdatamodels.jwst import datamodels

    for path, asn in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                datamodels.open(str(path)).close()
        except Exception as member_exc:  # noqa: BLE001 - the member that fails, however
            return _open_error(f"{asn}: member {path}" if asn else f"{path}", member_exc)
    if isinstance(input_data, (str, os.PathLike)):
        return _open_error(os.fspath(input_data), exc)
    return _open_error(", ".join(f"{path}" for path, _ in files) or repr(input_data), exc)


@contextmanager
def opening(input_data, passthrough=()):
    """
    Turn an error raised while opening checked input into one `InputFileError`.

    Wraps the opening of ``input_data`` (stpipe's metadata read, or the step's
    ``prepare_output``): an error stdatamodels raises for a file that passed the
    checks becomes `open_failure`'s one-line message naming the file. A datamodel or
    container given as input is not a file problem: its errors pass unchanged.

    Parameters
    ----------
    input_data : str, os.PathLike, list or datamodel
        What is being opened.
    passthrough : tuple of type, optional
        Error types to re-raise as they are (besides `InputFileError` and
        MemoryError).

    Raises
    ------
    InputFileError
        Naming the file (for a member, the association first) and quoting the error.
    """
    try:
        yield
    except (InputFileError, MemoryError, *passthrough):
        raise
    except Exception as exc:  # stdatamodels raises many types
        if not isinstance(input_data, (str, os.PathLike, list)):
            raise
        log.debug("Opening %s failed", input_data, exc_info=True)
        raise open_failure(input_data, exc) from None


def _files_named(input_data):
    """The files an input names, as (file, association it is a member of or "") pairs."""
    if isinstance(input_data, (str, os.PathLike)):
        if not is_association(input_data):
            return [(Path(os.fspath(input_data)), "")]
        try:
            members = association_members(input_data)
        except InputFileError:
            return []
        return [(m, os.fspath(input_data)) for m in members]
    if isinstance(input_data, list):
        return [pair for item in input_data for pair in _files_named(item)]
    return []


def _open_error(where, exc):
    what = f"{type(exc).__name__}: {_one_line(exc)}"
    return InputFileError(f"{where}: cannot be opened as a JWST datamodel ({what})")


def _one_line(exc):
    """An error message on one line, at most `MAX_CAUSE` characters."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]  # str(KeyError) adds quotes
    else:
        text = str(exc)
    text = " ".join(text.split()) or type(exc).__name__
    return text if len(text) <= MAX_CAUSE else text[: MAX_CAUSE - 3] + "..."
