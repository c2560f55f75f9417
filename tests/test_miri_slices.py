"""MIRI MRS slice maps derived from the geometry, checked on the one real map
(ground 34 LONG), and the real-geometry MRS builder for any band."""

import subprocess
import sys

import numpy as np
import pytest
from stdatamodels.jwst import datamodels

from atm_step.validation import miri as vmiri
from atm_step.validation import miri_slices as S


@pytest.fixture(scope="module")
def ground(miri_data):
    from stdatamodels.jwst.datamodels import RegionsModel

    mrs = miri_data / "miri_mrs"
    with RegionsModel(str(mrs / vmiri.MIRI_MRS_FILES["regions"])) as ref:
        real = np.array(ref.regions)
    files = vmiri.band_files("34C")
    ranges = vmiri.band_wave_ranges(mrs / files["wavelengthrange"], "34C")
    return real, str(mrs / files["distortion"]), ranges


def test_derived_34long_map_agrees_with_the_ground_map(ground):
    real, distortion, ranges = ground
    # the footprint shape of each channel measured on the *other* channel
    shape3 = S.measure_shape(distortion, ranges, real, 3)
    shape4 = S.measure_shape(distortion, ranges, real, 4)
    derived = S.derive_slice_map(distortion, ranges, {3: shape4, 4: shape3})
    res = S.compare_maps(derived, real)
    offsets = res["edge_offsets"]
    print(  # shown with pytest -rP
        f"derived vs ground 34 LONG ({res['n_slices']} slices): same slice for "
        f"{100 * res['same_label']:.1f}% of slice pixels ({100 * res['same_label_all']:.1f}% "
        f"of all pixels); edges: {100 * np.mean(offsets == 0):.1f}% exact, "
        f"{100 * res['edge_within_1px']:.1f}% within 1 px, max {res['edge_max_abs']:.0f} px, "
        f"median {res['edge_median']:+.0f} px"
    )
    assert res["n_slices"] == 28
    assert res["same_label"] >= 0.97
    assert res["edge_within_1px"] >= 0.97
    assert res["edge_max_abs"] <= 2
    assert abs(res["edge_median"]) == 0
    for channel in (3, 4):
        assert S.compare_maps(derived, real, [channel])["same_label"] >= 0.965
    # the shape the library uses for bands without a real map: the two channels' mean
    assert S.DEFAULT_SHAPE.fill == pytest.approx(0.5 * (shape3.fill + shape4.fill), abs=1e-3)
    assert S.DEFAULT_SHAPE.offset == pytest.approx(0.5 * (shape3.offset + shape4.offset), abs=1e-3)


def test_builder_command_line_any_band(miri_data, tmp_path):
    """``python -m atm_step.validation.miri --band 12A`` writes the same image as the
    library builder the tests and the validation use."""
    out = tmp_path / "m12a_cal.fits"
    cmd = [sys.executable, "-m", "atm_step.validation.miri", "--band", "12A", "--out", str(out),
           "--data", str(miri_data), "--no-noise"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "exists" in again.stderr  # never overwritten silently

    lib = vmiri.miri_mrs_model(miri_data, tmp_path, err=0.04, band="12A")
    vmiri.inject_point_source(lib, alpha0=0.05, beta0=0.1, noise=False)
    with datamodels.open(str(out)) as model:
        assert isinstance(model, datamodels.IFUImageModel)
        inst = model.meta.instrument
        assert (inst.channel, inst.band, inst.detector) == ("12", "SHORT", "MIRIFUSHORT")
        np.testing.assert_array_equal(model.data, lib.data)
        det2ab = model.meta.wcs.get_transform("detector", "alpha_beta")
        label = np.asarray(det2ab.label_mapper.mapper)
        ids = np.unique(label[label > 0])
        assert np.sum(ids // 100 == 1) == 21 and np.sum(ids // 100 == 2) == 17
        # the brightest pixel sits at the source, in channel 1
        iy, ix = np.unravel_index(np.nanargmax(model.data), model.data.shape)
        alpha, beta, lam = det2ab(ix, iy)
        assert label[iy, ix] // 100 == 1
        assert abs(alpha - 0.05) < 0.2 and abs(beta - 0.1) < 0.177
        assert 4.9 < lam < 5.8
