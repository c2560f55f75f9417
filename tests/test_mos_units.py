"""NIRSpec MOS units per slit (issue 10, defect 2), on the real CEERS cutouts.

jwst's ``photom`` gives each slit of a MultiSlitModel its own unit (MJy/sr for an
extended source, MJy for a point source) and sets the MultiSlitModel's top-level
``bunit_data`` to None; ``extract_2d`` builds the MultiSlitModel with
``output_model.update(input_model)``. The files here are laid out exactly so: the
three nods become three slits, the second converted to MJy (times the pixel solid
angle, variances times its square) as photom does for a point source.
"""

import numpy as np
import pytest
from stdatamodels.jwst import datamodels

from atm_step import AdaptiveTraceModelStep

MJY_SLIT = 1  # index of the slit converted to flux density


def _multislit(mos_files, path, top_unit):
    """A MultiSlitModel as extract_2d + photom write it; ``top_unit`` None as photom."""
    first = datamodels.open(str(mos_files[0]))
    multi = datamodels.MultiSlitModel()
    multi.update(first)  # extract_2d: metadata from the exposure
    for i, nod in enumerate(mos_files):
        slit = datamodels.open(str(nod))
        slit.name = str(200 + i)
        if i == MJY_SLIT:  # photom, point source: MJy, per-pixel solid angle folded in
            area = slit.meta.photometry.pixelarea_steradians
            slit.data = slit.data * area
            slit.err = slit.err * area
            for name in ("var_poisson", "var_rnoise", "var_flat"):
                setattr(slit, name, getattr(slit, name) * area**2)
            slit.meta.bunit_data = slit.meta.bunit_err = "MJy"
        else:
            slit.meta.bunit_data = slit.meta.bunit_err = "MJy/sr"
        multi.slits.append(slit)
    multi.meta.bunit_data = top_unit  # photom: None ("units only in the slits")
    multi.meta.bunit_err = top_unit
    multi.save(str(path))
    return path


@pytest.fixture(scope="module")
def reference(mos_files):
    """The MJy slit's nod processed on its own in MJy/sr (N = 2)."""
    return {n: AdaptiveTraceModelStep.call(str(mos_files[MJY_SLIT]), oversample=n)
            for n in (2,)}


@pytest.fixture(scope="module")
def pixel_area(mos_files):
    return datamodels.open(str(mos_files[MJY_SLIT])).meta.photometry.pixelarea_steradians


@pytest.mark.parametrize("top_unit, n", [(None, 2), ("MJy/sr", 2)],
                         ids=["photom-layout", "top-unit-differs"])
def test_multislit_units_per_slit(mos_files, tmp_path, reference, pixel_area, top_unit, n):
    """Flux density is divided by N per slit; MJy/sr slits are not; as jwst does."""
    from jwst.adaptive_trace_model import AdaptiveTraceModelStep as JwstATM

    path = _multislit(mos_files, tmp_path / "mos_multi_cal.fits", top_unit)
    ours = AdaptiveTraceModelStep.call(str(path), oversample=n)
    assert ours.meta.cal_step.adaptive_trace_model == "COMPLETE"
    assert [s.meta.bunit_data for s in ours.slits] == ["MJy/sr", "MJy", "MJy/sr"]

    # the MJy slit: equal to the MJy/sr run of the same nod, times area / N
    got = ours.slits[MJY_SLIT]
    ref = reference[n]
    ok = np.isfinite(got.data) & np.isfinite(ref.data)
    assert ok.sum() > 0.5 * ok.size
    np.testing.assert_allclose(got.data[ok] * n / pixel_area, ref.data[ok], rtol=2e-5,
                               atol=1e-6 * np.nanmax(np.abs(ref.data)))
    np.testing.assert_allclose(got.err[ok] * n / pixel_area, ref.err[ok], rtol=2e-5)
    np.testing.assert_allclose(got.var_rnoise[ok] * (n / pixel_area) ** 2,
                               ref.var_rnoise[ok], rtol=5e-5)
    # the MJy/sr slits: as the nods processed alone
    alone = AdaptiveTraceModelStep.call(str(mos_files[0]), oversample=n)
    np.testing.assert_array_equal(ours.slits[0].data, alone.data)

    if top_unit is not None:
        return  # jwst's step is compared once, on photom's own layout (it takes ~30 s)
    # jwst's own step reads each slit's unit; where both use the linear model, the same
    theirs = JwstATM.call(str(path), oversample=n, skip=False)
    for slit_theirs, slit_ours in zip(theirs.slits, ours.slits, strict=True):
        linear = (np.isnan(slit_theirs.trace_model) & np.isnan(slit_ours.trace_model)
                  & np.isfinite(slit_theirs.data) & np.isfinite(slit_ours.data))
        assert linear.sum() > 3000
        np.testing.assert_allclose(slit_ours.data[linear], slit_theirs.data[linear],
                                   rtol=1e-6, atol=1e-7 * np.nanmax(np.abs(slit_theirs.data)))
        np.testing.assert_allclose(slit_ours.err[linear], slit_theirs.err[linear], rtol=1e-6)
