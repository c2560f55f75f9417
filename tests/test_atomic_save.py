"""`strun atm` killed (SIGKILL) in the middle of writing its output (issue 10, defect 3).

The kill is placed deterministically (`writekill`): a ``sitecustomize`` module on the
child's ``PYTHONPATH`` wraps astropy's low-level FITS array writer so that, after a
given number of arrays of a file have reached the disk, the process sends itself
SIGKILL, as ``kill -9`` would. The real ``strun`` command runs; nothing in atm-step is
patched.
A killed save must leave the previous good output (or none), never a truncated file
under the final name; the next save removes the dead writer's temporary folder.

A save into a read-only folder or onto a full disk (audit A, finding 9) raises an
OSError of the same type whose message names the output, not the hidden temporary
folder, and leaves the previous output and no temporary folder behind.
"""

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from astropy.io import fits
from writekill import site_env

from atm_step.atomic import PARTIAL_MARK, atomic_save, atomic_write, remove_partials


@pytest.fixture
def killer_env(tmp_path):
    """Environment for child processes that can be killed mid-write (tests/writekill.py)."""
    return site_env(tmp_path / "site")


def _strun(args, env, cwd):
    strun = str(Path(sys.executable).with_name("strun"))
    return subprocess.run([strun, "atm", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600, check=False)


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _partials(folder):
    return sorted(p for p in Path(folder).iterdir() if PARTIAL_MARK in p.name)


def _fits_files(folder):
    return sorted(p.name for p in Path(folder).glob("*.fits"))


def test_strun_killed_during_save_keeps_previous_output(mos_files, tmp_path, killer_env):
    out = tmp_path / "out"
    args = [str(mos_files[0]), "--oversample=2", f"--output_dir={out}"]
    good = _strun(args, killer_env, tmp_path)
    assert good.returncode == 0, good.stderr[-3000:]
    (output,) = out.glob("*.fits")
    before = _sha(output)
    with fits.open(output) as hdul:
        n_arrays = sum(h.data is not None for h in hdul)
    assert n_arrays >= 6  # SCI, DQ, ERR, VAR_*, WAVELENGTH, TRACE_MODEL ...

    # kill -9 after 3 arrays of the output file are on disk: the write is half done
    env = dict(killer_env, ATM_TEST_KILL_AFTER_ARRAYS="3", ATM_TEST_MATCH=output.name)
    killed = _strun(args, env, tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert _fits_files(out) == [output.name]
    assert _sha(output) == before  # the previous good output, untouched
    assert len(_partials(out)) == 1  # the dead writer's folder, until the next save

    again = _strun(args, killer_env, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _fits_files(out) == [output.name] and not _partials(out)
    with fits.open(output) as hdul:
        assert sum(h.data is not None for h in hdul) == n_arrays
        assert hdul[0].header["S_TRCMOD"] == "COMPLETE"


def test_strun_killed_during_first_save_leaves_no_output(mos_files, tmp_path, killer_env):
    out = tmp_path / "out"
    env = dict(killer_env, ATM_TEST_KILL_AFTER_ARRAYS="2", ATM_TEST_MATCH="")
    killed = _strun([str(mos_files[1]), "--oversample=2", f"--output_dir={out}"], env,
                    tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert _fits_files(out) == []


def test_killed_intermediate_product_leaves_no_file(mos_files, tmp_path, killer_env):
    """Intermediate products (save_intermediate_results) are written atomically too."""
    out = tmp_path / "out"
    env = dict(killer_env, ATM_TEST_KILL_AFTER_ARRAYS="1", ATM_TEST_MATCH="spline_full")
    killed = _strun([str(mos_files[2]), "--oversample=2", "--save_intermediate_results=true",
                     f"--output_dir={out}"], env, tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not list(out.glob("*spline_full*.fits"))
    assert len(_partials(out)) == 1  # the dead writer's folder, hidden


def test_remove_partials_keeps_a_live_writer(tmp_path, mos_files):
    """A folder whose writer holds its lock survives; a dead writer's is removed."""
    from stdatamodels.jwst import datamodels

    output = tmp_path / "x_atm.fits"
    # a live writer: a child process that holds the lock of its partial folder
    live = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, tempfile
            from pathlib import Path
            from atm_step.atomic import PARTIAL_MARK, _take_lock
            d = Path(tempfile.mkdtemp(prefix=".x_atm.fits" + PARTIAL_MARK, dir={str(tmp_path)!r}))
            fd = _take_lock(d)
            print(d, flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        live_dir = Path(live.stdout.readline().strip())
        dead = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(f"""
                import os, signal, tempfile
                from pathlib import Path
                from atm_step.atomic import PARTIAL_MARK, _take_lock
                d = Path(tempfile.mkdtemp(prefix=".x_atm.fits" + PARTIAL_MARK,
                                          dir={str(tmp_path)!r}))
                _take_lock(d)
                os.kill(os.getpid(), signal.SIGKILL)
            """)], check=False,
        )  # fmt: skip
        assert dead.returncode == -signal.SIGKILL
        assert len(_partials(tmp_path)) == 2
        assert remove_partials(output) == 1
        assert _partials(tmp_path) == [live_dir]
        # a save by another process to the same output leaves the live folder alone
        model = datamodels.open(str(mos_files[0]))
        atomic_save(model, output)
        assert _partials(tmp_path) == [live_dir] and output.is_file()
    finally:
        live.communicate(timeout=30)
    assert remove_partials(output) == 1 and not _partials(tmp_path)


@contextlib.contextmanager
def _read_only(folder, monkeypatch):
    """Make ``folder`` unwritable: its mode for a normal user; for root, who ignores
    modes, the immutable attribute (``chattr +i``). Where neither works (root without
    the capability), creating anything in ``folder`` is made to fail as the kernel
    would, with a PermissionError from `tempfile.mkdtemp`."""
    undo = []
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo = [["chmod", "755", str(folder)]]
    else:
        chattr = shutil.which("chattr")
        if chattr and subprocess.run([chattr, "+i", str(folder)], capture_output=True,
                                     check=False).returncode == 0:  # fmt: skip
            undo = [[chattr, "-i", str(folder)]]
    try:
        try:
            (folder / ".probe").touch()
        except PermissionError:
            pass
        else:
            (folder / ".probe").unlink()

            def refuse(*args, dir=None, **kwargs):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))

            monkeypatch.setattr(tempfile, "mkdtemp", refuse)
        yield
    finally:
        for command in undo:
            subprocess.run(command, check=True)


def test_read_only_folder_names_the_output(tmp_path, mos_files, monkeypatch):
    """Was: PermissionError naming the hidden ``.<name>.partial-XXXX`` folder."""
    from stdatamodels.jwst import datamodels

    folder = tmp_path / "ro"
    folder.mkdir()
    output = folder / "x_atm.fits"
    with datamodels.open(str(mos_files[0])) as model:
        atomic_save(model, output)
        before = _sha(output)
        with _read_only(folder, monkeypatch), pytest.raises(PermissionError) as info:
            atomic_save(model, output)
    message = str(info.value)
    assert message.startswith(
        f"{output}: cannot save the output: no file can be created in {folder} "
        "(PermissionError: "), message  # fmt: skip
    assert PARTIAL_MARK not in message
    assert isinstance(info.value.__cause__, PermissionError)
    assert info.value.errno == info.value.__cause__.errno
    assert _sha(output) == before and not _partials(folder)


FULL_DISK_CHILD = textwrap.dedent("""
    import json, resource, signal, sys, warnings

    from stdatamodels.jwst import datamodels

    from atm_step.atomic import atomic_save

    warnings.simplefilter("ignore")
    model = datamodels.open(sys.argv[1])
    # no file may grow beyond the limit: writes past it fail with EFBIG, as on a full disk
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE,
                       (int(sys.argv[2]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    for output in sys.argv[3:]:
        try:
            atomic_save(model, output)
            print(json.dumps(None), flush=True)
        except OSError as exc:
            print(json.dumps({"type": type(exc).__name__, "message": str(exc),
                              "errno": exc.errno, "cause": repr(exc.__cause__)}), flush=True)
""")


def test_full_disk_names_the_output_and_keeps_the_previous_one(tmp_path, mos_files):
    """A write that fails half-way (the file size limit stands in for a full disk: the
    same write error, without root): was astropy's OSError with no output name."""
    from stdatamodels.jwst import datamodels

    previous, new = tmp_path / "x_atm.fits", tmp_path / "new_atm.fits"
    with datamodels.open(str(mos_files[0])) as model:
        atomic_save(model, previous)
    before = _sha(previous)
    limit = previous.stat().st_size // 2
    proc = subprocess.run([sys.executable, "-c", FULL_DISK_CHILD, str(mos_files[0]), str(limit),
                           str(previous), str(new)], capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    for output, kept in ((previous, "the previous file is left as it was"),
                         (new, "no file was written")):  # fmt: skip
        result = results.pop(0)
        assert result is not None, f"{output}: the save did not fail"
        # astropy reports the short write ("8525 requested and 2520 written") or the
        # next one's EFBIG ("File too large"), as it would ENOSPC
        assert result["type"] == "OSError", result
        message = result["message"]
        assert message.startswith(f"{output}: cannot save the output: writing it failed "
                                  "(OSError: "), result  # fmt: skip
        assert message.endswith(f"); {kept}") and PARTIAL_MARK not in message, result
        assert result["cause"].startswith("OSError("), result
    assert _sha(previous) == before and not new.exists()
    assert _fits_files(tmp_path) == [previous.name] and not _partials(tmp_path)


def test_atomic_write_permissions_and_failure(tmp_path):
    """atomic_write (validation reports and caches): the umask's permissions, not
    mkstemp's owner-only 0600; a failing writer keeps the previous file, leaves no
    temporary file and passes its error on."""
    path = tmp_path / "report.md"
    old = os.umask(0o022)
    try:
        assert atomic_write(path, lambda fh: fh.write("first")) == str(path)
        assert path.stat().st_mode & 0o777 == 0o644
        os.umask(0o027)
        atomic_write(path, lambda fh: fh.write("second"))
        assert path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
    assert path.read_text() == "second"

    def broken(fh):
        fh.write(b"partial")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        atomic_write(path, broken, binary=True)
    assert path.read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]
