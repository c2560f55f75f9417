"""NIRSpec MOS flight data: atm-step against jwst 3.0's own step, N = 1 and 2."""

import numpy as np
import pytest
from astropy.io import fits
from stdatamodels.jwst import datamodels

#: Header keywords allowed to differ between two runs of the same step.
VOLATILE = {"DATE", "FILENAME", "CAL_VCS", "CAL_VER", "CRDS_CTX", "CRDS_VER"}


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
    ny, nx = datamodels.open(str(f_theirs)).data.shape
    assert ours.data.shape == theirs.data.shape == (ny, nx)
    with fits.open(f_theirs) as a, fits.open(f_ours) as b:
        assert [h.name for h in a] == [h.name for h in b]
        for ha, hb in zip(a, b, strict=True):
            keys_a = {k for k in ha.header if k} - VOLATILE
            keys_b = {k for k in hb.header if k} - VOLATILE
            assert keys_a == keys_b, f"{ha.name}: {keys_a ^ keys_b}"
            if ha.name == "ASDF":
                continue  # its size follows the step's own log and parameters
            for key in keys_a - {"HISTORY", "COMMENT"}:
                va, vb = ha.header[key], hb.header[key]
                if isinstance(va, float):
                    assert vb == pytest.approx(va, rel=1e-12), (ha.name, key)
                else:
                    assert va == vb, (ha.name, key)
            if ha.data is not None and ha.name != "ASDF":
                assert np.shape(ha.data) == np.shape(hb.data), ha.name
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
