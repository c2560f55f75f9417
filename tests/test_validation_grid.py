"""The sharp-PSF validation grid (issue 9): scene options, cache, and pinned numbers.

The pinned case is the grid's isolated star at FWHM 1 native pixel on a small detector
(160 columns, 10 slices) through ours, the ideal floor and the standard cube; jwst is
left out (its fit takes ~50 s here). Measured values are in the comments; the bounds
leave room for noise and for improvements of the algorithm, not for regressions to the
level of linear oversampling.
"""

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.special import erf

from atm_step.simulate import AiryPSF, make_scene
from atm_step.simulate.psf import jitter_for_fwhm
from atm_step.validation import grid as G

SMALL = G.GridConfig(nx=160, n_slices=10)


# --------------------------------------------------------------- scene options
@pytest.mark.parametrize("fwhm", [0.1, 0.25])
def test_jitter_for_fwhm_gives_the_fwhm(fwhm):
    # measured independently of the solver: from the tabulated 2-D integral over
    # 2 mas boxes along alpha (not from the radial profile the solver uses)
    psf = AiryPSF(jitter_fwhm=jitter_for_fwhm(fwhm, 1.0), wavelength_range=(0.99, 1.01))
    d = 0.001
    a = np.linspace(0.0, fwhm, 801)
    prof = psf.integral(a - d, a + d, -d, d, 1.0)
    half = np.interp(0.5 * prof[0], prof[::-1], a[::-1])
    assert 2 * half == pytest.approx(fwhm, rel=0.02)


def test_jitter_for_fwhm_below_airy_is_zero():
    assert jitter_for_fwhm(0.02, 1.0) == 0.0  # Airy FWHM at 1 um is 0.0327"


def test_psf_wings_move_the_stated_fraction():
    f, w = 0.05, 0.6
    core = AiryPSF(jitter_fwhm=0.09, wavelength_range=(1.0, 1.1))
    wings = AiryPSF(jitter_fwhm=0.09, wavelength_range=(1.0, 1.1), wing_fraction=f, wing_fwhm=w)
    total = [float(p.integral(-4, 4, -4, 4, 1.05)) for p in (core, wings)]
    assert total[1] == pytest.approx(total[0], abs=2e-3)
    h = 0.1
    sig = w / (2 * math.sqrt(2 * math.log(2)))
    gauss_box = erf(h / (sig * math.sqrt(2))) ** 2  # Gaussian flux in the +-h box
    expect = (1 - f) * float(core.integral(-h, h, -h, h, 1.05)) + f * gauss_box
    assert float(wings.integral(-h, h, -h, h, 1.05)) == pytest.approx(expect, rel=2e-3)


def test_peak_snr_sets_noise_from_the_point_sources():
    sc = make_scene("nebula", nx=60, ny=None, peak_snr=200.0, line_sb=50.0, seed=2)
    star_peak = np.nanmax(sc.source_truth_native(0))
    assert sc.noise == pytest.approx(star_peak / 200.0, rel=1e-9)  # the brighter nebula is not counted
    inside = sc.regions > 0
    assert np.nanstd(sc.flux[inside] - sc.truth_native[inside]) == pytest.approx(sc.noise, rel=0.03)
    assert np.all(sc.err[inside] == sc.noise)


def test_bad_pixels_scene_takes_an_offset():
    a = make_scene("bad_pixels", nx=60, ny=None, noise=0.0, n_clusters=2, offset=-0.2)
    b = make_scene("bad_pixels", nx=60, ny=None, noise=0.0, n_clusters=2)
    inside = a.regions > 0
    np.testing.assert_allclose((a.truth_native - b.truth_native)[inside], -0.2, atol=1e-12)
    assert a.bad_pixel_mask.sum() == 2 * 9
    assert np.all(np.isnan(a.flux[a.bad_pixel_mask]))


def test_binary_recipes_have_the_stated_separation():
    for name, sep in (("binary", 0.33), ("binary_0.2", 0.2), ("binary_0.5", 0.5)):
        o = G.RECIPES[name].options
        assert math.hypot(o["alpha2"] - o["alpha1"], o["beta2"] - o["beta1"]) == pytest.approx(sep, abs=1e-9)


# ------------------------------------------------------------------------ cache
def test_truth_cache_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("ATM_STEP_VALIDATION_CACHE", str(tmp_path))
    cfg = G.GridConfig(nx=40, n_slices=4)
    sc = G.build_scene(G.Case("isolated", 1.0, 100.0), cfg)
    centres = np.arange(-1.5, 1.51, 0.1)
    edges = np.append(centres - 0.05, centres[-1] + 0.05)
    t1, i1 = G.truth_cubes(sc, centres, edges, (2,))
    assert len(list(tmp_path.glob("truth_*.npz"))) == 1

    def boom(*a, **k):
        raise AssertionError("truth recomputed despite the cache")

    monkeypatch.setattr(G, "truth_cube", boom)
    t2, i2 = G.truth_cubes(sc, centres, edges, (2,))
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_array_equal(i1[2], i2[2])
    # a different scene (other SNR -> other noisy image) is a different entry
    sc2 = G.build_scene(G.Case("isolated", 1.0, 50.0), cfg)
    with pytest.raises(AssertionError, match="recomputed"):
        G.truth_cubes(sc2, centres, edges, (2,))
    # jwst: nothing cached, and not allowed to compute
    assert G.jwst_cubes(sc, sc.flux, edges, (2,), compute=False) is None


# ----------------------------------------------------------------- pinned case
@pytest.fixture(scope="module")
def grid_result():
    return G.run_grid([G.Case("isolated", 1.0, 5000.0)], SMALL, jwst=False, cache=False)


@pytest.fixture(scope="module")
def pinned(grid_result):
    return {(r["variant"], r["N"]): r for r in grid_result["rows"]}


def test_ideal_floor_and_standard(pinned):
    r2, r3 = pinned[("noise-free", 2)], pinned[("noise-free", 3)]
    print({k: (r["ours"], r["ideal"], r["standard"]) for k, r in pinned.items()})
    assert 0.009 < r3["ideal"] < 0.015  # 1.17 %
    assert 0.022 < r2["ideal"] < 0.034  # 2.77 %
    assert r3["standard"] > 0.05  # native sampling of a 1-px PSF: large artifacts


def test_ours_reaches_the_floor_noise_free(pinned):
    r3 = pinned[("noise-free", 3)]
    # issue-9 goal; measured 1.26 % against ideal 1.17 % (linear oversampling: > 4 %)
    assert r3["goals"]["floor"]
    assert r3["ours"] < 0.016
    assert pinned[("noise-free", 2)]["ours"] < 0.036  # 3.07 %


def test_ours_noisy_and_flux(pinned):
    r3 = pinned[("noisy", 3)]
    assert r3["ours"] < 0.055  # 4.56 % (noise floor of the standard cube: 3.06 %)
    assert r3["noise_floor"] == pytest.approx(0.0306, rel=0.15)
    for n in (2, 3):
        assert abs(pinned[("noisy", n)]["ours_ap"] - 1) < 0.002  # 0.9998
        assert abs(pinned[("noisy", n)]["ours_total"] - 1) < 0.002  # 0.9999
        assert abs(pinned[("noise-free", n)]["ideal_ap"] - 1) < 0.001  # 1.0000: the 1" box holds the star
    assert r3["ours_noise"] < 1.3  # 1.20 (issue-9 goal: <= 1.08)
    assert abs(r3["ours_snr"] - 1) < 0.1  # 1.04


def test_subset_selection():
    from atm_step.validation.__main__ import _parser, _subset_cases

    cases = _subset_cases(_parser().parse_args(["--scene", "binary", "--fwhm", "1"]))
    assert cases == [G.Case("binary", 1.0, 2000.0)]
    cases = _subset_cases(_parser().parse_args(["--quick"]))
    assert [c.recipe for c in cases] == list(G.HEADLINE) and {c.fwhm for c in cases} == {1.0}
    cases = _subset_cases(_parser().parse_args(["--scene", "isolated", "--fwhm", "2", "--snr", "30"]))
    assert cases == [G.Case("isolated", 2.0, 30.0, noise_free=False)]


def test_report_carries_stamp_and_no_machine_paths(grid_result):
    import subprocess

    from atm_step.validation import report

    stamp = report.commit_stamp("python -m atm_step.validation --out docs")
    head = subprocess.run(["git", "-C", str(Path(G.__file__).parents[2]), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=False).stdout.strip()
    if head:  # in a git checkout
        assert stamp["commit"] == head and isinstance(stamp["dirty"], bool)
        # only changes outside the generated reports make a stamp dirty
        assert stamp["describe"].endswith("-dirty") == stamp["dirty"]
    text = report.render_markdown({"stamp": stamp, "grid": grid_result, "seconds": 1.0})
    assert f"commit `{stamp['describe']}` ({stamp['commit']}" in text
    assert "python -m atm_step.validation --out docs" in text
    assert str(Path.home()) not in text and "/work/" not in text
    assert "| isolated | 1 | 5000 | noise-free | 3 |" in text


def test_only_grid_rerun_keeps_other_sections(grid_result, tmp_path, monkeypatch):
    import json

    from atm_step.validation import report

    old = {"seconds": 5.0, "stamp": report.commit_stamp("python -m atm_step.validation --out docs"),
           "miri": {"failed": "kept from the earlier run"}}
    (tmp_path / "validation.json").write_text(json.dumps(old))
    monkeypatch.setattr(G, "run_grid", lambda cases, **kw: dict(grid_result))
    report.grid_section(tmp_path, command="python -m atm_step.validation --only-grid --out docs")
    res = json.loads((tmp_path / "validation.json").read_text())
    assert res["miri"] == old["miri"] and res["stamp"] == old["stamp"]
    text = (tmp_path / "validation.md").read_text()
    assert "kept from the earlier run" in text
    assert "Grid numbers re-run separately: `python -m atm_step.validation --only-grid --out docs`" in text
    with pytest.raises(FileNotFoundError, match="run `python -m atm_step.validation"):
        report.grid_section(tmp_path / "nowhere")


def test_seed_option_changes_only_the_noise(capsys):
    """``--seed`` (grid subsets) draws another noise realisation of the same scene."""
    from dataclasses import replace

    from atm_step.validation.__main__ import _parser, main

    case = G.Case("isolated", 1.0, 5000.0)
    one = G.build_scene(case, G.DEFAULT_GRID)
    two = G.build_scene(case, replace(G.DEFAULT_GRID, seed=2))
    np.testing.assert_array_equal(one.truth_native, two.truth_native)
    n1 = (one.flux - one.truth_native)[np.isfinite(one.flux)]
    n2 = (two.flux - two.truth_native)[np.isfinite(two.flux)]
    assert not np.allclose(n1, n2)
    assert abs(n1.std() / n2.std() - 1) < 0.02  # the same noise level
    assert _parser().parse_args(["--quick", "--seed", "2"]).seed == 2
    assert main(["--seed", "2"]) == 2  # the report is made with the grid's own seed
    assert "--seed applies to grid subsets" in capsys.readouterr().err


def test_noisy_floor_is_the_ideal_plus_our_own_noise(pinned):
    """``ours_floor``: the ideal cube plus ours' own noise. On this bright isolated star
    ours is at that floor (the model adds little once noise is in), and the floor sits
    well above the noise-free ideal (the noise, not the model, sets the noisy figure)."""
    for n in (2, 3):
        noisy, clean = pinned[("noisy", n)], pinned[("noise-free", n)]
        assert clean["ours_floor"] is None
        print(n, noisy["ours"], noisy["ours_floor"], noisy["ideal"])
        assert noisy["ours_floor"] > 1.5 * noisy["ideal"]
        assert abs(noisy["ours"] / noisy["ours_floor"] - 1) < 0.1
    # the floor is not ours' own figure: with the model's error removed it is lower where
    # the model's noise-free error is large (N=2 here: ours 1.1x the ideal, noise-free)
    assert pinned[("noisy", 3)]["ours_floor"] != pinned[("noisy", 3)]["ours"]
