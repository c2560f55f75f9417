"""MIRI LRS fixed slit and slitless on the real instrument geometry (flight imager
distortion, LRS wavelength solutions), with an injected point-source trace:
``strun atm <file> --oversample=3`` against jwst 3.0's own step on the same file,
and multi-integration (TSO) slitless input.

The truth figures printed (``pytest -rP``) depend on the core's spline fit and move
when the core changes.
"""

import hashlib
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import helpers
import numpy as np
import pytest
from astropy.io import fits
from stdatamodels.jwst import datamodels

from atm_step import AdaptiveTraceModelStep
from atm_step.validation.miri_lrs import inject_trace, miri_lrs_model, trace_truth

N = 3
ALPHA0 = 0.05  # source position along the slit (arcsec)
ERR = 0.02  # noise sigma (MJy/sr): peak SNR ~500 at 8 um


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _strun(args, cwd):
    """Run the real ``strun`` (next to this Python); return the FITS files it wrote."""
    before = set(Path(cwd).glob("*.fits"))
    exe = str(Path(sys.executable).with_name("strun"))
    proc = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return sorted(set(Path(cwd).glob("*.fits")) - before)


@pytest.fixture(scope="module", params=["slit", "slitless"])
def lrs_run(request, data_dir, tmp_path_factory):
    """One LRS cal file; atm-step through strun and jwst's step on it, both saved."""
    from jwst.adaptive_trace_model import AdaptiveTraceModelStep as JwstATM

    slitless = request.param == "slitless"
    work = tmp_path_factory.mktemp(f"lrs_{request.param}")
    model = miri_lrs_model(data_dir, slitless=slitless, err=ERR)
    inject_trace(model, alpha0=ALPHA0)
    cal = work / model.meta.filename
    model.save(str(cal))
    digest = _sha(cal)
    (out,) = _strun(["atm", cal.name, f"--oversample={N}"], cwd=work)
    theirs = JwstATM.call(str(cal), oversample=N, skip=False)
    f_theirs = work / "jwst_atm.fits"
    theirs.save(str(f_theirs))
    assert _sha(cal) == digest, "the input file was modified"
    return {
        "kind": request.param,
        "native": datamodels.open(str(cal)),
        "ours": datamodels.open(str(out)),
        "theirs": datamodels.open(str(f_theirs)),
        "f_ours": out,
        "f_theirs": f_theirs,
    }


def test_layout_and_status_as_jwst(lrs_run):
    ours, theirs, native = lrs_run["ours"], lrs_run["theirs"], lrs_run["native"]
    assert isinstance(ours, datamodels.SlitModel)
    with fits.open(lrs_run["f_ours"]) as hdul:
        assert hdul[0].header["S_TRCMOD"] == "COMPLETE"
    ny, nx = native.data.shape
    assert ours.data.shape == theirs.data.shape == (ny, nx * N)
    for name in ("err", "dq", "wavelength", "trace_model", "var_poisson", "var_rnoise", "var_flat"):
        assert getattr(ours, name).shape == ours.data.shape, name
    helpers.assert_same_layout(lrs_run["f_theirs"], lrs_run["f_ours"])
    assert ours.meta.wcs.available_frames == theirs.meta.wcs.available_frames
    assert ours.meta.wcs.available_frames[0] == "coordinates"
    assert ours.meta.photometry.pixelarea_steradians == pytest.approx(
        native.meta.photometry.pixelarea_steradians / N, rel=1e-12
    )


def test_world_coordinates_at_sampled_pixels(lrs_run):
    ours, theirs = lrs_run["ours"], lrs_run["theirs"]
    ny, nx = ours.data.shape
    rng = np.random.default_rng(3)
    # every oversampled pixel of the slit's bounding box, and 20000 anywhere
    (x0, x1), (y0, y1) = ours.meta.wcs.bounding_box.bounding_box(order="F")
    yb, xb = np.mgrid[int(y0) : int(y1) + 2, int(x0) : int(x1) + 2]
    x = np.concatenate([xb.ravel(), rng.integers(0, nx, 20000)]).astype(float)
    y = np.concatenate([yb.ravel(), rng.integers(0, ny, 20000)]).astype(float)
    world_o, world_t = ours.meta.wcs(x, y), theirs.meta.wcs(x, y)
    inside = np.isfinite(world_t[2])
    assert inside.sum() > 0.7 * xb.size
    for a, b in zip(world_o, world_t, strict=True):
        np.testing.assert_array_equal(np.isfinite(a), inside)
        assert np.max(np.abs(a - b)[inside]) < 1e-10
    np.testing.assert_allclose(ours.wavelength, theirs.wavelength, atol=1e-6, equal_nan=True)
    # the oversampled pixel map: column j sits at native x = j / N - (N - 1) / (2 N)
    c2d = ours.meta.wcs.get_transform("coordinates", "detector")
    xd, _ = c2d(np.array([0.0, 4.0]), np.array([7.0, 7.0]))
    np.testing.assert_allclose(xd, [-1 / 3, 1.0], atol=1e-12)


def test_dq_errors_and_linear_flux_as_jwst(lrs_run):
    ours, theirs = lrs_run["ours"], lrs_run["theirs"]
    fin_o, fin_t = np.isfinite(ours.data), np.isfinite(theirs.data)
    # jwst blanks the outermost N oversampled columns of the slit; elsewhere the same
    assert np.all(fin_o[fin_t])
    np.testing.assert_array_equal(ours.dq[fin_t], theirs.dq[fin_t])
    np.testing.assert_array_equal((ours.dq & 1) > 0, ~fin_o)
    for name in ("err", "var_poisson", "var_rnoise", "var_flat"):
        a, b = getattr(ours, name), getattr(theirs, name)
        np.testing.assert_allclose(a[fin_t], b[fin_t], rtol=1e-5, err_msg=name)
    linear = np.isnan(ours.trace_model) & np.isnan(theirs.trace_model) & fin_t
    assert linear.sum() > 0.5 * fin_t.sum()
    np.testing.assert_allclose(ours.data[linear], theirs.data[linear], rtol=1e-5, atol=1e-6)


def test_flux_and_truth(lrs_run):
    ours, theirs, native = lrs_run["ours"], lrs_run["theirs"], lrs_run["native"]
    # flux along each dispersion row: conserved by ours, within 1% of jwst's in total
    rows_nat = np.nansum(native.data, axis=1)
    bright = rows_nat > 0.2 * np.nanmax(rows_nat)
    rows_o = np.nansum(ours.data, axis=1)[bright] / N
    rows_t = np.nansum(theirs.data, axis=1)[bright] / N
    assert np.median(rows_o / rows_nat[bright]) == pytest.approx(1.0, abs=1e-3)
    assert np.max(np.abs(rows_o / rows_nat[bright] - 1)) < 0.01
    total = rows_o.sum() / rows_t.sum()
    assert total == pytest.approx(1.0, abs=0.01)

    # against the noise-free truth at the oversampled pixels
    # (within the slit's bounding box: the truth is NaN outside it)
    (x0, x1), (y0, y1) = ours.meta.wcs.bounding_box.bounding_box(order="F")
    ny, nx = ours.data.shape
    box = np.s_[int(y0) : min(int(y1) + 2, ny), int(x0) : min(int(x1) + 2, nx)]
    y, x = np.mgrid[box].astype(float)
    truth = trace_truth(ours.meta.wcs, x, y, alpha0=ALPHA0)
    lam = ours.wavelength[box]
    ours, theirs = ours.data[box], theirs.data[box]

    def rms(image, sel):
        peak = np.nanmax(np.where(sel, truth, np.nan))
        use = sel & (truth > 0.05 * peak) & np.isfinite(ours) & np.isfinite(theirs)
        return float(np.sqrt(np.mean(((image - truth)[use] / peak) ** 2)))

    everywhere = np.isfinite(lam)
    red = lam >= 7.0
    figures = {k: (rms(ours, s), rms(theirs, s)) for k, s in (("all", everywhere), (">=7um", red))}
    print(  # shown with pytest -rP
        f"LRS {lrs_run['kind']} N={N}: total flux ours/jwst {total:.4f}; rms residual vs truth "
        "(fraction of peak) ours / jwst: "
        + ", ".join(f"{k} {a:.4f} / {b:.4f}" for k, (a, b) in figures.items())
    )
    # measured (fixed slit): all 0.030 / 0.017 (ours worse below ~7 um, where the PSF
    # is under 2 pixels and the trace runs almost along the pixel columns), >=7 um
    # 0.0086 / 0.0098; slitless: all 0.0095 / 0.0101
    assert figures["all"][0] < 0.04
    assert figures[">=7um"][0] <= 1.1 * figures[">=7um"][1]


# --- multi-integration (TSO) slitless ------------------------------------------


@pytest.fixture(scope="module")
def tso_file(data_dir, tmp_path_factory):
    """Slitless LRS with 3 integrations (independent noise), as a calints SlitModel."""
    work = tmp_path_factory.mktemp("lrs_tso")
    model = miri_lrs_model(data_dir, slitless=True, nints=3, err=ERR)
    inject_trace(model, alpha0=ALPHA0)
    path = work / model.meta.filename
    model.save(str(path))
    return path


def test_tso_slitless_n1_fits_the_median_image(tso_file, caplog):
    before = _sha(tso_file)
    result = AdaptiveTraceModelStep.call(str(tso_file), oversample=1)
    assert _sha(tso_file) == before
    assert result.meta.cal_step.adaptive_trace_model == "COMPLETE"
    with datamodels.open(str(tso_file)) as cube:
        np.testing.assert_array_equal(result.data, cube.data)  # untouched at N = 1
        assert result.trace_model.shape == cube.data.shape[1:]
        # jwst's semantics: the profile is fitted to the per-pixel median image
        single = datamodels.SlitModel()
        single.update(cube)
        single.meta.wcs = cube.meta.wcs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
            single.data = np.nanmedian(cube.data, axis=0)
            single.err = np.nanmedian(cube.err, axis=0)
        single.dq = cube.dq[0]
    expected = AdaptiveTraceModelStep.call(single, oversample=1)
    assert np.isfinite(result.trace_model).sum() > 1000
    np.testing.assert_array_equal(result.trace_model, expected.trace_model)


def test_tso_slitless_oversampling_is_refused(tso_file, caplog):
    before = _sha(tso_file)
    with caplog.at_level(logging.ERROR, logger="atm_step"):
        result = AdaptiveTraceModelStep.call(str(tso_file), oversample=N)
    assert _sha(tso_file) == before
    assert result.meta.cal_step.adaptive_trace_model == "FAILED"
    assert result.data.shape == (3, 416, 72)
    assert not result.hasattr("trace_model")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(tso_file.name in e and "TSO" in e and "oversample=1" in e for e in errors), errors


def test_tso3_pipeline_runs_our_step(tso_file, tmp_path, monkeypatch):
    """``calwebb_tso3_atm`` on a one-exposure TSO association: our step in the slot
    (switched on) attaches the same trace model as the step alone; the other steps
    run as in jwst's calwebb_tso3 (outlier detection, pixel replacement and
    extraction skipped: they need reference files not available offline)."""
    import json
    import shutil

    from stpipe import crds_client

    from atm_step.pipelines import Tso3PipelineATM

    # the pipeline prefetches gain and readnoise files from CRDS; offline, none
    monkeypatch.setattr(crds_client, "get_multiple_reference_paths", lambda *a, **k: {})
    shutil.copy(tso_file, tmp_path / tso_file.name)
    asn = {"asn_id": "a3001", "asn_pool": "pool", "asn_type": "tso3",
           "products": [{"name": "lrs_tso", "members": [
               {"expname": tso_file.name, "exptype": "science"}]}]}  # fmt: skip
    (tmp_path / "asn.json").write_text(json.dumps(asn))
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.glob("*.fits"))
    Tso3PipelineATM.call(
        "asn.json",
        steps={"adaptive_trace_model": {"skip": False, "save_results": True},
               "outlier_detection": {"skip": True}, "extract_1d": {"skip": True}},
    )  # fmt: skip
    (out,) = set(tmp_path.glob("*.fits")) - before
    alone = AdaptiveTraceModelStep.call(str(tso_file), oversample=1)
    with datamodels.open(str(out)) as result:
        assert result.meta.cal_step.adaptive_trace_model == "COMPLETE"
        assert result.data.shape == (3, 416, 72)
        np.testing.assert_array_equal(result.trace_model, alone.trace_model)
