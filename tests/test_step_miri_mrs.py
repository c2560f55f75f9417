"""MIRI MRS with real instrument geometry: `strun atm` on a simulated point source,
then jwst's pixel_replace and cube_build; and the datamodel contract against jwst's step.
"""

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from stdatamodels.jwst import datamodels

import helpers

N = 3
#: Wavelength range of the test cubes (um), inside channel 3 LONG; keeps cube_build quick.
WAVE_RANGE = (16.0, 17.0)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _strun(args, cwd):
    """Run the real ``strun`` command line (the one installed next to this Python)."""
    exe = str(Path(sys.executable).with_name("strun"))
    proc = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _cube(model, cubepar, grid=None):
    from atm_step.validation.miri import build_cube

    return build_cube(model, cubepar, WAVE_RANGE, grid=grid, channel="3")


@pytest.fixture(scope="module")
def miri_run(miri_data, tmp_path_factory):
    """Simulated point source -> cal file -> `strun atm --oversample=3`."""
    work = tmp_path_factory.mktemp("miri")
    model = helpers.miri_mrs_model(miri_data, work)
    helpers.inject_point_source(model, alpha0=0.05, beta0=0.1)
    cal = work / "miri_src_cal.fits"
    model.save(str(cal))
    digest = _sha(cal)
    proc = _strun(["atm", cal.name, f"--oversample={N}"], cwd=work)
    assert _sha(cal) == digest, "the input file was modified"
    out = work / "miri_src_atm.fits"
    return {
        "work": work,
        "cal": cal,
        "out": out,
        "log": proc.stdout + proc.stderr,
        "native": datamodels.open(str(cal)),
        "atm": datamodels.open(str(out)),
    }


def _truth(model, oversample, nsub=5):
    """Noise-free simulated image at the model's (possibly oversampled) pixels."""
    wcs = model.meta.wcs
    to_ab = wcs.get_transform(wcs.available_frames[0], "alpha_beta")
    ny, nx = model.data.shape
    y, x = np.mgrid[:ny, :nx].astype(float)
    prof = np.zeros((ny, nx))
    for k in range(nsub):
        a, b, lam = to_ab(x + ((k + 0.5) / nsub - 0.5), y)
        prof += helpers.airy_pixel_integrated(np.hypot(a - 0.05, b - 0.1), lam)
    return 10.0 * (lam / 20.0) ** -1 * prof / nsub + 0.05


def test_strun_output_contract(miri_run):
    native, atm = miri_run["native"], miri_run["atm"]
    assert atm.meta.cal_step.adaptive_trace_model == "COMPLETE"
    assert atm.data.shape == (1024, 1032 * N)
    for name in ("err", "dq", "wavelength", "trace_model", "var_poisson", "var_rnoise", "var_flat"):
        assert getattr(atm, name).shape == atm.data.shape, name
    assert atm.meta.wcs.available_frames[0] == "coordinates"
    # oversampled column j sits at native x = j / N - (N - 1) / (2 N)
    c2d = atm.meta.wcs.get_transform("coordinates", "detector")
    xd, yd = c2d(np.array([0.0, 4.0, 3095.0]), np.array([7.0, 7.0, 7.0]))
    np.testing.assert_allclose(xd, [-1 / 3, 1.0, 1031 + 1 / 3], atol=1e-12)
    np.testing.assert_allclose(yd, 7.0)
    # NaN <-> DO_NOT_USE, and 10 slices of 28 fitted (log summary)
    dnu = (atm.dq & 1) > 0
    np.testing.assert_array_equal(dnu, ~np.isfinite(atm.data))
    assert "10/28 regions fitted" in miri_run["log"]
    # wavelength from the WCS, at every oversampled pixel
    yy, xx = np.mgrid[:1024, : 1032 * N]
    _, _, lam = atm.meta.wcs(xx, yy)
    np.testing.assert_allclose(atm.wavelength, lam, atol=1e-5, equal_nan=True)
    n_native = np.isfinite(native.data).sum()
    assert np.isfinite(atm.data).sum() == pytest.approx(N * n_native, rel=0.01)


#: Extensions jwst 3.0's step writes for this file at N = 3 (checked by running it on
#: the same cal file: identical layout, WCS and linear-model flux; it takes ~140 s, so
#: the suite checks against this record instead).
JWST_MIRI_EXTENSIONS = [
    "PRIMARY", "SCI", "ERR", "DQ", "REGIONS", "TRACEMODEL",
    "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT", "WAVELENGTH", "ASDF",
]


def test_extensions_and_keywords_as_jwst(miri_run):
    with fits.open(miri_run["cal"]) as cal, fits.open(miri_run["out"]) as out:
        assert [h.name for h in out] == JWST_MIRI_EXTENSIONS
        # like jwst: the primary header gains S_TRCMOD only, SCI keeps its keywords
        assert set(out[0].header) - set(cal[0].header) == {"S_TRCMOD"}
        assert set(cal[0].header) - set(out[0].header) == set()
        assert set(out["SCI"].header) == set(cal["SCI"].header)
        assert out[0].header["S_TRCMOD"] == "COMPLETE"
    regions = miri_run["atm"].regions
    label = miri_run["native"].meta.wcs.get_transform("detector", "alpha_beta").label_mapper.mapper
    np.testing.assert_array_equal(regions[:, 1::N], label)


def test_oversampled_image_matches_truth(miri_run):
    atm, native = miri_run["atm"], miri_run["native"]
    truth = _truth(atm, N)
    peak = np.nanmax(truth)
    bright = truth > 0.05 * peak
    resid = (atm.data - truth)[bright & np.isfinite(atm.data)]
    # the ATM image follows the pixel-integrated PSF at 1/3-pixel sampling
    assert np.sqrt(np.mean(resid**2)) < 0.02 * peak
    # flux conservation: each detector row's sum over the slices equals the native sum
    rows_os = np.nansum(atm.data, axis=1) / N
    rows_nat = np.nansum(native.data, axis=1)
    ratio = rows_os / rows_nat
    assert np.median(ratio) == pytest.approx(1.0, abs=1e-3)
    assert np.max(np.abs(ratio - 1)) < 0.01


def test_cube_aperture_spectrum(miri_run):
    cubepar = helpers.write_cubepar(miri_run["work"] / "cubepar.fits")
    cube_nat = _cube(miri_run["native"], cubepar)
    grid = {
        "ra_center": cube_nat.meta.wcsinfo.crval1,
        "dec_center": cube_nat.meta.wcsinfo.crval2,
        "nspax_x": cube_nat.data.shape[2],
        "nspax_y": cube_nat.data.shape[1],
    }
    cube_atm = _cube(miri_run["atm"], cubepar, grid)
    assert cube_atm.data.shape == cube_nat.data.shape
    assert cube_atm.data.shape[0] > 300
    img = np.nanmedian(cube_nat.data, axis=0)
    iy, ix = np.unravel_index(np.nanargmax(img), img.shape)
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    aperture = np.hypot(yy - iy, xx - ix) <= 8  # 1.6 arcsec, ~4 FWHM
    spec_nat = np.nansum(cube_nat.data[:, aperture], axis=1)
    spec_atm = np.nansum(cube_atm.data[:, aperture], axis=1)
    ratio = spec_atm / spec_nat
    print(  # shown with pytest -rP
        f"aperture spectrum ATM/native: worst plane {np.max(np.abs(ratio - 1)):.2e}, "
        f"total {spec_atm.sum() / spec_nat.sum() - 1:+.2e}, {ratio.size} planes"
    )
    assert np.all(np.isfinite(ratio))
    assert np.max(np.abs(ratio - 1)) < 0.01
    assert spec_atm.sum() / spec_nat.sum() == pytest.approx(1.0, abs=0.002)


#: File root used by the documented chain in docs/usage.md.
DOC_ROOT = "jw01234001001_03101_00001_mirifulong"


def _documented_chain():
    """The ``strun`` lines of docs/usage.md's atm -> pixel_replace -> cube_build block."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "usage.md").read_text()
    (block,) = [b for b in re.findall(r"```bash\n(.*?)```", text, re.S) if "strun pixel_replace" in b]
    return [line.split() for line in block.splitlines() if line.startswith("strun ")]


def test_documented_chain(miri_run):
    """docs/usage.md's chain, offline, on the MIRI MRS exposure: the names each command reads
    are the names the previous one wrote; cube_build as the docs' offline Python variant."""
    from jwst.cube_build import CubeBuildStep

    from atm_step.testing import offline_crds, write_cubepar

    work = miri_run["work"]
    cmds = [[w.replace(DOC_ROOT, "miri_src") for w in cmd] for cmd in _documented_chain()]
    assert [cmd[1] for cmd in cmds] == ["atm", "pixel_replace", "cube_build"]
    # 1. `strun atm` is exactly what the fixture ran; its output is what step 2 reads
    assert cmds[0] == ["strun", "atm", miri_run["cal"].name, f"--oversample={N}"]
    assert miri_run["out"].name == cmds[1][2] == "miri_src_atm.fits"
    # 2. `strun pixel_replace` as written
    _strun(cmds[1][1:], cwd=work)
    replaced = work / cmds[2][2]
    assert replaced.name == "miri_src_atm_pixelreplacestep.fits" and replaced.is_file()
    # 3. cube_build offline (channel 3, 16-17 um, to keep the test short)
    cubepar = write_cubepar(work / "my_cubepar.fits")
    with offline_crds():
        CubeBuildStep.call(str(replaced), override_cubepar=cubepar, save_results=True,
                           output_dir=str(work), channel="3", wavemin=16.0, wavemax=17.0)
    cube_file = work / "miri_src_atm_pixelreplacestep_ch3-long_s3d.fits"
    assert cube_file.is_file(), sorted(p.name for p in work.iterdir())
    with datamodels.open(str(cube_file)) as cube:
        assert cube.data.shape[0] > 300
        assert np.nanmax(cube.data) > 0
        assert np.isfinite(cube.data).mean() > 0.5


#: Spec3 steps that need reference files from CRDS (skipped for the offline run).
SPEC3_REF_STEPS = ("master_background", "outlier_detection", "cube_build", "extract_1d", "photom",
                   "combine_1d", "spectral_leak")


def test_spec3_pipeline_offline_logs_summary_and_keeps_jwst_names(miri_run):
    """`strun calwebb_spec3_atm` offline (steps needing reference files skipped), as in
    docs/usage.md: the step's per-exposure summary is logged, its saved product carries
    jwst's pipeline name."""
    import json

    work = miri_run["work"]
    asn = {
        "asn_type": "spec3", "asn_rule": "candidate_Asn_Lv3MIRMRS", "asn_id": "a3001",
        "program": "01234", "target": "t001", "asn_pool": "none", "version_id": None,
        "code_version": "3.0.0", "degraded_status": "none", "constraints": "none",
        "products": [{"name": "miri_src_spec3",
                      "members": [{"expname": miri_run["cal"].name, "exptype": "science"}]}],
    }  # fmt: skip
    (work / "spec3_asn.json").write_text(json.dumps(asn))
    args = ["calwebb_spec3_atm", "spec3_asn.json", "--steps.adaptive_trace_model.skip=false",
            f"--steps.adaptive_trace_model.oversample={N}", "--steps.pixel_replace.skip=false",
            "--steps.adaptive_trace_model.save_results=true",
            *[f"--steps.{name}.skip=true" for name in SPEC3_REF_STEPS]]
    proc = _strun(args, cwd=work)
    log = proc.stdout + proc.stderr
    assert "atm_step.step - INFO - miri_src_cal.fits: MIR_MRS, N=3: 10/28 regions fitted" in log
    assert " region 301:" not in log  # per-region lines are DEBUG
    assert (work / "miri_src_a3001_adaptive_trace_model.fits").is_file()  # <root>_<asn id>_...
