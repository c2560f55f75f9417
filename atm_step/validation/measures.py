"""Measures of resampling artifacts, flux conservation, lines and errors on cubes.

All functions take cubes shaped ``(n_slices, n_spaxels, n_wave)`` (the layout of
:class:`atm_step.validation.drizzle.DrizzleCube`; MIRI cubes from cube_build are
transposed to it by the caller) and return plain numbers or arrays.

The artifact measure follows Law et al. (ATM paper) section III.1: for the brightest
spaxels, the spaxel spectrum is divided by the aperture-summed spectrum (0.6 arcsec
box), a low-order polynomial in wavelength is divided out, and the half-amplitude
and RMS of what remains are reported.
"""

import logging
import warnings

import numpy as np

# the cube measures QA uses too live below both packages (no qa <-> validation cycle)
from atm_step.measures import aperture_box, aperture_spectrum, brightest_spaxels

__all__ = [
    "ArtifactStats",
    "aperture_box",
    "aperture_spectrum",
    "brightest_spaxels",
    "detrended_ratio",
    "artifact_amplitude",
    "truth_deviation",
    "half_amplitude",
    "line_fluxes",
]

log = logging.getLogger(__name__)


def half_amplitude(x):
    """
    Half of the 5-95 percentile range of ``x`` (finite values).

    For a sinusoid of amplitude ``A`` this is ``0.988 A``; for Gaussian noise of
    sigma ``s`` it is ``1.645 s``.
    """
    x = np.asarray(x)
    x = x[np.isfinite(x)]
    if x.size < 5:
        return np.nan
    p5, p95 = np.percentile(x, [5, 95])
    return 0.5 * (p95 - p5)


def detrended_ratio(spec, ref, order=3, edge=0):
    """
    ``spec / ref`` divided by its best-fitting polynomial in wavelength index, minus 1.

    Parameters
    ----------
    spec, ref : ndarray, shape (n_wave,)
    order : int
        Polynomial order (the low-order PSF/colour trend, paper IV).
    edge : int
        Columns dropped at each end.

    Returns
    -------
    ndarray, shape (n_wave,)
        NaN where the ratio is not finite or in the dropped edges.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        r = spec / ref
    n = r.size
    x = np.linspace(-1, 1, n)
    ok = np.isfinite(r)
    if edge:
        ok[:edge] = False
        ok[n - edge :] = False
    out = np.full(n, np.nan)
    if ok.sum() <= order + 2:
        return out
    coef = np.polynomial.polynomial.polyfit(x[ok], r[ok], order)
    trend = np.polynomial.polynomial.polyval(x, coef)
    out[ok] = r[ok] / trend[ok] - 1.0
    return out


class ArtifactStats:
    """
    Per-spaxel and summary artifact numbers.

    Attributes
    ----------
    half_amplitude : ndarray, shape (n,)
        Per spaxel, fractional.
    rms : ndarray, shape (n,)
        Per spaxel, fractional.
    median_half_amplitude, median_rms : float
    residuals : ndarray, shape (n, n_wave)
        The detrended ratios.
    """

    def __init__(self, half_amp, rms, residuals):
        self.half_amplitude = np.asarray(half_amp)
        self.rms = np.asarray(rms)
        self.residuals = residuals
        self.median_half_amplitude = float(np.nanmedian(self.half_amplitude))
        self.median_rms = float(np.nanmedian(self.rms))

    def __repr__(self):
        return f"ArtifactStats(median_half_amplitude={self.median_half_amplitude:.4f}, median_rms={self.median_rms:.4f})"


def artifact_amplitude(cube, spaxels, aperture, order=3, edge=2):
    """
    The paper's artifact measure on the given spaxels.

    Parameters
    ----------
    cube : ndarray, shape (n_slices, n_spaxels, n_wave)
    spaxels : list of (int, int)
        From :func:`brightest_spaxels`.
    aperture : ndarray, shape (n_wave,)
        Aperture-summed spectrum of the same cube.
    order, edge
        See :func:`detrended_ratio`.

    Returns
    -------
    ArtifactStats
    """
    res = np.array([detrended_ratio(cube[i, k], aperture, order, edge) for i, k in spaxels])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rms = np.sqrt(np.nanmean(res**2, axis=1))
    return ArtifactStats([half_amplitude(r) for r in res], rms, res)


def truth_deviation(cube, truth, spaxels, edge=2):
    """
    Each spaxel against the truth cube: ``cube / truth - 1``.

    Parameters
    ----------
    cube, truth : ndarray, shape (n_slices, n_spaxels, n_wave)
    spaxels : list of (int, int)
    edge : int
        Columns dropped at each end.

    Returns
    -------
    dict
        ``median_bias`` (median over spaxels of the mean deviation), ``median_rms``
        (median over spaxels of the RMS deviation), ``median_half_amplitude``
        (of the deviation after removing its mean), all fractional.
    """
    dev = []
    for i, k in spaxels:
        with np.errstate(divide="ignore", invalid="ignore"):
            d = cube[i, k] / truth[i, k] - 1.0
        if edge:
            d = d[edge:-edge]
        dev.append(d)
    dev = np.array(dev)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        bias = np.nanmean(dev, axis=1)
        rms = np.sqrt(np.nanmean(dev**2, axis=1))
    ha = [half_amplitude(d - b) for d, b in zip(dev, bias)]
    return {
        "median_bias": float(np.nanmedian(bias)),
        "median_rms": float(np.nanmedian(rms)),
        "median_half_amplitude": float(np.nanmedian(ha)),
    }


def line_fluxes(spec, centres, half_width, cont_width=4):
    """
    Continuum-subtracted line fluxes of a spectrum sampled on columns.

    Parameters
    ----------
    spec : ndarray, shape (n_wave,)
    centres : sequence of float
        Line centres, column index.
    half_width : int
        The line window is ``centre +- half_width`` columns.
    cont_width : int
        Columns on each side of the window for a linear continuum.

    Returns
    -------
    ndarray, shape (n_lines,)
        Sum over the window of ``spec - continuum`` (flux x columns).
    """
    out = []
    n = spec.size
    for c in centres:
        c = int(round(c))
        lo, hi = c - half_width, c + half_width + 1
        left = np.arange(max(lo - cont_width, 0), max(lo, 0))
        right = np.arange(min(hi, n), min(hi + cont_width, n))
        side = np.concatenate([left, right])
        ys = spec[side]
        ok = np.isfinite(ys)
        if ok.sum() < 2 or lo < 0 or hi > n:
            out.append(np.nan)
            continue
        p = np.polyfit(side[ok], ys[ok], 1)
        x = np.arange(lo, hi)
        out.append(float(np.nansum(spec[lo:hi] - np.polyval(p, x))))
    return np.array(out)
