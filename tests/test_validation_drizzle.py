"""The 1-D drizzle that stands in for cube_build on NIRSpec-like arrays."""

import numpy as np
import pytest

from atm_step.validation.drizzle import drizzle_slices, spaxel_edges


def _one_slice(ny=12, nx=5, shift=0.037, d=0.1):
    alpha = (np.arange(ny)[:, None] - ny / 2) * d + shift + 0.002 * np.arange(nx)[None, :]
    regions = np.ones((ny, nx), dtype=int)
    return alpha, regions


@pytest.mark.parametrize("n", [1, 2, 3])
def test_constant_field_stays_constant(n):
    alpha, regions = _one_slice(ny=12 * n, d=0.1 / n)
    flux = np.full(alpha.shape, 3.5)
    cube = drizzle_slices(flux, alpha, regions, 0.1 / n, err=np.full(alpha.shape, 0.2))
    ok = np.isfinite(cube.flux)
    assert ok.sum() > 40
    np.testing.assert_allclose(cube.flux[ok], 3.5, rtol=1e-12)


def test_flux_conserved_and_weights_exact():
    rng = np.random.default_rng(3)
    alpha, regions = _one_slice()
    flux = rng.uniform(1, 5, alpha.shape)
    edges = spaxel_edges(-1.0, 1.0)
    cube = drizzle_slices(flux, alpha, regions, 0.1, edges=edges)
    # sum over spaxels of (surface brightness x covered length) = sum of pixel values x d
    total_out = np.nansum(cube.flux[0] * cube.weight[0], axis=0)
    np.testing.assert_allclose(total_out, flux.sum(axis=0) * 0.1, rtol=1e-12)
    # exact overlap weights: total weight = covered length
    np.testing.assert_allclose(cube.weight[0].sum(axis=0), 12 * 0.1, rtol=1e-12)


def test_pixel_aligned_with_spaxels_is_identity_and_errors_propagate():
    ny = 10
    alpha = np.repeat(((np.arange(ny) - 5) * 0.1)[:, None], 3, axis=1)
    regions = np.full((ny, 3), 4)
    flux = np.arange(ny * 3, dtype=float).reshape(ny, 3)
    err = np.full((ny, 3), 0.3)
    cube = drizzle_slices(flux, alpha, regions, 0.1, err=err)
    assert cube.region_ids.tolist() == [4]
    np.testing.assert_allclose(cube.flux[0], flux, atol=1e-9)
    np.testing.assert_allclose(cube.err[0], 0.3, rtol=1e-9)
    # half-pixel shift: each spaxel is the mean of two pixels, error 0.3 / sqrt(2)
    edges = np.append(cube.centres - 0.05, cube.centres[-1] + 0.05)
    cube2 = drizzle_slices(flux, alpha + 0.05, regions, 0.1, err=err, edges=edges)
    np.testing.assert_allclose(cube2.flux[0][1:], 0.5 * (flux[:-1] + flux[1:]), atol=1e-9)
    np.testing.assert_allclose(cube2.err[0][1:], 0.3 / np.sqrt(2), rtol=1e-9)


def test_nan_pixels_carry_no_weight_and_bad_shapes_raise():
    alpha, regions = _one_slice()
    flux = np.ones(alpha.shape)
    flux[5, 2] = np.nan
    cube = drizzle_slices(flux, alpha, regions, 0.1)
    assert np.all(cube.flux[np.isfinite(cube.flux)] == 1.0)
    with pytest.raises(ValueError, match="one shape"):
        drizzle_slices(flux[:-1], alpha, regions, 0.1)
    with pytest.raises(ValueError, match="> 0"):
        drizzle_slices(flux, alpha, regions, 0.0)
