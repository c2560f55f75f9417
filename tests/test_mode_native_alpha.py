"""The adapters' along-slice coordinate: native alpha read off the oversampled
evaluation of the WCS (odd integer N), and the sign flip of decreasing regions.

Both are shortcuts of issue 12 (goal 1): the WCS is evaluated once, at the oversampled
pixels, and the regions are flipped in one pass. Each is checked here against the
slow, readable path on real instrument geometry and on random region maps.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdatamodels.jwst import datamodels

from atm_step.core import grid
from atm_step.modes import adapters_for
from atm_step.modes.base import increasing_alpha


def _reference_increasing_alpha(alpha, regions, alpha_os, near):
    """Region by region, as the paper's description reads (the former code)."""
    alpha = np.array(alpha, dtype=np.float64)
    alpha_os = np.array(alpha_os, dtype=np.float64)
    regions_os = regions[near, :]
    with np.errstate(invalid="ignore"):
        dy = np.diff(alpha, axis=0)
    same = regions[1:] == regions[:-1]
    for rid in np.unique(regions[regions > 0]):
        steps = dy[same & (regions[1:] == rid)]
        steps = steps[np.isfinite(steps)]
        if steps.size and np.median(steps) < 0:
            alpha[regions == rid] *= -1.0
            alpha_os[regions_os == rid] *= -1.0
    return alpha, alpha_os


@st.composite
def _slices(draw):
    """A region map of horizontal bands, each slice's alpha rising or falling."""
    nx = draw(st.integers(1, 6))
    nslice = draw(st.integers(1, 5))
    heights = draw(st.lists(st.integers(1, 5), min_size=nslice, max_size=nslice))
    ids = draw(st.lists(st.integers(1, 400), min_size=nslice, max_size=nslice, unique=True))
    rows_r, rows_a = [], []
    for rid, h in zip(ids, heights):
        sense = draw(st.sampled_from([-1.0, 1.0]))
        gap = draw(st.booleans())
        for r in range(h):
            # some steps set to a constant so that ties (median exactly 0, or a count
            # split half and half) occur
            step = draw(st.sampled_from([0.0, 1.0, 2.5]))
            rows_a.append(np.full(nx, sense * step * r) + draw(st.floats(-1, 1)))
            rows_r.append(np.full(nx, rid))
        if gap:
            rows_a.append(np.full(nx, np.nan))
            rows_r.append(np.zeros(nx, dtype=int))
    regions = np.array(rows_r, dtype=np.int32)
    alpha = np.array(rows_a)
    holes = draw(st.lists(st.tuples(st.integers(0, alpha.shape[0] - 1),
                                    st.integers(0, nx - 1)), max_size=3))
    for r, c in holes:
        alpha[r, c] = np.nan
    return alpha, regions


@settings(max_examples=300, deadline=None)
@given(_slices(), st.sampled_from([1.0, 2.0, 2.5, 3.0]))
def test_increasing_alpha_equals_the_region_by_region_reference(case, oversample):
    alpha, regions = case
    near = grid.nearest_native_row(alpha.shape[0], oversample)
    alpha_os = alpha[near, :] + 0.125  # any oversampled values; they flip with the region
    got, got_os = increasing_alpha(alpha, regions, alpha_os, near)
    ref, ref_os = _reference_increasing_alpha(alpha, regions, alpha_os, near)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(got_os, ref_os)


def test_increasing_alpha_flips_an_even_split_by_its_median():
    """Four steps, two negative: the median of (-3, -1, 0.5, 1) is -0.25, so flip;
    of (-1, -0.5, 2, 3) it is 0.75, so keep."""
    for steps, flipped in (([-3.0, -1.0, 0.5, 1.0], True), ([-1.0, -0.5, 2.0, 3.0], False)):
        alpha = np.concatenate([[0.0], np.cumsum(steps)])[:, None]
        regions = np.ones_like(alpha, dtype=np.int32)
        got, _ = increasing_alpha(alpha, regions)
        np.testing.assert_array_equal(got, -alpha if flipped else alpha)


def _adapters(data_dir, mos_files, miri_data, tmp_path):
    """One adapter per mode, on real geometry where it exists offline."""
    from helpers import miri_mrs_model

    from atm_step.simulate import make_scene
    from atm_step.simulate.to_datamodel import scene_to_ifu_model
    from atm_step.validation.miri_lrs import miri_lrs_model

    scene = make_scene("point_source", nx=200, ny=520, noise=0.01, seed=1,
                       rows_per_slice=15, gap_rows=2)
    models = {
        "MIR_MRS": miri_mrs_model(miri_data, tmp_path),
        "NRS_IFU": scene_to_ifu_model(scene, filename="sim_nrs1_cal.fits"),
        "NRS_MSASPEC": datamodels.open(str(mos_files[0])),
        "MIR_LRS-FIXEDSLIT": miri_lrs_model(data_dir, slitless=False),
    }
    return {mode: adapters_for(model)[0] for mode, model in models.items()}


def test_native_alpha_is_read_off_the_oversampled_grid_only_where_it_is_exact(
    data_dir, mos_files, miri_data, tmp_path
):
    """
    For every mode, ``world_alpha_is_native`` says exactly whether the WCS evaluated at
    the oversampled pixels that sit on native centres gives :meth:`native_alpha`, bit
    for bit (MIRI LRS does not: its native alpha is NaN outside the bounding box), and
    the core's inputs are the same with the shortcut as without it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapters = _adapters(data_dir, mos_files, miri_data, tmp_path)
    flags = {}
    for mode, adapter in adapters.items():
        native = adapter.native_alpha()
        for n in (3, 5):
            alpha_os, _ = adapter.world_at(*adapter.oversampled_pixels(n))
            start = grid.native_aligned_start(native.shape[1 if adapter.transposed else 0], n)
            on_centres = alpha_os[:, start::n] if adapter.transposed else alpha_os[start::n]
            exact = np.array_equal(on_centres, native, equal_nan=True)
            assert exact == adapter.world_alpha_is_native, (mode, n)
            shortcut = adapter._native_from_oversampled(alpha_os, n)
            if exact:
                np.testing.assert_array_equal(shortcut, native)
            else:
                assert shortcut is None
        for n in (2, 2.5):  # no oversampled pixel sits on a native centre
            alpha_os, _ = adapter.world_at(*adapter.oversampled_pixels(n))
            assert adapter._native_from_oversampled(alpha_os, n) is None
        flags[mode] = adapter.world_alpha_is_native
    assert flags == {"MIR_MRS": True, "NRS_IFU": True, "NRS_MSASPEC": True,
                     "MIR_LRS-FIXEDSLIT": False}

    adapter = adapters["MIR_MRS"]
    fast = adapter.core_inputs(3)
    adapter.world_alpha_is_native = False  # the instance only
    slow = adapter.core_inputs(3)
    for name in ("alpha", "regions", "alpha_os", "flux"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)


@pytest.mark.parametrize("n, start", [(1, 0), (3, 1), (5, 2), (2, None), (4, None), (2.5, None)])
def test_native_aligned_start(n, start):
    assert grid.native_aligned_start(7, n) == start
    if start is not None:
        rows = grid.oversampled_rows(7, n)
        np.testing.assert_allclose(rows[start::int(n)], np.arange(7), atol=1e-12)
