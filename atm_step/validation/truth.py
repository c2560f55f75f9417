"""Truth cubes of simulated scenes on the 1-D drizzle spaxel grid."""

import numpy as np

__all__ = ["truth_cube"]


def truth_cube(scene, centres, spaxel=0.1, nsub=8, part="all"):
    """
    Noise-free cube of a scene: the ideal result of resampling a perfect reconstruction.

    A perfect reconstruction of the detector data at infinite oversampling is the
    native-pixel-integrated profile (``scene.truth(..., width=row_height)``) at every
    along-slice position; drizzling it onto a spaxel averages it over the spaxel. This
    returns that average, computed with ``nsub`` sub-positions per spaxel.

    Parameters
    ----------
    scene : atm_step.simulate.Scene
    centres : ndarray, shape (n_spaxels,)
        Spaxel centres along the slice, arcsec (from the drizzle cube).
    spaxel : float
        Spaxel width, arcsec.
    nsub : int
        Sub-positions per spaxel (midpoint rule).
    part : {"all", "nebula"} or int
        Everything (``scene.truth``), the nebula alone, or point source ``part`` alone.

    Returns
    -------
    ndarray, shape (n_slices, n_spaxels, nx), MJy/sr
    """
    geo = scene.geometry
    nx = geo.nx
    ns = geo.n_slices
    centres = np.asarray(centres, dtype=np.float64)
    sub = ((np.arange(nsub) + 0.5) / nsub - 0.5) * spaxel
    a = (centres[:, None] + sub[None, :]).ravel()
    out = np.zeros((ns, centres.size, nx))
    width = geo.row_height
    for s in range(1, ns + 1):
        reg = np.full((a.size, nx), s)
        col = np.broadcast_to(np.arange(nx), (a.size, nx))
        aa = np.broadcast_to(a[:, None], (a.size, nx))
        if part == "all":
            v = scene.truth(reg, col, aa, width)
        elif part == "nebula":
            v = scene.nebula_truth(reg, col, aa, width)
        else:
            v = scene.source_truth(int(part), reg, col, aa, width)
        out[s - 1] = v.reshape(centres.size, nsub, nx).mean(axis=1)
    return out
