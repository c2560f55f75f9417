"""`strun atm` killed (SIGKILL) in the middle of writing its output (issue 10, defect 3).

The kill is placed deterministically (`writekill`): a ``sitecustomize`` module on the
child's ``PYTHONPATH`` wraps astropy's low-level FITS array writer so that, after a
given number of arrays of a file have reached the disk, the process sends itself
SIGKILL, as ``kill -9`` would. The real ``strun`` command runs; nothing in atm-step is
patched.
A killed save must leave the previous good output (or none), never a truncated file
under the final name; the next save removes the dead writer's temporary folder.
"""

import hashlib
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from astropy.io import fits
from writekill import site_env

from atm_step.atomic import PARTIAL_MARK, atomic_save, remove_partials


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
