"""Peak memory of the core at N = 1 (goal: no more than jwst's; docs/performance.md).

The NumPy allocations of one call are traced (`tracemalloc`, which NumPy reports to)
and compared with the image size. At N = 1 the call returns six float64 images
(flux, err, trace, spline, linear, residual) and two boolean ones; while the models
are combined it also holds the float64 along-slice coordinate, the int64 region map,
the native residual and the combined image's buffer. What the models no longer need
is released before the error images are copied, and the input flux is copied into
the combined image's buffer (N = 1 does not use it), so the peak stays at the
combination step: 8.25 images plus small tables (9.25 before those releases).
"""

import tracemalloc

import numpy as np

from atm_step.core import FitParameters, adaptive_trace_model
from atm_step.simulate import make_scene


def _peak_images(sc, **kw):
    """Peak traced memory of one (warm) call, in units of one float64 image."""

    def call():
        return adaptive_trace_model(
            sc.flux,
            sc.alpha,
            sc.regions,
            err=sc.err,
            parameters=FitParameters.nirspec_ifu("NRS1"),
            **kw,
        )

    call()  # compiled kernels loaded outside the trace
    tracemalloc.start()
    try:
        res = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / sc.flux.astype(np.float64).nbytes, res


def test_n1_peak_is_the_combination_step():
    sc = make_scene("crowded", nx=256, ny=None, noise=0.01, seed=2)
    assert sc.flux.dtype == np.float64 and sc.regions.dtype != np.int64  # both paths copy
    peak, res = _peak_images(sc, oversample=1.0, fit_threshold=0.0, slope_limit=0.1)
    # the result itself: 6 float64 images and 2 boolean ones
    assert res.flux is not sc.flux and res.err is not sc.err
    np.testing.assert_array_equal(res.flux, sc.flux)
    np.testing.assert_array_equal(res.err, sc.err)
    assert peak < 8.6, f"peak {peak:.2f} images"
