"""QA pictures: figures from a core run, the CLI on a simulated scene, the missing-extra message."""

import sys
from argparse import ArgumentParser

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
    assert cli.run_from_args(parser.parse_args(["--out", str(tmp_path)])) == 2


def test_missing_matplotlib_message(monkeypatch):
    from atm_step.qa import require_matplotlib

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install atm-step\[qa\]"):
        require_matplotlib()
