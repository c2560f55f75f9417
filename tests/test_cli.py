"""The ``atm-step`` command line: version, one-line user errors, shipped parameter names."""

import subprocess
import sys
from pathlib import Path

import pytest

import atm_step
from atm_step import params
from atm_step.cli import main


def _one_line_error(capsys, argv):
    """Run ``atm-step ARGV`` in-process; return (exit status, the one stderr line)."""
    status = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return status, lines[0]


def test_version_prints_package_and_jwst_versions():
    proc = subprocess.run([sys.executable, "-m", "atm_step", "--version"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"atm-step {atm_step.__version__} (jwst ")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["qa", "nonexist_cal.fits"], "atm-step qa: error: nonexist_cal.fits: no such file"),
        (["qa", "--simulate", "foo"], "invalid choice: 'foo'"),
        (["qa", "--oversample=0.5", "x_cal.fits"], "parameter oversample=0.5 is not allowed"),
        (["qa", "--oversample=nan", "x_cal.fits"], "parameter oversample=nan is not allowed"),
        (["qa", "--simulate", "point_source", "--nx", "0"], "--nx: 0 is not >= 1"),
        (["qa"], "give a cal file, --cubes"),
        (["qa", "--simulate", "point_source", "--nx", "120", "--columns", "500"],
         "columns [500] outside the image's 0..119"),
        (["qa", "--cubes", "a_s3d.fits", "b_s3d.fits"], "no such file: a_s3d.fits"),
        (["run", "--oversample=0.5", "x_cal.fits"], "oversample=0.5 is not allowed"),
        (["run", "--workers", "0", "x_cal.fits"], "workers=0 is not allowed"),
        (["run", "--param-file", "no_such_pars", "x_cal.fits"],
         "parameter file no_such_pars not found, and it is not a shipped name"),
        (["example", "--oversample", "0"], "parameter oversample=0.0 is not allowed"),
        (["example", "--nx", "-3"], "-3 is not >= 1"),
        (["bogus"], "invalid choice: 'bogus'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(capsys, tmp_path, monkeypatch, argv, expected):
    monkeypatch.chdir(tmp_path)
    status, line = _one_line_error(capsys, argv)
    assert status == 2
    assert line.startswith("atm-step")
    assert expected in line


def test_unreadable_file_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("not_jwst_cal.fits").write_text("this is not FITS")
    status, line = _one_line_error(capsys, ["qa", "not_jwst_cal.fits"])
    assert status == 2
    # the step's own check and message (was "cannot read ... as a JWST datamodel")
    assert line.startswith("atm-step qa: error: not_jwst_cal.fits: not a FITS or ASDF file")


def test_qa_names_a_truncated_after_file(capsys, tmp_path, monkeypatch):
    """A truncated second file: the step's message naming it (was a reshape error from
    astropy, naming both files)."""
    import numpy as np
    from astropy.io import fits

    monkeypatch.chdir(tmp_path)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((200, 200)), name="SCI")]).writeto(
        "whole_cal.fits")
    data = Path("whole_cal.fits").read_bytes()
    Path("cut_atm.fits").write_bytes(data[: len(data) // 2])
    status, line = _one_line_error(capsys, ["qa", "whole_cal.fits", "cut_atm.fits"])
    assert status == 2
    assert line.startswith("atm-step qa: error: whole_cal.fits: not a JWST datamodel")
    status, line = _one_line_error(capsys, ["qa", "cut_atm.fits", "cut_atm.fits"])
    assert line.startswith("atm-step qa: error: cut_atm.fits: truncated FITS file")


def test_installed_command_answers_in_one_line(tmp_path):
    """The real entry (a new Python process), not only main(): no traceback, status 2."""
    proc = subprocess.run([sys.executable, "-m", "atm_step", "qa", "nonexist_cal.fits"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "atm-step qa: error: nonexist_cal.fits: no such file"


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    from atm_step.cli import UsageError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="no such file"):
        main(["--debug", "qa", "nonexist_cal.fits"])


# ------------------------------------------------------------ shipped parameter files
@pytest.mark.parametrize("given", ["crowded_field", "crowded_field.asdf"])
def test_shipped_parameter_names_resolve(given, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert params.resolve(given) == params.path("crowded_field")
    # a file of the user's own with that name wins
    Path("crowded_field.asdf").write_text("mine")
    assert params.resolve("crowded_field.asdf") == "crowded_field.asdf"
    with pytest.raises(FileNotFoundError, match="crowded_field, point_source"):
        params.resolve("crowded")


def test_run_takes_a_shipped_parameter_name(monkeypatch, capsys, tmp_path):
    """``atm-step run ... --param-file crowded_field`` hands the shipped file to the runner."""
    import atm_step.batch as batch

    seen = {}

    class Report:
        exit_status = 0
        failed = ()

        def table(self):
            return "table"

    def fake_run(inputs, **kwargs):
        seen.update(kwargs)
        return Report()

    monkeypatch.setattr(batch, "run", fake_run)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "x_cal.fits", "--param-file", "crowded_field", "--no-progress"]) == 0
    assert seen["param_file"] == params.path("crowded_field")
