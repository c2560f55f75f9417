"""QA pictures: figures from a core run, the CLI on a simulated scene, the missing-extra message."""

import sys
from argparse import ArgumentParser
from pathlib import Path

import numpy as np
import pytest

from atm_step.core import FitParameters, adaptive_trace_model
from atm_step.simulate import make_scene


@pytest.fixture(scope="module")
def run():
    sc = make_scene("point_source", nx=150, ny=None, noise=0.01, seed=2)
    reg_os, alpha_os = sc.oversampled_alpha(2)
    res = adaptive_trace_model(sc.flux, sc.alpha, sc.regions, err=sc.err, oversample=2, alpha_os=alpha_os,
                               parameters=FitParameters.nirspec_ifu("NRS1"))
    return sc, res, alpha_os


def _is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_profile_and_map_figures(tmp_path, run):
    from atm_step.qa import plots
    from atm_step.qa.cli import qa_for_arrays

    sc, res, alpha_os = run
    region = int(res.region_ids[res.fitted][np.argmax(res.n_band_rows[res.fitted])])
    a_nb, p_nb, a_c, p_c, norm = plots.normalised_profile(sc.flux, sc.alpha, sc.regions, region, 100, window=10)
    # each column normalised to unit sum; 20 neighbours of ~30 rows
    assert p_c.sum() == pytest.approx(1.0)
    assert a_nb.size > 20 * 25
    paths = qa_for_arrays(tmp_path, sc.flux, sc.alpha, sc.regions, res, alpha_os=alpha_os, prefix="t")
    assert len(paths) == 2 and all(_is_png(p) for p in paths)


def test_spectra_figure(tmp_path):
    from atm_step.qa import plots

    cube = np.random.default_rng(1).uniform(1, 2, (4, 5, 50))
    ap = cube.sum(axis=(0, 1))
    path = plots.spectra_figure(tmp_path / "s.png", [cube, cube], [(1, 1), (2, 2)], [ap, ap], labels=["a", "b"])
    assert _is_png(path)


def test_cli_simulate(tmp_path, capsys):
    from atm_step.qa import cli

    parser = cli.add_arguments(ArgumentParser())
    args = parser.parse_args(["--simulate", "point_source", "--oversample", "2", "--nx", "120", "--out", str(tmp_path)])
    assert cli.run_from_args(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["point_source_model_map.png", "point_source_profiles.png"]
    from atm_step.cli import UsageError

    with pytest.raises(UsageError, match="give a cal file"):
        cli.run_from_args(parser.parse_args(["--out", str(tmp_path)]))


def test_missing_matplotlib_message(monkeypatch):
    from atm_step.qa import require_matplotlib

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install atm-step\[qa\]"):
        require_matplotlib()


def test_robust_limits_ignore_one_outlier():
    from atm_step.qa.plots import robust_limits

    y = np.r_[np.linspace(0.0, 0.1, 300), -0.4]  # the MOS panel's stray sample
    bottom, top = robust_limits(y)
    assert -0.01 < bottom < 0.0 and 0.1 < top < 0.11
    assert min(y) < bottom  # the outlier is off the panel, not stretching it
    assert robust_limits([np.nan]) is None


@pytest.mark.parametrize("n", [3.0, 2.5])
def test_qa_reads_n_from_slit_files_and_names_file_and_slit(mos_files, tmp_path, monkeypatch, n):
    """A MOS slit (SlitModel) oversampled N times: QA reads N from the output, titles name the
    file and the slit, PNG names carry the slit name (no bare index)."""
    from atm_step import AdaptiveTraceModelStep
    from atm_step.qa import cli, plots

    before = mos_files[0]
    after = tmp_path / "after_atm.fits"
    AdaptiveTraceModelStep.call(str(before), oversample=n).save(str(after))
    assert cli.oversample_from_files(before, after) == n
    seen = {}

    def spy(path, result, regions, title=None):
        seen.update(oversample=result.oversample, title=title)
        return str(path)

    monkeypatch.setattr(plots, "model_map_figure", spy)
    written = cli.qa_for_files(tmp_path / "qa", before, after)
    stem = before.name.removesuffix(".fits")
    assert [Path(p).name for p in written] == [f"{stem}_slit138_profiles.png", f"{stem}_slit138_model_map.png"]
    assert seen["oversample"] == n
    assert seen["title"].startswith(f"{before.name}, slit 138\n")


def test_qa_n_is_one_for_a_native_output(mos_files, tmp_path):
    from atm_step import AdaptiveTraceModelStep
    from atm_step.qa import cli

    after = tmp_path / "after_atm.fits"
    AdaptiveTraceModelStep.call(str(mos_files[0]), oversample=1).save(str(after))
    assert cli.oversample_from_files(mos_files[0], after) == 1.0


def test_a_failed_write_leaves_the_previous_picture(tmp_path, monkeypatch):
    """A picture is written under a temporary name and renamed into place: a write that
    fails half-way (here: after 10 bytes) leaves the previous picture as it was and no
    partial file."""
    from matplotlib.figure import Figure

    from atm_step.qa import plots

    cube = np.random.default_rng(1).uniform(1, 2, (4, 5, 50))
    ap = cube.sum(axis=(0, 1))
    path = plots.spectra_figure(tmp_path / "s.png", [cube], [(1, 1)], [ap])
    before = Path(path).read_bytes()

    def broken(self, fname, **kwargs):
        with open(fname, "wb") as fh:
            fh.write(b"\x89PNG\r\n\x1a\n\x00\x00")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        plots.spectra_figure(tmp_path / "s.png", [cube * 2], [(1, 1)], [ap * 2])
    assert Path(path).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.png"]


def test_qa_n_is_one_for_a_mock_ifu_file_at_n1(tmp_path):
    """The mock NIRSpec IFU WCS (the example's files) starts with a ``coordinates``
    frame whose transform is a single model, not a compound one: QA crashed reading N
    from it (``'Identity' object has no attribute 'traverse_postorder'``) for an output
    at N = 1 or for the cal file itself."""
    from atm_step import AdaptiveTraceModelStep
    from atm_step.qa import cli
    from atm_step.simulate import make_scene
    from atm_step.simulate.to_datamodel import scene_to_ifu_model

    cal = tmp_path / "mock_nrs1_cal.fits"
    scene_to_ifu_model(make_scene("point_source", nx=120, ny=None, seed=1), filename=cal.name).save(str(cal))
    assert cli.oversample_from_files(cal, cal) == 1.0
    after = tmp_path / "mock_nrs1_atm.fits"
    AdaptiveTraceModelStep.call(str(cal), oversample=1).save(str(after))
    assert cli.oversample_from_files(cal, after) == 1.0
    after3 = tmp_path / "mock3_nrs1_atm.fits"
    AdaptiveTraceModelStep.call(str(cal), oversample=3).save(str(after3))
    assert cli.oversample_from_files(cal, after3) == 3.0
