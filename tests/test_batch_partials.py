"""Temporary folders of the batch runner's atomic writes (issue 10, defect 4).

A run removes only the temporary folders whose writer is gone (`atm_step.atomic`: the
writer holds a lock for the whole save). Two concurrent runs on one output folder no
longer destroy each other's saves in progress, and the folder of an attempt killed
mid-write is removed by the run that retried it. Writes are paused or killed at a
chosen point with `writekill`; the real runner, step and save code run.
"""

import os
import subprocess
import sys
from pathlib import Path


import distributed  # noqa: F401  (in the [test] extra: missing must fail)

from helpers import wait_for as _wait_for  # noqa: E402
from writekill import site_env  # noqa: E402

from atm_step.atomic import PARTIAL_MARK  # noqa: E402
from atm_step.batch import is_complete, output_name, run  # noqa: E402


def _partials(folder):
    return sorted(p for p in Path(folder).iterdir() if PARTIAL_MARK in p.name)


def test_second_run_leaves_first_runs_save_alone(mos_files, tmp_path):
    """Run A pauses in the middle of writing its output; run B, on the same folder,
    processes the same exposure and finishes; then A resumes and must finish too."""
    out = tmp_path / "out"
    out.mkdir()
    target = out / output_name(mos_files[0])
    go = tmp_path / "go"
    env = site_env(tmp_path / "site", ATM_TEST_PAUSE_AFTER_ARRAYS=2, ATM_TEST_GO=go,
                   ATM_TEST_MATCH=f"{target.name}{PARTIAL_MARK}")
    first = subprocess.Popen(
        [sys.executable, "-m", "atm_step.cli", "run", str(mos_files[0]), "-o", str(out),
         "--workers", "1", "--no-progress", "--oversample", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for(lambda: Path(f"{go}.paused").exists() or first.poll() is not None, 240,
                  "run A to pause in the middle of its write")
        assert first.poll() is None, first.communicate()
        (a_folder,) = _partials(out)
        report = run([mos_files[0]], output_dir=out, workers=1, oversample=2, progress=False)
        assert report.ok, report.table()
        assert _partials(out) == [a_folder]  # A's save in progress is still there
        go.touch()
        stdout, stderr = first.communicate(timeout=240)
    finally:
        go.touch()
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, stdout + stderr
    assert " done " in stdout
    assert is_complete(target) and not _partials(out)


def test_partial_of_killed_attempt_is_removed_after_retry(mos_files, tmp_path, monkeypatch):
    """A worker is killed (SIGKILL) in the middle of writing; Dask retries the task on a
    fresh worker; when the run returns, no temporary folder is left."""
    out = tmp_path / "out"
    target = out / output_name(mos_files[1])
    env = site_env(tmp_path / "site", ATM_TEST_KILL_AFTER_ARRAYS=2,
                   ATM_TEST_KILL_ONCE=tmp_path / "killed-once",
                   ATM_TEST_MATCH=f"{target.name}{PARTIAL_MARK}")
    for key in ("PYTHONPATH", "ATM_TEST_KILL_AFTER_ARRAYS", "ATM_TEST_KILL_ONCE",
                "ATM_TEST_MATCH"):
        monkeypatch.setenv(key, env[key])  # inherited by the local cluster's workers
    report = run([mos_files[1]], output_dir=out, workers=1, oversample=2, progress=False)
    assert (tmp_path / "killed-once").exists()  # a worker did die mid-write
    row = report.rows[0]
    assert row.status == "done" or "worker processing it died" in row.error, report.table()
    assert not _partials(out)
    if row.status == "done":
        assert is_complete(target)
    assert os.listdir(out) == ([target.name] if row.status == "done" else [])
