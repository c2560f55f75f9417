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
    native, _, ideal = ch1_images
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
    _, out, ideal = ch1_images
    before = np.array(out.data)
    again = V.ideal_oversampled_image(out, alpha0=0.05, beta0=0.1)
    np.testing.assert_array_equal(np.isfinite(again.data), np.isfinite(before))
    np.testing.assert_array_equal(np.asarray(out.data), before)  # the input is not changed
    np.testing.assert_array_equal(np.asarray(ideal.dq), np.asarray(out.dq))


def test_ideal_needs_an_oversampled_image(ch1_images):
    native, _, _ = ch1_images
    with pytest.raises(ValueError, match="not an oversampled image"):
        V.ideal_oversampled_image(native)
    with pytest.raises(ValueError, match="needs noise_free=True"):
        V.MiriConfig(ideal_oversamples=(3,), noise_free=False)


def _row(ch, method, n, noisy, nf=None):
    return {"channel": ch, "method": method, "N": n, "half_amp": noisy, "half_amp_noisefree": nf,
            "ap_vs_standard": None if method.startswith("ideal") else 1.0,
            "snr_reported": None if method.startswith("ideal") else 500.0, "seconds": 1.0}


def test_channel12_report_floors_and_seed_means():
    """The report puts each step's floors beside it and averages the seeds (numbers made
    up here, so every ratio is known)."""
    cfg = V.MiriConfig(band="12A", channels={"1": (5.3, 5.6)}, oversamples=(3,),
                       jwst_oversamples=(3,), ideal_oversamples=(3,)).as_dict()

    def run(seed, ours, jwst):
        rows = [_row("1", "standard", 1, 0.20, 0.20), _row("1", "ours", 3, ours, 0.02),
                _row("1", "jwst", 3, jwst, 0.03), _row("1", "ideal", 3, None, 0.016),
                _row("1", "ideal+ours noise", 3, 0.05), _row("1", "ideal+jwst noise", 3, 0.07)]
        return {"rows": rows, "config": cfg, "seed": seed, "peak_snr": 430.0,
                "channels": {"1": {"spaxel_arcsec": 0.13, "noise_floor": 0.015}}}

    text = V.render_ch12_markdown({"runs": [run(1, 0.06, 0.08), run(2, 0.06, 0.07)],
                                   "seeds": [1, 2], "seconds": 10.0})
    table = [line for line in text.splitlines() if line.startswith("| 1 | ours | 3 |")]
    # noisy 6%, floor 5% (1.20), noise-free 2% against the ideal 1.6% (1.25), 0.75 / 0.67 of jwst
    assert table == [("| 1 | ours | 3 | 6.00% | 5.00% | 1.20 | 2.00% | 1.60% | 1.25 | 0.75 | 0.67 | "
                      "1.0000 | 500 |")]
    assert not any(line.startswith("| 1 | ideal") for line in text.splitlines())
    # seed means: ours 6%, jwst 7.5%, ratio 0.80
    assert "| 1 | 3 | jwst | 8.00% | 7.00% | 7.50% | 7.00% | 0.80 |" in text
