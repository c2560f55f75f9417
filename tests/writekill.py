"""Kill or pause a child process in the middle of writing a FITS file, deterministically.

`site_env` returns an environment whose ``PYTHONPATH`` starts with a folder holding a
``sitecustomize`` module. Python imports it at start-up in every child process (the
``strun`` and ``atm-step`` commands, Dask workers), where it wraps astropy's low-level
FITS array writer (``astropy.io.fits.file._File.writearray``). Controlled by:

``ATM_TEST_KILL_AFTER_ARRAYS=N``
    after N arrays of one file whose path contains ``ATM_TEST_MATCH`` are on disk, the
    process sends itself SIGKILL (what ``kill -9`` does);
``ATM_TEST_KILL_ONCE=PATH``
    with the above: kill only if PATH does not exist yet (it is created first), so a
    retried task succeeds;
``ATM_TEST_PAUSE_AFTER_ARRAYS=N`` and ``ATM_TEST_GO=PATH``
    after N arrays, write PATH + ".paused" and wait (up to 5 minutes) until PATH exists.

Nothing in atm-step is patched: the real save code runs and is interrupted.
"""

import os
import textwrap

SITECUSTOMIZE = textwrap.dedent(
    """
    # atm-step test helper (tests/writekill.py): interrupt FITS writes on request
    import os

    if os.environ.get("ATM_TEST_KILL_AFTER_ARRAYS") or os.environ.get("ATM_TEST_PAUSE_AFTER_ARRAYS"):
        import signal
        import time

        from astropy.io.fits import file as _fits_file

        _original = _fits_file._File.writearray
        _counts = {}

        def _writearray(self, array):
            _original(self, array)
            name = str(getattr(self, "name", ""))
            if os.environ.get("ATM_TEST_MATCH", "") not in name:
                return
            _counts[name] = _counts.get(name, 0) + 1
            env = os.environ
            if _counts[name] == int(env.get("ATM_TEST_KILL_AFTER_ARRAYS") or 0):
                once = env.get("ATM_TEST_KILL_ONCE")
                if once:
                    if os.path.exists(once):
                        return
                    open(once, "w").close()
                self._file.flush()
                os.fsync(self._file.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
            if _counts[name] == int(env.get("ATM_TEST_PAUSE_AFTER_ARRAYS") or 0):
                self._file.flush()
                go = env["ATM_TEST_GO"]
                open(go + ".paused", "w").close()
                end = time.monotonic() + 300
                while not os.path.exists(go) and time.monotonic() < end:
                    time.sleep(0.05)

        _fits_file._File.writearray = _writearray
    """
)


def site_env(folder, base=None, **settings):
    """
    An environment for child processes with the write-interrupting ``sitecustomize``.

    Parameters
    ----------
    folder : Path
        Where to write ``sitecustomize.py`` (a fresh folder).
    base : dict, optional
        Environment to start from (default ``os.environ``).
    **settings : str
        ``ATM_TEST_*`` variables (see the module docstring).

    Returns
    -------
    dict
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
    env.update({k: str(v) for k, v in settings.items()})
    return env
