"""The ideal-oversampling floor on the real MIRI MRS geometry (band 12A, channel 1): the
exact source's pixel-convolved profile at every oversampled pixel, through the
output's own WCS (`atm_step.validation.miri.ideal_oversampled_image`)."""

import numpy as np
import pytest

from atm_step.validation import miri as V


@pytest.fixture(scope="module")
def ch1_images(miri_data, tmp_path_factory):
    from atm_step import AdaptiveTraceModelStep

    work = tmp_path_factory.mktemp("ideal12a")
    dist = miri_data / "miri_mrs" / V.band_files("12A")["distortion"]
    keep = V.slices_near(dist, "1", 0.1, 2)  # 5 slices around the source, the rest gap
    native = V.miri_mrs_model(miri_data, work, err=0.04, band="12A", keep_slices=keep)
    V.inject_point_source(native, alpha0=0.05, beta0=0.1, noise=False)
    with V.offline_crds():
        out = AdaptiveTraceModelStep.call(native.copy(), oversample=3)
    return native, out, V.ideal_oversampled_image(out, alpha0=0.05, beta0=0.1)


def test_ideal_is_the_native_truth_at_native_centres_and_finer_between(ch1_images):
    """N = 3 along detector x (the MIRI slice direction): the middle oversampled pixel
    of each native pixel sits at its centre, where the pixel-convolved truth is the
    injected native value; the other two hold what lies between the native samples."""
    native, out, ideal = ch1_images
    ny, nx = native.data.shape
    assert ideal.data.shape == (ny, 3 * nx)
    truth = np.asarray(native.data, dtype=float)
    sub = np.asarray(ideal.data, dtype=float).reshape(ny, nx, 3)
    peak = np.nanmax(truth)
    both = np.isfinite(sub[:, :, 1]) & np.isfinite(truth)
    assert both.sum() > 10000
    assert np.max(np.abs(sub[:, :, 1] - truth)[both]) < 1e-3 * peak
    # off-centre samples differ from the native pixel by up to a large part of the peak
    # (a sharp PSF): a copy of the native pixels, or a shifted grid, would not
    for k in (0, 2):
        ok = np.isfinite(sub[:, :, k]) & np.isfinite(truth)
        assert np.max(np.abs(sub[:, :, k] - truth)[ok]) > 0.1 * peak


def test_ours_noise_free_channel1_is_at_the_ideal(ch1_images):
    """Noise-free, the channel-1 trace model reproduces the ideal oversampled image: 99%
    of the pixels within 1% of the peak (measured: 0.3%; the larger misses are the
    first detector rows, where the wavelength range ends). A wrong ideal (slope of
    alpha, a shifted grid) or a trace model no better than linear interpolation
    (up to 37% of the peak off between the native samples) fails this."""
    native, out, ideal = ch1_images
    peak = np.nanmax(np.asarray(native.data, dtype=float))
    diff = np.abs(np.asarray(out.data, dtype=float) - np.asarray(ideal.data, dtype=float)) / peak
    assert np.isfinite(diff).sum() > 50000
    assert np.nanpercentile(diff, 99) < 0.01
    assert np.nanmedian(diff) < 1e-3


def test_ideal_covers_the_step_output_and_keeps_it(ch1_images):
    native, out, ideal = ch1_images
    before = np.array(out.data)
    again = V.ideal_oversampled_image(out, alpha0=0.05, beta0=0.1)
    np.testing.assert_array_equal(np.isfinite(again.data), np.isfinite(before))
    np.testing.assert_array_equal(np.asarray(out.data), before)  # the input is not changed
    np.testing.assert_array_equal(np.asarray(ideal.dq), np.asarray(out.dq))


def test_ideal_needs_an_oversampled_image(ch1_images):
    native, _, _ = ch1_images
    with pytest.raises(ValueError, match="not an oversampled image"):
        V.ideal_oversampled_image(native)
