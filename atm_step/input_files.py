"""Check an input file before stpipe or stdatamodels opens it, so that a bad file gives
one message naming the file and the problem instead of a deep traceback.

Checked: missing and empty files; FITS files that astropy cannot read, that are
truncated (their headers describe more bytes than the file holds) or that lack the
``ASDF`` extension every JWST pipeline product carries; ASDF files that are stpipe
parameter files rather than exposures. Anything else (an association, a valid
datamodel) passes unchanged.
"""

import logging
import os
import warnings
from pathlib import Path

__all__ = ["InputFileError", "check_input_file"]

log = logging.getLogger(__name__)


class InputFileError(ValueError):
    """An input file is missing, empty, corrupt, truncated or not a JWST datamodel."""


def check_input_file(path):
    """
    Raise `InputFileError` if ``path`` cannot be a JWST datamodel the step can open.

    Parameters
    ----------
    path : str or os.PathLike
        The input as given to the step (a FITS or ASDF datamodel, or an association).

    Raises
    ------
    InputFileError
        The message starts with the path and says what is wrong.
    """
    p = Path(os.fspath(path))
    if not p.exists():
        raise InputFileError(f"{p}: no such file")
    if p.is_dir():
        raise InputFileError(f"{p}: is a directory, not an exposure file")
    size = p.stat().st_size
    if size == 0:
        raise InputFileError(f"{p}: the file is empty (0 bytes)")
    with open(p, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"SIMPLE"):
        _check_fits(p, size)
    elif head.startswith(b"#ASDF"):
        _check_asdf(p)
    elif p.suffix.lower() in (".fits", ".fit", ".asdf"):
        raise InputFileError(
            f"{p}: not a FITS or ASDF file (it does not start as one); corrupt or mislabelled"
        )


def _check_fits(p, size):
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
            f"{p}: not a readable FITS file: corrupt or empty ({type(exc).__name__}: {exc})"
        ) from None
    if end > size:
        raise InputFileError(
            f"{p}: truncated FITS file: its headers describe {end} bytes but it holds only "
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
            f"{p}: not a readable ASDF file: corrupt ({type(exc).__name__}: {exc})"
        ) from None
    if "class" in tree and isinstance(tree.get("parameters"), dict):
        raise InputFileError(
            f"{p}: this is a step parameter file (class {tree['class']}), not an exposure; "
            f"give it as the step's configuration: `strun {p.name} my_cal.fits` or "
            f"`Step.call('my_cal.fits', config_file='{p.name}')`"
        )
