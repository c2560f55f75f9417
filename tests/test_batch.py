"""Tests of the batch runner (``atm-step run``, `atm_step.batch.run`) on real Dask clusters.

Every cluster here runs on 127.0.0.1 with bounded timeouts and is shut down by the
test that started it. Workers import this module (for :class:`SlowStep`), so the
tests folder is put on ``PYTHONPATH`` for them.
"""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import distributed  # noqa: F401  (in the [test] extra: missing must fail)

from helpers import wait_for as _wait_for  # noqa: E402

from atm_step.batch import expand_inputs, is_complete, output_name, run  # noqa: E402
from atm_step.batch.task import same_oversampling  # noqa: E402
from atm_step.cli import main  # noqa: E402
from atm_step.step import AdaptiveTraceModelStep  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent
STEP = "atm_step.step.AdaptiveTraceModelStep"
SLOW_STEP = "test_batch.SlowStep"
#: Arrays compared bit for bit between batch outputs and one-by-one step runs.
ARRAYS = ("data", "err", "dq", "var_poisson", "var_rnoise", "var_flat", "trace_model")


class SlowStep(AdaptiveTraceModelStep):
    """The real step, slowed down so that a batch can be interrupted mid-way."""

    class_alias = "slow_adaptive_trace_model"

    def process(self, input_data):
        time.sleep(float(os.environ.get("ATM_TEST_SLEEP", "2")))
        return super().process(input_data)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def worker_path(monkeypatch):
    """Let worker processes (spawned or started as commands) import this module."""
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS_DIR), old])))


@pytest.fixture(scope="module")
def mrs_files(miri_data, tmp_path_factory):
    """Three MIRI MRS exposures with real geometry and a point source at different places."""
    from helpers import inject_point_source, miri_mrs_model

    work = tmp_path_factory.mktemp("mrs")
    model = miri_mrs_model(miri_data, work)
    paths = []
    for i, (alpha0, beta0) in enumerate([(0.3, 0.1), (-0.8, 0.5), (1.1, -0.4)]):
        inject_point_source(model, alpha0=alpha0, beta0=beta0, nsub=1, seed=10 + i)
        path = work / f"jw0999900100{i + 1}_02101_00001_mirifulong_cal.fits"
        model.meta.filename = path.name
        model.save(str(path))
        paths.append(path)
    model.close()
    return paths


@pytest.fixture
def mos_copies(mos_files, tmp_path):
    """The three MOS cutouts, copied (input folders of some tests receive extra files)."""
    folder = tmp_path / "in"
    folder.mkdir()
    return [Path(shutil.copy(p, folder)) for p in mos_files]


@pytest.fixture
def bad_files(tmp_path):
    """A corrupt FITS file and a valid file of an unsupported model type (imaging)."""
    from stdatamodels.jwst import datamodels

    folder = tmp_path / "bad"
    folder.mkdir()
    corrupt = folder / "jw01000001001_01101_00001_nrs1_cal.fits"
    corrupt.write_bytes(b"SIMPLE  =                    T" + b"\0" * 500)
    image = folder / "jw01000001001_01101_00001_nrcalong_cal.fits"
    with datamodels.ImageModel(data=np.ones((32, 32), dtype=np.float32)) as m:
        m.meta.exposure.type = "NRC_IMAGE"
        m.meta.instrument.name = "NIRCAM"
        m.save(str(image))
    return corrupt, image


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _outputs(folder):
    return sorted(Path(folder).glob("*_atm.fits"))


def _partials(folder):
    return sorted(Path(folder).glob(".*.partial-*"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc, timeout=20):
    """Stop a process group started by a test: SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)


# ----------------------------------------------------------------- fast, no cluster
def test_output_name_follows_stpipe_suffixes():
    assert output_name("/d/jw01_02101_00001_mirifulong_cal.fits") == (
        "jw01_02101_00001_mirifulong_atm.fits"
    )
    assert output_name("a/x_photom.fits", "adaptive_trace_model") == (
        "x_adaptive_trace_model.fits"
    )
    assert output_name("x.138.1345_933.fits") == "x.138.1345_933_atm.fits"


def test_expand_inputs_globs_associations_and_problems(tmp_path, mos_files):
    folder = tmp_path / "obs"
    folder.mkdir()
    for p in mos_files[:2]:
        shutil.copy(p, folder)
    (folder / "jw9_nrs1_cal.fits").write_bytes(b"x")  # the cal file of a rate member
    asn = folder / "l2_asn.json"
    asn.write_text(json.dumps({"asn_type": "spec2", "products": [{"name": "p", "members": [
        {"expname": "jw9_nrs1_rate.fits", "exptype": "science"},
        {"expname": "bg_cal.fits", "exptype": "background"},
        {"expname": mos_files[0].name, "exptype": "science"},
    ]}]}))
    bad_asn = folder / "bad_asn.json"
    bad_asn.write_text("{not json")
    binary_asn = folder / "binary_asn.json"  # was a bare UnicodeDecodeError, no file name
    binary_asn.write_bytes(b"\xff\xfe{")
    got = expand_inputs([str(folder / "*phot*.fits"), str(asn), str(bad_asn), str(binary_asn),
                         str(folder / "missing_cal.fits"), str(folder / "*.nothing")])
    ok = [e.path for e in got if e.error is None]
    errors = [e.error for e in got if e.error]
    # two from the glob, the rate member's cal file; the duplicate is dropped
    assert ok == sorted(str(folder / p.name) for p in mos_files[:2]) + [
        str(folder / "jw9_nrs1_cal.fits")]
    assert any("bad_asn.json: not a valid association" in e for e in errors)
    assert any("binary_asn.json: not a valid association (not UTF-8 text)" in e for e in errors)
    assert any("missing_cal.fits: no such file" in e for e in errors)
    assert any("pattern matched no files" in e for e in errors)


def test_is_complete_rejects_truncated_and_unfinished(tmp_path, mos_files):
    from stdatamodels.jwst import datamodels

    with datamodels.open(mos_files[0]) as m:
        m.meta.cal_step.adaptive_trace_model = "COMPLETE"
        m.save(str(tmp_path / "done.fits"))
        m.meta.cal_step.adaptive_trace_model = "FAILED"
        m.save(str(tmp_path / "failed.fits"))
    assert is_complete(tmp_path / "done.fits")
    assert not is_complete(tmp_path / "failed.fits")
    assert not is_complete(tmp_path / "absent.fits")
    raw = (tmp_path / "done.fits").read_bytes()
    (tmp_path / "cut.fits").write_bytes(raw[: len(raw) // 2])
    assert not is_complete(tmp_path / "cut.fits")


def test_missing_dask_says_how_to_install(monkeypatch, capsys, mos_files, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)
    status = main(["run", str(mos_files[0]), "-o", str(tmp_path), "--no-progress"])
    assert status == 2
    assert "pip install 'atm-step[batch]'" in capsys.readouterr().err


def test_unwritable_output_folder_fails_before_any_work(capsys, mos_files, tmp_path, monkeypatch):
    """Was found only after each exposure's fit (permission bits do not stop root, so a
    read-only folder is stood in for by the write check's own failure)."""
    import errno
    import types

    import atm_step.atomic as atomic

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    # only the check's temporary file fails (Numba's cache uses tempfile too)
    monkeypatch.setattr(atomic, "tempfile", types.SimpleNamespace(TemporaryFile=read_only))
    status = main(["run", str(mos_files[0]), "-o", str(tmp_path), "--no-progress"])
    assert status == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}: cannot write the outputs there (OSError: Read-only file system)" in err
    assert not _outputs(tmp_path)


def test_bad_step_parameter_fails_before_any_work(capsys, mos_files, tmp_path):
    status = main(["run", str(mos_files[0]), "-o", str(tmp_path), "--oversample", "0.5",
                   "--param-file", str(tmp_path / "nope.asdf")])
    assert status == 2
    assert "nope.asdf not found" in capsys.readouterr().err
    assert not _outputs(tmp_path)


# -------------------------------------------------------------------- with clusters
def test_local_cluster_equals_one_by_one(mrs_files, mos_files, tmp_path):
    """2 local workers on MRS real-geometry and MOS exposures == the step run one by one."""
    inputs = [*mrs_files, *mos_files]
    before = {p: _sha(p) for p in inputs}
    report = run(inputs, output_dir=tmp_path / "out", oversample=2, workers=2,
                 step_class=STEP, progress=False)
    assert report.ok and report.n_done == len(inputs), report.table()
    assert report.n_workers == 2
    assert {_sha(p) for p in inputs} == set(before.values())  # inputs untouched
    assert not _partials(tmp_path / "out")
    for path, row in zip(inputs, report):
        assert Path(row.input).resolve() == Path(path).resolve() and row.status == "done"
        assert row.counts_from == "step" and row.regions_total >= 1
        expected = AdaptiveTraceModelStep.call(str(path), oversample=2)
        from stdatamodels.jwst import datamodels

        with datamodels.open(row.output) as got:
            assert got.meta.filename == Path(row.output).name
            assert got.meta.cal_step.adaptive_trace_model == "COMPLETE"
            for name in ARRAYS:
                a, b = getattr(expected, name, None), getattr(got, name, None)
                if a is None:
                    assert b is None, name
                    continue
                a, b = np.asarray(a), np.asarray(b)
                assert a.dtype.newbyteorder("=") == b.dtype.newbyteorder("="), name
                assert a.shape == b.shape, name
                assert np.array_equal(a, b, equal_nan=True), f"{path.name}: {name} differs"
            assert row.model_pixels is not None and row.model_pixels >= 0
        expected.close()
    mrs_rows = report.rows[:3]
    assert all(r.regions_fitted >= 1 for r in mrs_rows), report.table()
    assert "exposures/min" in report.table()


def test_bad_files_are_isolated(mos_copies, bad_files, tmp_path, capsys):
    corrupt, image = bad_files
    out = tmp_path / "out"
    status = main(["run", str(corrupt), *map(str, mos_copies), str(image),
                   "-o", str(out), "--workers", "2", "--no-progress", "--step", STEP])
    assert status == 1
    table = capsys.readouterr().out
    assert table.count(" done ") == 3
    assert f"FAILED {corrupt}: not a readable FITS file" in table
    assert f"FAILED {image}: the step did not process this ImageModel" in table
    assert "Traceback" not in table
    assert len(_outputs(out)) == 3 and all(is_complete(p) for p in _outputs(out))


def test_interrupted_run_leaves_no_truncated_output_and_rerun_finishes(mos_copies, tmp_path):
    """Interrupt `atm-step run` (Ctrl-C) mid-batch, truncate one output, rerun."""
    out = tmp_path / "out"
    env = dict(os.environ, ATM_TEST_SLEEP="3")
    cmd = [sys.executable, "-m", "atm_step.cli", "run", *map(str, mos_copies), "-o", str(out),
           "--workers", "1", "--no-progress", "--step", SLOW_STEP]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: _outputs(out) or proc.poll() is not None, 120, "a first output")
        os.kill(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        _stop(proc)
    assert proc.returncode == 130, stderr
    assert "rerun the same command" in stderr
    first = _outputs(out)
    assert 1 <= len(first) < 3
    assert all(is_complete(p) for p in first)
    # a file truncated by something else (not our writer) is not taken as complete
    victim = out / output_name(mos_copies[2])
    shutil.copy(first[0], victim)
    with open(victim, "r+b") as fh:
        fh.truncate(victim.stat().st_size // 2)
    report = run(mos_copies, output_dir=out, workers=1, step_class=STEP, progress=False)
    statuses = {Path(r.input).name: r.status for r in report}
    assert report.ok, report.table()
    assert sorted(statuses.values()).count("skipped") == len(first)
    assert statuses[mos_copies[2].name] == "done"
    assert all(is_complete(p) for p in _outputs(out)) and len(_outputs(out)) == 3
    assert not _partials(out)
    # the same command with another N: the N = 1 outputs are made again, not skipped
    again = run(mos_copies, output_dir=out, workers=1, oversample=2, progress=False)
    assert again.ok and again.n_done == 3 and again.n_skipped == 0, again.table()
    for i in mos_copies:
        o = out / output_name(i)
        assert same_oversampling(i, o, 2) and not same_oversampling(i, o, 1)


def test_killed_worker_leaves_no_truncated_output(mos_copies, tmp_path):
    """SIGKILL one worker of a 2-worker local cluster mid-batch; then rerun."""

    out = tmp_path / "out"
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, host="127.0.0.1",
                                       env={"ATM_TEST_SLEEP": "2"})
    killed = []
    try:
        with distributed.Client(cluster, timeout=30) as client:
            pids = client.run(os.getpid)

            def kill_one():
                _wait_for(lambda: bool(_outputs(out)), 90, "a first output")
                victim = sorted(pids.values())[0]
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

            killer = threading.Thread(target=kill_one, daemon=True)
            killer.start()
            report = run(mos_copies, output_dir=out, scheduler=client, step_class=SLOW_STEP,
                         progress=False)
            killer.join(timeout=60)
    finally:
        cluster.close(timeout=30)
    assert killed
    # Dask reschedules the lost task on a live worker; if it gave up, the row says so.
    # A kill between the output's atomic rename and the task's return makes the retry
    # find a complete output: that row is 'skipped', and its output is whole.
    for row in report:
        if row.status == "skipped":
            assert is_complete(row.output)
        else:
            assert row.status == "done" or "worker processing it died" in (row.error or "")
    assert all(is_complete(p) for p in _outputs(out))
    again = run(mos_copies, output_dir=out, workers=1, step_class=STEP, progress=False)
    assert again.ok and len(_outputs(out)) == 3
    assert again.n_skipped == report.n_done + report.n_skipped
    assert not _partials(out)


def test_separately_started_scheduler(mos_copies, tmp_path, capsys):
    """`dask scheduler` + `dask worker` on 127.0.0.1, used through --scheduler."""
    dask_cli = Path(sys.executable).with_name("dask")
    if not dask_cli.exists():
        pytest.skip(f"dask command not found beside {sys.executable}")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = []
    try:
        procs.append(subprocess.Popen(
            [str(dask_cli), "scheduler", "--host", "127.0.0.1", "--port", str(port),
             "--no-dashboard"],
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(
            [str(dask_cli), "worker", address, "--host", "127.0.0.1", "--nworkers", "1",
             "--nthreads", "1", "--no-dashboard", "--name", "external-0"],
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        status = main(["run", *map(str, mos_copies), "--scheduler", address, "-o",
                       str(tmp_path / "out"), "--oversample", "2", "--no-progress",
                       "--step", STEP])
        assert status == 0, capsys.readouterr()
        assert len(_outputs(tmp_path / "out")) == 3
        assert capsys.readouterr().out.count(" done ") == 3
    finally:
        for proc in reversed(procs):
            _stop(proc)
