"""Source spectra and a field-filling emission-line nebula.

Spectra are point-sampled at each column's wavelength (no integration over the
spectral width of a column). Line positions are given as fractions of the
wavelength range so the same scene works for any ``wave_range``.
"""

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Line", "Spectrum", "Nebula", "C_KMS"]

#: Speed of light, km/s.
C_KMS = 299792.458

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


@dataclass(frozen=True)
class Line:
    """
    A Gaussian spectral line.

    Attributes
    ----------
    center : float
        Centre wavelength, micron.
    fwhm : float
        Full width at half maximum, micron.
    peak : float
        Peak height in the units of the spectrum (negative for absorption).
    """

    center: float
    fwhm: float
    peak: float

    def __call__(self, wavelength, shift=0.0):
        """Line profile at ``wavelength`` (micron), centre multiplied by ``1 + shift``."""
        sig = self.fwhm * _FWHM_TO_SIGMA
        c = self.center * (1.0 + shift)
        return self.peak * np.exp(-0.5 * ((np.asarray(wavelength, dtype=np.float64) - c) / sig) ** 2)


@dataclass(frozen=True)
class Spectrum:
    """
    Power-law continuum plus Gaussian lines.

    ``f(lambda) = continuum * (lambda / ref_wavelength) ** slope + sum(lines)``.

    Attributes
    ----------
    continuum : float
        Continuum at ``ref_wavelength`` (mJy for point sources, MJy/sr for the nebula).
    ref_wavelength : float
        Micron.
    slope : float
        Power-law index.
    lines : tuple of Line
    """

    continuum: float
    ref_wavelength: float
    slope: float = 0.0
    lines: tuple = field(default_factory=tuple)

    def __call__(self, wavelength, shift=0.0):
        """
        Evaluate the spectrum.

        Parameters
        ----------
        wavelength : array_like
            Micron.
        shift : float, optional
            Fractional Doppler shift ``v / c`` applied to the lines.

        Returns
        -------
        ndarray of float64
        """
        lam = np.asarray(wavelength, dtype=np.float64)
        out = self.continuum * (lam / self.ref_wavelength) ** self.slope
        for line in self.lines:
            out = out + line(lam, shift)
        return out


def _sinc_mean(k, width):
    """Mean of cos(k x + p) over a window of ``width`` divided by cos(k x_c + p)."""
    return np.sinc(k * width / (2.0 * math.pi))


@dataclass(frozen=True)
class Nebula:
    """
    Spatially smooth, field-filling emission (surface brightness, MJy/sr).

    ``S(alpha, beta, lambda) = pattern(alpha, beta) * spectrum(lambda, shift=v(beta)/c)``
    with ``pattern = 1 + sum_m a_m cos(k_m alpha + q_m beta + p_m)`` and a linear
    velocity field ``v(beta) = velocity_gradient * beta`` (km/s). The pattern is
    smooth on scales much larger than the PSF, so it is used as observed (not
    convolved with the PSF). Its mean over an along-slice window is exact
    (``cos`` terms are multiplied by ``sinc(k w / 2)``), and constant across each
    slice (evaluated at the slice centre ``beta``).

    Attributes
    ----------
    spectrum : Spectrum
        Surface-brightness spectrum at pattern = 1, MJy/sr.
    amplitudes, wavenumbers, beta_wavenumbers, phases : tuple of float
        ``a_m`` (sum of ``|a_m|`` < 1 keeps the pattern positive), ``k_m``
        (rad/arcsec along alpha), ``q_m`` (rad/arcsec along beta), ``p_m`` (rad).
    velocity_gradient : float
        km/s per arcsec of beta.
    """

    spectrum: Spectrum
    amplitudes: tuple = (0.35, 0.2)
    wavenumbers: tuple = (2 * math.pi / 3.7, 2 * math.pi / 2.3)
    beta_wavenumbers: tuple = (2 * math.pi / 5.1, -2 * math.pi / 3.3)
    phases: tuple = (0.4, 1.9)
    velocity_gradient: float = 60.0

    def pattern_mean(self, alpha, beta, width):
        """Mean of the spatial pattern over ``[alpha - width/2, alpha + width/2]`` at slice centre ``beta``."""
        alpha = np.asarray(alpha, dtype=np.float64)
        out = np.ones_like(alpha)
        for a, k, q, p in zip(self.amplitudes, self.wavenumbers, self.beta_wavenumbers, self.phases):
            out = out + a * np.cos(k * alpha + q * beta + p) * _sinc_mean(k, width)
        return out

    def mean_sb(self, alpha, beta, wavelength, width):
        """
        Mean surface brightness over an along-slice window.

        Parameters
        ----------
        alpha : ndarray
            Window centres, arcsec.
        beta : float
            Slice centre, arcsec.
        wavelength : ndarray
            Micron (broadcast with ``alpha``).
        width : float
            Window width along the slice, arcsec.

        Returns
        -------
        ndarray of float64, MJy/sr
        """
        shift = self.velocity_gradient * beta / C_KMS
        return self.pattern_mean(alpha, beta, width) * self.spectrum(wavelength, shift)
