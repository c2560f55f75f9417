"""A tabulated, diffraction-limited PSF for a circular aperture.

The model is the Airy pattern of an unobscured circular aperture of diameter
``D``, optionally convolved with a circular Gaussian (pointing jitter / optics
blur), normalised to unit integral over the infinite sky plane. It is tabulated
as the quadrant integral

.. math::  Q_\\lambda(a, b) = \\int_0^a \\int_0^b P_\\lambda(a', b')\\,db'\\,da'

on a grid that is uniform in ``u = asinh(|a| / s)`` (fine in the core, coarse in
the far wings), on a set of wavelength nodes spaced evenly in ``ln(lambda)``.
Every quantity the simulator produces (pixel values and the noise-free truth)
is derived from that one table by bilinear interpolation in
``(u_alpha, u_beta)`` and linear interpolation in wavelength between nodes, so
the truth is exact *to this model*. The PSF is taken as zero beyond
``extent`` arcsec from its centre along either axis.

Coordinates: ``alpha`` (along slice) and ``beta`` (across slice) in arcsec,
relative to the PSF centre; wavelength in micron.
"""

import logging
import math

import numpy as np
from scipy import special
from scipy.integrate import cumulative_trapezoid

__all__ = ["AiryPSF", "RAD_TO_ARCSEC", "jitter_for_fwhm"]

log = logging.getLogger(__name__)

#: Radians to arcseconds.
RAD_TO_ARCSEC = 180.0 / math.pi * 3600.0


class AiryPSF:
    """
    Airy PSF of a circular aperture, optionally blurred by a Gaussian.

    Parameters
    ----------
    diameter : float, optional
        Aperture diameter in metres (default 6.5, JWST).
    jitter_fwhm : float, optional
        FWHM in arcsec of a circular Gaussian the Airy pattern is convolved
        with (jitter and residual optical blur). 0 gives the pure Airy pattern.
    wavelength_range : tuple of float, optional
        ``(min, max)`` wavelength in micron the table must cover. Default
        ``(0.6, 5.3)`` (NIRSpec); use e.g. ``(4.9, 28.0)`` for MIRI MRS.
        Wavelengths outside raise ``ValueError``.
    extent : float, optional
        Half-size in arcsec of the modelled field along each axis; the PSF is
        zero beyond it. Default ``max(4, 25 lambda_max / D)``.
    node_step : float, optional
        Fractional spacing of the wavelength nodes (default 0.02, i.e. 2 %).
    core_sampling : float, optional
        Table samples per ``lambda_min / D`` in the PSF core (default 8).
    wing_fraction : float, optional
        Fraction of the flux moved from the core into faint wide wings, a circular
        Gaussian of FWHM ``wing_fwhm`` (default 0: no wings). Models the scattered
        light halo around the diffraction core; the total stays normalised to 1.
    wing_fwhm : float, optional
        FWHM of the wing Gaussian, arcsec (default 0.6).

    Raises
    ------
    ValueError
        For non-positive sizes, a negative jitter, an empty wavelength range or a
        wing fraction outside [0, 1).

    Notes
    -----
    The unblurred profile is
    ``P(r) = pi / (4 (lambda/D)^2) * (2 J1(x) / x)^2`` per arcsec^2 with
    ``x = pi r / (lambda/D)`` (Born & Wolf, *Principles of Optics*, 8.5.2),
    which integrates to 1 over the plane. The Gaussian blur is applied to the
    radial profile with the exact circular kernel
    ``(r'/sigma^2) exp(-(r-r')^2 / 2 sigma^2) I0e(r r'/sigma^2)``.
    Tables are built lazily per wavelength node and cached.
    """

    def __init__(
        self,
        diameter=6.5,
        jitter_fwhm=0.01,
        wavelength_range=(0.6, 5.3),
        extent=None,
        node_step=0.02,
        core_sampling=8.0,
        wing_fraction=0.0,
        wing_fwhm=0.6,
    ):
        if not diameter > 0:
            raise ValueError(f"diameter must be > 0 m, got {diameter!r}")
        if not jitter_fwhm >= 0:
            raise ValueError(f"jitter_fwhm must be >= 0 arcsec, got {jitter_fwhm!r}")
        lmin, lmax = (float(v) for v in wavelength_range)
        if not (0 < lmin < lmax):
            raise ValueError(
                f"wavelength_range must be (min, max) with 0 < min < max micron, got {wavelength_range!r}"
            )
        if not node_step > 0:
            raise ValueError(f"node_step must be > 0, got {node_step!r}")
        if not core_sampling > 0:
            raise ValueError(f"core_sampling must be > 0, got {core_sampling!r}")
        if not 0.0 <= wing_fraction < 1.0:
            raise ValueError(f"wing_fraction must be in [0, 1), got {wing_fraction!r}")
        if not wing_fwhm > 0:
            raise ValueError(f"wing_fwhm must be > 0 arcsec, got {wing_fwhm!r}")
        self.diameter = float(diameter)
        self.jitter_fwhm = float(jitter_fwhm)
        self.wing_fraction = float(wing_fraction)
        self.wing_fwhm = float(wing_fwhm)
        self.wavelength_range = (lmin, lmax)
        if extent is None:
            extent = max(4.0, 25.0 * self.lambda_over_d(lmax))
        if not extent > 0:
            raise ValueError(f"extent must be > 0 arcsec, got {extent!r}")

        # grid uniform in u = asinh(a / s): spacing s*du in the core, ~a*du in the wings
        self._s = 10.0 * self.lambda_over_d(lmin)
        self._du = 1.0 / (10.0 * core_sampling)
        self._nu = int(math.ceil(math.asinh(extent / self._s) / self._du))
        self._grid = self._s * np.sinh(self._du * np.arange(self._nu + 1))
        self.extent = float(self._grid[-1])

        n_nodes = max(2, int(math.ceil(math.log(lmax / lmin) / math.log1p(node_step))) + 1)
        self.node_wavelengths = lmin * np.exp(np.linspace(0.0, math.log(lmax / lmin), n_nodes))
        self.node_wavelengths[-1] = lmax
        self._tables = {}
        self._stack_cache = None

    def __repr__(self):
        return (
            f"AiryPSF(diameter={self.diameter}, jitter_fwhm={self.jitter_fwhm}, "
            + (f"wing_fraction={self.wing_fraction}, wing_fwhm={self.wing_fwhm}, " if self.wing_fraction else "")
            + f"wavelength_range={self.wavelength_range}, extent={self.extent:.3f})"
        )

    # ------------------------------------------------------------------ model
    def lambda_over_d(self, wavelength):
        """
        ``lambda / D`` in arcsec.

        Parameters
        ----------
        wavelength : float or array_like
            Wavelength in micron.

        Returns
        -------
        float or ndarray
        """
        return np.asarray(wavelength, dtype=np.float64) * 1e-6 / self.diameter * RAD_TO_ARCSEC

    def radial_profile(self, radius, wavelength):
        """
        The continuous (un-tabulated) PSF surface density at a radius.

        Parameters
        ----------
        radius : array_like
            Distance from the PSF centre in arcsec.
        wavelength : float
            Wavelength in micron.

        Returns
        -------
        ndarray
            PSF per arcsec^2 (unit integral over the plane), same shape as ``radius``.
        """
        r_grid, prof = self._radial(float(wavelength))
        return np.interp(np.abs(np.asarray(radius, dtype=np.float64)), r_grid, prof, right=0.0)

    def _radial(self, lam):
        r, core = self._radial_core(lam)
        if not self.wing_fraction:
            return r, core
        sw = self.wing_fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        wing = np.exp(-0.5 * (r / sw) ** 2) / (2.0 * math.pi * sw**2)
        return r, (1.0 - self.wing_fraction) * core + self.wing_fraction * wing

    def _radial_core(self, lam):
        lod = float(self.lambda_over_d(lam))
        sig = self.jitter_fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        h = lod / 20.0
        if sig > 0:
            h = min(h, sig / 4.0)
        r_max = self.extent * math.sqrt(2.0) + 8.0 * sig + 2 * h
        r = np.arange(0.0, r_max + h, h)
        x = math.pi * r / lod
        with np.errstate(invalid="ignore", divide="ignore"):
            airy = np.where(x > 0, (2.0 * special.j1(x) / x) ** 2, 1.0)
        airy *= math.pi / (4.0 * lod**2)
        if sig == 0:
            return r, airy
        m = int(math.ceil(6.0 * sig / h))
        offs = np.arange(-m, m + 1)
        j = np.arange(r.size)[:, None] + offs[None, :]
        valid = (j >= 0) & (j < r.size)
        jc = np.clip(j, 0, r.size - 1)
        rp = r[jc]
        ri = r[:, None]
        kern = (rp / sig**2) * np.exp(-0.5 * ((ri - rp) / sig) ** 2) * special.i0e(ri * rp / sig**2)
        wts = np.where(valid, h, 0.0)
        wts = np.where(jc == 0, 0.5 * wts, wts)  # trapezoid end weight at r' = 0
        blurred = np.sum(airy[jc] * kern * wts, axis=1)
        return r, blurred

    def _node_table(self, node):
        tab = self._tables.get(node)
        if tab is None:
            r, prof = self._radial(float(self.node_wavelengths[node]))
            g = self._grid
            rr = np.hypot(g[:, None], g[None, :])
            p2 = np.interp(rr, r, prof, right=0.0)
            q = cumulative_trapezoid(p2, g, axis=0, initial=0.0)
            q = cumulative_trapezoid(q, g, axis=1, initial=0.0)
            tab = q
            self._tables[node] = tab
            log.debug("AiryPSF: built table for node %d (%.4f um)", node, self.node_wavelengths[node])
        return tab

    def _stack(self, nodes):
        key = tuple(int(n) for n in nodes)
        if self._stack_cache is None or self._stack_cache[0] != key:
            self._stack_cache = (key, np.stack([self._node_table(n) for n in key]))
        return self._stack_cache[1]

    # --------------------------------------------------------------- helpers
    def node_weights(self, wavelength):
        """
        Wavelength-node interpolation for each wavelength.

        Parameters
        ----------
        wavelength : array_like
            Wavelength in micron, within ``wavelength_range``.

        Returns
        -------
        lo : ndarray of int64
            Index of the lower node.
        w : ndarray of float64
            Weight of node ``lo + 1`` (``1 - w`` for node ``lo``), linear in wavelength.

        Raises
        ------
        ValueError
            If a wavelength is outside ``wavelength_range`` or not finite.
        """
        lam = np.asarray(wavelength, dtype=np.float64)
        lmin, lmax = self.wavelength_range
        tol = 1e-9 * lmax
        if lam.size and (not np.all(np.isfinite(lam)) or lam.min() < lmin - tol or lam.max() > lmax + tol):
            raise ValueError(
                f"wavelength outside the PSF table range {self.wavelength_range} micron "
                f"(got {np.nanmin(lam):.4g}..{np.nanmax(lam):.4g}); build AiryPSF with a wider wavelength_range"
            )
        nodes = self.node_wavelengths
        lo = np.clip(np.searchsorted(nodes, lam, side="right") - 1, 0, nodes.size - 2)
        w = np.clip((lam - nodes[lo]) / (nodes[lo + 1] - nodes[lo]), 0.0, 1.0)
        return lo.astype(np.int64), w

    def _u_index(self, x):
        """Fractional signed-grid index ``n_u + asinh(x/s)/du`` clipped to the table."""
        t = self._nu + np.arcsinh(np.asarray(x, dtype=np.float64) / self._s) / self._du
        return np.clip(t, 0.0, 2.0 * self._nu)

    def _q_index(self, x):
        """Quadrant-grid index ``asinh(|x|/s)/du`` (clipped), integer part and fraction."""
        t = np.minimum(np.arcsinh(np.abs(x) / self._s) / self._du, float(self._nu))
        i = np.minimum(t.astype(np.int64), self._nu - 1)
        return i, t - i

    def band_cdf_tables(self, beta_lo, beta_hi, nodes):
        """
        Along-alpha CDF of the PSF integrated over a beta band, tabulated.

        Parameters
        ----------
        beta_lo, beta_hi : float
            Band limits in arcsec relative to the PSF centre.
        nodes : array_like of int
            Wavelength node indices.

        Returns
        -------
        ndarray, shape (len(nodes), 2 n_u + 1)
            ``int_{-inf}^{a_k} int_{beta_lo}^{beta_hi} P da db`` at the signed grid
            points ``a_k = sign(k - n_u) s sinh(|k - n_u| du)``; evaluate with
            :meth:`eval_band_cdf`.
        """
        q = self._stack(nodes)  # (n, a, b), quadrant a, b >= 0
        g = 0.0
        for b, sgn in ((beta_hi, 1.0), (beta_lo, -1.0)):
            ib, fb = self._q_index(np.float64(b))
            qb = q[:, :, ib] * (1.0 - fb) + q[:, :, ib + 1] * fb  # int_0^a int_0^|b|
            g = g + sgn * np.sign(b) * qb
        g = np.concatenate([-g[:, :0:-1], g], axis=1)  # odd in a: int_0^a over the band
        return g - g[:, :1]  # value 0 at a = -extent

    def eval_band_cdf(self, tables, lo, w, alpha):
        """
        Evaluate tables from :meth:`band_cdf_tables` (bilinear in node and u).

        Parameters
        ----------
        tables : ndarray, shape (n_nodes_sub, 2 n_u + 1)
        lo : ndarray of int
            Lower node index *into* ``tables`` (not the global node index).
        w : ndarray of float
            Weight of node ``lo + 1``.
        alpha : ndarray of float
            Along-slice offset from the PSF centre in arcsec.

        Returns
        -------
        ndarray
            CDF values, broadcast shape of ``lo, w, alpha``.
        """
        t = self._u_index(alpha)
        i = np.minimum(t.astype(np.int64), 2 * self._nu - 1)
        f = t - i
        flat = tables.ravel()
        n = tables.shape[1]
        k = lo * n + i
        v0 = flat[k] + f * (flat[k + 1] - flat[k])
        k = k + n
        v1 = flat[k] + f * (flat[k + 1] - flat[k])
        return v0 + w * (v1 - v0)

    # ------------------------------------------------------------------- API
    def integral(self, alpha_lo, alpha_hi, beta_lo, beta_hi, wavelength):
        """
        Fraction of the PSF's total flux inside a rectangle.

        All arguments broadcast against each other (NumPy rules).

        Parameters
        ----------
        alpha_lo, alpha_hi : array_like
            Along-slice limits in arcsec, relative to the PSF centre
            (``+-inf`` allowed).
        beta_lo, beta_hi : array_like
            Across-slice limits in arcsec, relative to the PSF centre
            (``+-inf`` allowed).
        wavelength : array_like
            Wavelength in micron, within ``wavelength_range``.

        Returns
        -------
        ndarray of float64
            ``int int P(alpha, beta; lambda) dalpha dbeta`` over
            ``[alpha_lo, alpha_hi] x [beta_lo, beta_hi]`` (negative if a limit pair
            is reversed). The whole plane gives ``~1`` (minus the flux beyond
            ``extent``). NaN where a limit is NaN.

        Raises
        ------
        ValueError
            If a wavelength is outside ``wavelength_range``.

        Examples
        --------
        >>> psf = AiryPSF(wavelength_range=(1.0, 2.0))
        >>> float(psf.integral(-0.05, 0.05, -0.05, 0.05, 1.5))  # doctest: +SKIP
        """
        a0, a1, b0, b1, lam = np.broadcast_arrays(
            *(np.asarray(v, dtype=np.float64) for v in (alpha_lo, alpha_hi, beta_lo, beta_hi, wavelength))
        )
        shape = a0.shape
        a0, a1, b0, b1, lam = (np.ravel(v) for v in (a0, a1, b0, b1, lam))
        bad = np.isnan(a0) | np.isnan(a1) | np.isnan(b0) | np.isnan(b1)
        if bad.any():
            a0, a1, b0, b1 = (np.where(bad, 0.0, v) for v in (a0, a1, b0, b1))
        lo, w = self.node_weights(lam)
        used = np.unique(np.concatenate([lo, lo + 1]))
        q = self._stack(used)
        m = q.shape[1]
        flat = q.ravel()
        lo_sub = np.searchsorted(used, lo)

        def corner(a, b):
            # Q(a, b) = sign(a) sign(b) Q(|a|, |b|), bilinear in (u_a, u_b), linear in wavelength
            ia, fa = self._q_index(a)
            ib, fb = self._q_index(b)
            out = 0.0
            for dn, wn in ((0, 1.0 - w), (1, w)):
                base = (lo_sub + dn) * m * m + ia * m + ib
                v = (
                    flat[base] * (1 - fa) * (1 - fb)
                    + flat[base + m] * fa * (1 - fb)
                    + flat[base + 1] * (1 - fa) * fb
                    + flat[base + m + 1] * fa * fb
                )
                out = out + wn * v
            return np.sign(a) * np.sign(b) * out

        res = corner(a1, b1) - corner(a0, b1) - corner(a1, b0) + corner(a0, b0)
        res = np.where(bad, np.nan, res)
        return res.reshape(shape)


def jitter_for_fwhm(fwhm, wavelength, diameter=6.5):
    """
    Gaussian blur that broadens the Airy core to a given FWHM.

    Parameters
    ----------
    fwhm : float
        Wanted FWHM of the blurred (not pixel-integrated) radial profile, arcsec.
    wavelength : float
        Micron.
    diameter : float, optional
        Aperture diameter, metres (default 6.5, JWST).

    Returns
    -------
    float
        ``jitter_fwhm`` (arcsec) for :class:`AiryPSF`; 0 when ``fwhm`` is not larger
        than the unblurred Airy FWHM (``1.029 lambda / D``).

    Raises
    ------
    ValueError
        If ``fwhm`` or ``wavelength`` is not positive.

    Notes
    -----
    Solved with :func:`scipy.optimize.brentq` on the FWHM of
    :meth:`AiryPSF.radial_profile` (wings excluded), to 1e-4 of ``fwhm``.
    """
    from scipy.optimize import brentq

    fwhm, lam = float(fwhm), float(wavelength)
    if not (fwhm > 0 and lam > 0):
        raise ValueError(f"fwhm and wavelength must be > 0, got {fwhm}, {lam}")
    r = np.linspace(0.0, 2.0 * fwhm, 4001)

    def measured(jitter):
        psf = AiryPSF(diameter, jitter_fwhm=jitter, wavelength_range=(0.999 * lam, 1.001 * lam),
                      extent=max(1.0, 4.0 * fwhm))
        prof = psf.radial_profile(r, lam)
        i = int(np.argmax(prof < 0.5 * prof[0]))
        return 2.0 * np.interp(0.5 * prof[0], [prof[i], prof[i - 1]], [r[i], r[i - 1]])

    if measured(0.0) >= fwhm:
        return 0.0
    return float(brentq(lambda j: measured(j) - fwhm, 0.0, fwhm, xtol=1e-4 * fwhm))
