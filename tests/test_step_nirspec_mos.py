"""NIRSpec MOS flight data: atm-step against jwst 3.0's own step, N = 1 and 2."""

import numpy as np
import pytest
from stdatamodels.jwst import datamodels

import helpers



def _run_both(path, oversample, outdir):
    from jwst.adaptive_trace_model import AdaptiveTraceModelStep as JwstATM

    from atm_step import AdaptiveTraceModelStep

    theirs = JwstATM.call(str(path), oversample=oversample, skip=False)
    ours = AdaptiveTraceModelStep.call(str(path), oversample=oversample)
    files = []
    for tag, model in (("jwst", theirs), ("ours", ours)):
        out = outdir / f"{tag}_{oversample}_{path.name}"
        model.save(str(out))
        files.append(out)
    return theirs, ours, files


@pytest.fixture(scope="module", params=[(i, n) for i in range(3) for n in (1, 2)],
                ids=lambda p: f"nod{p[0] + 1}-N{p[1]}")
def pair(request, mos_files, tmp_path_factory):
    index, oversample = request.param
    path = mos_files[index]
    before = path.read_bytes()
    theirs, ours, files = _run_both(path, oversample, tmp_path_factory.mktemp("mos"))
    assert path.read_bytes() == before, f"{path} was modified"
    return oversample, theirs, ours, files


def test_shapes_extensions_keywords(pair):
    oversample, theirs, ours, (f_theirs, f_ours) = pair
    assert ours.meta.cal_step.adaptive_trace_model == "COMPLETE"
    assert ours.data.shape == theirs.data.shape == (25 * oversample, 341)
    helpers.assert_same_layout(f_theirs, f_ours)
    if oversample == 2:
        assert ours.meta.photometry.pixelarea_steradians == pytest.approx(
            theirs.meta.photometry.pixelarea_steradians, rel=1e-12
        )
        assert "coordinates" == ours.meta.wcs.available_frames[0]


def test_world_coordinates_of_every_pixel(pair):
    _, theirs, ours, (f_theirs, f_ours) = pair
    # read back from disk: the saved WCS is what downstream steps see
    a, b = datamodels.open(str(f_theirs)), datamodels.open(str(f_ours))
    y, x = np.mgrid[: a.data.shape[0], : a.data.shape[1]].astype(float)
    ra_a, dec_a, lam_a = a.meta.wcs(x, y)
    ra_b, dec_b, lam_b = b.meta.wcs(x, y)
    inside = np.isfinite(lam_a)
    assert inside.sum() > 0.7 * inside.size
    np.testing.assert_array_equal(np.isfinite(lam_b), inside)
    assert np.max(np.abs(ra_a - ra_b)[inside]) < 1e-8
    assert np.max(np.abs(dec_a - dec_b)[inside]) < 1e-8
    assert np.max(np.abs(lam_a - lam_b)[inside]) < 1e-6
    np.testing.assert_allclose(b.wavelength, a.wavelength, atol=1e-6, equal_nan=True)


def test_same_flux_where_both_use_the_linear_model(pair):
    oversample, theirs, ours, _ = pair
    if oversample == 1:
        # science arrays untouched at N = 1
        np.testing.assert_array_equal(ours.data, theirs.data)
        np.testing.assert_array_equal(ours.dq, theirs.dq)
        return
    linear = (
        np.isnan(theirs.trace_model)
        & np.isnan(ours.trace_model)
        & np.isfinite(theirs.data)
        & np.isfinite(ours.data)
    )
    assert linear.sum() > 0.5 * np.isfinite(theirs.data).sum()
    np.testing.assert_allclose(ours.data[linear], theirs.data[linear], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours.err[linear], theirs.err[linear], rtol=1e-6)
    for name in ("var_poisson", "var_rnoise", "var_flat"):
        np.testing.assert_allclose(
            getattr(ours, name)[linear], getattr(theirs, name)[linear], rtol=1e-5
        )
    np.testing.assert_array_equal(ours.dq[linear], theirs.dq[linear])


def test_multislit_model_and_intermediate_products(mos_files, tmp_path):
    """The three nods as three slits of one MultiSlitModel, intermediates saved."""
    from jwst.adaptive_trace_model import AdaptiveTraceModelStep as JwstATM

    from atm_step import AdaptiveTraceModelStep

    multi = datamodels.MultiSlitModel()
    multi.update(datamodels.open(str(mos_files[0])))
    for i, path in enumerate(mos_files):
        slit = datamodels.open(str(path))
        slit.name = str(100 + i)
        multi.slits.append(slit)
    cal = tmp_path / "mos_multi_cal.fits"
    multi.save(str(cal))
    outputs = {}
    runs = (("jwst", JwstATM, {"skip": False}), ("ours", AdaptiveTraceModelStep, {}))
    for tag, cls, extra in runs:
        outdir = tmp_path / tag
        outdir.mkdir()
        result = cls.call(
            str(cal), oversample=2, save_intermediate_results=True, output_dir=str(outdir), **extra
        )
        result.save(str(outdir / "result.fits"))
        outputs[tag] = (result, outdir)
    (theirs, dir_theirs), (ours, dir_ours) = outputs["jwst"], outputs["ours"]
    helpers.assert_same_layout(dir_theirs / "result.fits", dir_ours / "result.fits")
    for suffix in ("spline_full", "spline_used", "linear_interp", "spline_residual"):
        name = f"mos_multi_{suffix}.fits"
        helpers.assert_same_layout(dir_theirs / name, dir_ours / name)
    assert [s.name for s in ours.slits] == ["100", "101", "102"]
    for slit_theirs, slit_ours in zip(theirs.slits, ours.slits, strict=True):
        diff = helpers.world_coordinate_differences(slit_theirs, slit_ours)
        assert diff["same_footprint"]
        assert max(diff["ra"], diff["dec"]) < 1e-8 and diff["wave"] < 1e-6
        linear = (
            np.isnan(slit_theirs.trace_model) & np.isnan(slit_ours.trace_model)
            & np.isfinite(slit_theirs.data) & np.isfinite(slit_ours.data)
        )
        assert linear.sum() > 5000
        np.testing.assert_allclose(slit_ours.data[linear], slit_theirs.data[linear], rtol=1e-6)
        assert slit_ours.meta.photometry.pixelarea_steradians == pytest.approx(
            slit_theirs.meta.photometry.pixelarea_steradians, rel=1e-12
        )


def test_spec3_source_container_comes_back_as_one(mos_files, tmp_path):
    """calwebb_spec3 hands the step one source's slits as a SourceModelContainer (a
    MultiExposureModel underneath), and saves what comes back as one file per source.
    The step returns a new SourceModelContainer of the oversampled slits, in order;
    the input's exposures are not changed."""
    from pathlib import Path

    from jwst.datamodels import ModelContainer, SourceModelContainer
    from jwst.exp_to_source import multislit_to_container

    from atm_step import AdaptiveTraceModelStep

    exposures = []
    for path in mos_files:
        slit = datamodels.SlitModel(str(path))
        multi = datamodels.MultiSlitModel()
        multi.update(slit, only="PRIMARY")
        multi.slits.append(slit)
        multi.meta.filename = Path(path).name
        exposures.append(multi)
    (source,) = multislit_to_container(ModelContainer(exposures)).values()
    before = [m.data.copy() for m in source]
    out = AdaptiveTraceModelStep.call(source, oversample=3)
    assert isinstance(out, SourceModelContainer) and out is not source
    assert [m.data.shape for m in out] == [(3 * b.shape[0], b.shape[1]) for b in before]
    assert [m.meta.cal_step.adaptive_trace_model for m in out] == ["COMPLETE"] * 3
    for b, m in zip(before, source, strict=True):
        np.testing.assert_array_equal(m.data, b)
    out.save(path=str(tmp_path / "source_atm.fits"))
    with datamodels.open(str(tmp_path / "source_atm.fits")) as saved:
        assert isinstance(saved, datamodels.MultiExposureModel)
        for exposure, m in zip(saved.exposures, out, strict=True):
            np.testing.assert_array_equal(exposure.data, m.data)
