"""A 1-D drizzle of detector columns onto regular along-slice spaxels.

No NIRSpec IFU WCS exists offline, so jwst's ``cube_build`` cannot run on the
simulated NIRSpec-like detector images. This module stands in for it: every
detector (or oversampled) pixel covers an interval ``[alpha - d/2, alpha + d/2]``
along its slice, and its surface brightness is distributed onto regular spaxels
of width ``spaxel`` by the exact overlap length. Each spaxel value is the
overlap-weighted mean of the pixels that touch it, exactly as cube_build's drizzle
normalises (``sum(w f) / sum(w)``, variance ``sum(w^2 e^2) / sum(w)^2``), done per
column (= wavelength) and per slice (= one beta row of the cube). Across the slice
no resampling happens (one slice = one spaxel row), which isolates the along-slice
resampling that produces the artifacts studied in the paper (Law et al., III.1).
"""

import logging

import numpy as np

__all__ = ["DrizzleCube", "drizzle_slices", "spaxel_edges"]

log = logging.getLogger(__name__)


class DrizzleCube:
    """
    Result of :func:`drizzle_slices`.

    Attributes
    ----------
    flux : ndarray, shape (n_slices, n_spaxels, nx)
        Surface brightness of each spaxel (input units, e.g. MJy/sr); NaN where no
        finite pixel overlaps the spaxel.
    err : ndarray, shape (n_slices, n_spaxels, nx) or None
        Propagated 1-sigma error (independent pixels assumed, as cube_build does).
    weight : ndarray, shape (n_slices, n_spaxels, nx)
        Sum of overlap weights (arcsec) of the finite pixels.
    region_ids : ndarray, shape (n_slices,)
        Region id of each cube row.
    centres : ndarray, shape (n_spaxels,)
        Spaxel centres along the slice, arcsec.
    """

    def __init__(self, flux, err, weight, region_ids, centres):
        self.flux = flux
        self.err = err
        self.weight = weight
        self.region_ids = region_ids
        self.centres = centres

    def __repr__(self):
        return f"DrizzleCube(shape={self.flux.shape})"


def spaxel_edges(alpha_min, alpha_max, spaxel=0.1):
    """
    Regular spaxel edges covering ``[alpha_min, alpha_max]``, centred on alpha = 0.

    Parameters
    ----------
    alpha_min, alpha_max : float
        Range to cover, arcsec.
    spaxel : float
        Spaxel width, arcsec.

    Returns
    -------
    ndarray, shape (n_spaxels + 1,)
        Edges at ``(k + 1/2) * spaxel``, so that a spaxel is centred on alpha = 0.
    """
    k0 = int(np.floor(alpha_min / spaxel - 0.5))
    k1 = int(np.ceil(alpha_max / spaxel - 0.5))
    return (np.arange(k0, k1 + 1) + 0.5) * spaxel


def drizzle_slices(flux, alpha, regions, pixel_size, *, err=None, spaxel=0.1, edges=None):
    """
    Drizzle each column of each slice onto regular along-slice spaxels.

    Parameters
    ----------
    flux : ndarray of float, shape (ny, nx)
        Detector (or oversampled) image, surface brightness (e.g. MJy/sr); NaN pixels
        are left out (they carry no weight).
    alpha : ndarray of float, shape (ny, nx)
        Along-slice coordinate of each pixel centre, arcsec.
    regions : ndarray of int, shape (ny, nx)
        Slice id per pixel, 0 outside slices.
    pixel_size : float
        Along-slice footprint ``d`` of one pixel, arcsec (native 0.1; ``0.1 / N``
        for an image oversampled ``N`` times).
    err : ndarray of float, shape (ny, nx), optional
        1-sigma errors, propagated as cube_build does.
    spaxel : float
        Output spaxel width along the slice, arcsec.
    edges : ndarray, optional
        Explicit spaxel edges (arcsec); default :func:`spaxel_edges` over the
        finite alpha range.

    Returns
    -------
    DrizzleCube

    Raises
    ------
    ValueError
        If the arrays differ in shape or ``pixel_size`` / ``spaxel`` is not positive.

    Notes
    -----
    The weight of pixel ``i`` in spaxel ``k`` is the overlap length
    ``max(0, min(a_i + d/2, e_{k+1}) - max(a_i - d/2, e_k))``. A constant field
    therefore stays constant, and ``sum_k flux_k * weight_k`` equals
    ``sum_i f_i * d`` (surface brightness times length is conserved) for spaxels
    fully covered by pixels.
    """
    flux = np.asarray(flux, dtype=np.float64)
    alpha = np.asarray(alpha, dtype=np.float64)
    regions = np.asarray(regions)
    if flux.ndim != 2 or flux.shape != alpha.shape or flux.shape != regions.shape:
        raise ValueError(
            f"flux, alpha and regions must be 2-D of one shape, got {flux.shape}, "
            f"{alpha.shape}, {regions.shape}"
        )
    if err is not None:
        err = np.asarray(err, dtype=np.float64)
        if err.shape != flux.shape:
            raise ValueError(f"err shape {err.shape} differs from flux shape {flux.shape}")
    if not (pixel_size > 0 and spaxel > 0):
        raise ValueError(f"pixel_size and spaxel must be > 0, got {pixel_size}, {spaxel}")
    inside = (regions > 0) & np.isfinite(alpha)
    if edges is None:
        edges = spaxel_edges(np.min(alpha[inside]), np.max(alpha[inside]), spaxel)
    edges = np.asarray(edges, dtype=np.float64)
    ids = np.unique(regions[inside])
    ny, nx = flux.shape
    nk = edges.size - 1
    out = np.full((ids.size, nk, nx), np.nan)
    wsum = np.zeros((ids.size, nk, nx))
    out_err = None if err is None else np.full((ids.size, nk, nx), np.nan)
    half = 0.5 * pixel_size
    for j, rid in enumerate(ids):
        rows = np.nonzero(np.any(regions == rid, axis=1))[0]
        sel = regions[rows] == rid
        a = np.where(sel, alpha[rows], np.nan)
        f = np.where(sel, flux[rows], np.nan)
        good = np.isfinite(a) & np.isfinite(f)
        lo = np.where(good, a - half, 0.0)[:, None, :]
        hi = np.where(good, a + half, 0.0)[:, None, :]
        w = np.clip(np.minimum(hi, edges[None, 1:, None]) - np.maximum(lo, edges[None, :-1, None]), 0, None)
        w *= good[:, None, :]
        fz = np.where(good, f, 0.0)[:, None, :]
        ws = w.sum(axis=0)
        num = (w * fz).sum(axis=0)
        ok = ws > 0
        out[j][ok] = num[ok] / ws[ok]
        wsum[j] = ws
        if err is not None:
            e = np.where(good & np.isfinite(err[rows]), err[rows], 0.0)[:, None, :]
            var = (w * w * e * e).sum(axis=0)
            out_err[j][ok] = np.sqrt(var[ok]) / ws[ok]
    log.debug("drizzle_slices: %d slices x %d spaxels x %d columns", ids.size, nk, nx)
    return DrizzleCube(out, out_err, wsum, ids, 0.5 * (edges[1:] + edges[:-1]))
