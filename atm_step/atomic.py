"""Atomic output files: a crash or kill during a save never leaves a truncated file.

A model is saved under its final name inside a hidden temporary folder beside the
output, ``.<name>.partial-XXXX``, flushed to disk and moved into place with
`os.replace`; a reader sees either the previous file (or none) or the complete new
one. While it writes, the writer holds an exclusive `fcntl.flock` lock on a file in
its folder; the kernel releases the lock when the writer exits, however it exits
(kill -9 included). `remove_partials` therefore removes only folders whose writer is
gone, and never the folder of a save still in progress (another run writing to the
same output folder).

Used by the step for its outputs and intermediate products (`strun atm`,
``Step.call(..., save_results=True)``) and by the batch runner. `atomic_write` does the
same for a plain file written through a callback (the validation reports and caches).
"""

import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import socket
import tempfile
import time
from pathlib import Path

__all__ = ["PARTIAL_MARK", "WRITER_LOCK", "atomic_save", "atomic_write", "check_writable",
           "remove_partials"]

log = logging.getLogger(__name__)

#: Temporary folders of unfinished outputs are named ``.<output name>.partial-XXXX``.
PARTIAL_MARK = ".partial-"
#: Lock file inside a partial folder, held (flock) by its writer while it writes.
WRITER_LOCK = ".writer.lock"
#: A partial folder without a lock file (its writer died before taking the lock) is
#: removed only when older than this many seconds.
UNLOCKED_AGE = 600.0


def _take_lock(folder):
    """Create ``folder/WRITER_LOCK`` already locked (the lock is taken before the
    file gets its name, so no one can find it unlocked); return its descriptor."""
    tmp = folder / (WRITER_LOCK + ".new")
    fd = os.open(tmp, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        os.replace(tmp, folder / WRITER_LOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _writer_alive(folder):
    """
    Whether a partial folder's writer still holds its lock.

    Returns
    -------
    bool or None
        True (in use), False (writer gone), None (no lock file).
    """
    lock = folder / WRITER_LOCK
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return None
    except OSError:
        return True  # cannot tell: leave it alone
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we took
    return False


def remove_partials(output, unlocked_age=UNLOCKED_AGE):
    """
    Remove temporary folders left by interrupted saves of ``output``.

    A folder is removed only if its writer is gone: its lock file is not locked (the
    writer exited, was killed, or its machine rebooted), or it has no lock file and
    is older than ``unlocked_age`` seconds. The folder of a save in progress, by this
    process or any other, is left alone.

    Parameters
    ----------
    output : str or Path
        Final output path; its ``.<name>.partial-*`` siblings are examined.
    unlocked_age : float
        Age in seconds after which a folder without a lock file is removed.

    Returns
    -------
    int
        Number of folders removed.
    """
    output = Path(output)
    n = 0
    for stale in output.parent.glob(f".{output.name}{PARTIAL_MARK}*"):
        if not stale.is_dir():
            continue
        alive = _writer_alive(stale)
        if alive is None:
            try:
                alive = time.time() - stale.stat().st_mtime < unlocked_age
            except OSError:
                continue
        if alive:
            log.debug("Leaving %s: its writer is still running", stale)
            continue
        shutil.rmtree(stale, ignore_errors=True)
        log.info("Removed %s, left by an interrupted save", stale)
        n += 1
    return n


def atomic_save(model, output):
    """
    Save a datamodel to ``output`` atomically.

    The model is saved under its final name inside a locked temporary folder beside
    the output (so ``meta.filename`` is right and the rename stays on one file
    system), flushed to disk, then moved into place with `os.replace`. Partial folders
    of earlier saves of the same output whose writers are gone are removed first.

    Parameters
    ----------
    model : stdatamodels.DataModel
    output : str or Path
        Final path.

    Returns
    -------
    str
        The output path.

    Raises
    ------
    OSError
        If the output folder cannot be created or written in, or the write fails (a
        full disk). The error is of the same type as the one raised (e.g.
        `PermissionError`), with the same ``errno``, chained to it; its message starts
        with the output path and gives the cause, not the temporary folder's name.
        ``output`` is then left as it was and no temporary folder is left behind.
    """
    output = Path(output)
    existed = output.exists()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _output_error(exc, output, f"its folder {output.parent} cannot be created") from exc
    remove_partials(output)
    try:
        tmpdir = Path(tempfile.mkdtemp(prefix=f".{output.name}{PARTIAL_MARK}", dir=output.parent))
    except OSError as exc:
        raise _output_error(exc, output, f"no file can be created in {output.parent}") from exc
    fd = None
    try:
        fd = _take_lock(tmpdir)
        tmp = tmpdir / output.name
        model.save(str(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, output)
        with contextlib.suppress(OSError):
            dfd = os.open(output.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except OSError as exc:
        kept = "the previous file is left as it was" if existed else "no file was written"
        raise _output_error(exc, output, "writing it failed", f"; {kept}") from exc
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
        if fd is not None:
            os.close(fd)
    return str(output)


def atomic_write(path, write, binary=False):
    """
    Write a plain file atomically: through a temporary file beside it and a rename.

    The temporary file ``.<name>.tmp-XXXXXXXX`` is created with the permissions an
    ordinary `open` would give (0666 less the umask, unlike `tempfile.mkstemp`'s
    0600), filled by ``write``, flushed to disk and moved into place with
    `os.replace`: a reader sees the previous file (or none) or the complete new one.

    Parameters
    ----------
    path : str or Path
        Final path; its folder must exist.
    write : callable
        ``write(fh)`` writes the content to the open file object ``fh``.
    binary : bool
        Open the file in binary mode (``"wb"``) instead of UTF-8 text mode.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    OSError
        If the folder cannot be written in or the write fails; ``path`` is then left
        as it was and the temporary file is removed. Errors raised by ``write`` pass
        through unchanged, with the same clean-up.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        mode, encoding = ("wb", None) if binary else ("w", "utf-8")
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return str(path)


def check_writable(folder):
    """
    Check, before any work, that files can be created in an output folder.

    A file is created and removed there (permission bits do not stop root, while a
    read-only mount or an immutable folder does).

    Parameters
    ----------
    folder : str or Path
        An existing folder.

    Raises
    ------
    OSError
        Of the same type and ``errno`` as the failure, with the message
        ``"<folder>: cannot write the outputs there (<type>: <cause>)"``.
    """
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".atm_write_check_"):
            pass
    except OSError as exc:
        raise _same_kind(exc, f"{folder}: cannot write the outputs there "
                              f"({type(exc).__name__}: {_cause(exc)})") from exc


def _output_error(exc, output, what, after=""):
    """
    An error of ``exc``'s type (an OSError) whose message names ``output``.

    Parameters
    ----------
    exc : OSError
        The error raised while saving.
    output : Path
        The final output path.
    what : str
        What could not be done.
    after : str
        Appended to the message (what became of the output).

    Returns
    -------
    OSError
        ``"<output>: cannot save the output: <what> (<type>: <cause>)<after>"``, with
        the ``errno`` of ``exc``.
    """
    message = (f"{output}: cannot save the output: {what} ({type(exc).__name__}: "
               f"{_cause(exc)}){after}")
    return _same_kind(exc, message)


def _cause(exc):
    """The cause of an OSError on one line; strerror leaves out the file name, which may
    be a hidden temporary file's or folder's."""
    return exc.strerror or " ".join(str(exc).split())


def _same_kind(exc, message):
    """An OSError of ``exc``'s type and ``errno`` carrying ``message`` (no strerror)."""
    try:
        new = type(exc)(message)
    except Exception:  # noqa: BLE001 - a subclass with another signature
        new = OSError(message)
    if not isinstance(new, OSError):
        new = OSError(message)
    new.errno = exc.errno  # the message stays as set: no strerror
    return new
