"""Simulated NIRSpec-IFU-like scenes with known noise-free truth.

See :func:`make_scene` for the scenes and :class:`Scene` for what they hold.

Units: images in MJy/sr (a pixel's value is the mean surface brightness over
its footprint, ``row_height x slice_width`` arcsec); point-source spectra in
mJy; alpha, beta in arcsec; wavelength in micron.
"""

import logging
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache

import astropy.units as u
import numpy as np

from atm_step.simulate.geometry import SliceGeometry
from atm_step.simulate.psf import AiryPSF
from atm_step.simulate.spectra import Line, Nebula, Spectrum

__all__ = ["SCENES", "Scene", "Source", "make_scene", "ARCSEC2_TO_SR", "MJY_TO_MJY"]

log = logging.getLogger(__name__)

#: Valid scene names for :func:`make_scene`.
SCENES = ("point_source", "nebula", "two_sources", "crowded", "bad_pixels", "negative_offset")

#: Steradians per square arcsecond.
ARCSEC2_TO_SR = float((1.0 * u.arcsec**2).to(u.sr).value)
#: MJy per mJy.
MJY_TO_MJY = 1e-9


@dataclass
class Source:
    """
    A point source.

    Attributes
    ----------
    name : str
    alpha, beta : float
        Position in arcsec (beta = 0 is the middle of the slice stack).
    spectrum : Spectrum
        Callable: ``spectrum(wavelength_um) -> mJy``.
    flux : ndarray, shape (nx,)
        ``spectrum`` at each column's wavelength, mJy.

    Items can also be read dict-style (``source["alpha"]``).
    """

    name: str
    alpha: float
    beta: float
    spectrum: Spectrum
    flux: np.ndarray

    def __getitem__(self, key):
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None


@dataclass(eq=False)
class Scene:
    """
    A simulated detector image and its noise-free truth.

    All images are ``(ny, nx)``; dispersion runs along x (columns).

    Attributes
    ----------
    name : str
        Scene name (one of :data:`SCENES`).
    flux : ndarray of float64
        Noisy image, MJy/sr; NaN outside slices and at injected bad pixels.
    err : ndarray of float64
        ``noise`` where ``flux`` is finite, NaN elsewhere.
    alpha : ndarray of float64
        Along-slice coordinate of each pixel centre (arcsec), NaN outside slices.
    regions : ndarray of int32
        Slice id 1..n_slices, 0 outside slices.
    wavelength : ndarray of float64
        Micron, NaN outside slices (linear in column).
    column_wavelength : ndarray, shape (nx,)
        Wavelength of each column, micron.
    truth_native : ndarray of float64
        Noise-free image (includes ``offset``), NaN outside slices only.
    bad_pixel_mask : ndarray of bool
        True where a NaN was injected.
    sources : list of Source
    nebula : Nebula or None
    offset : float
        Constant background added to every slice pixel, MJy/sr (0 if none).
    noise : float
        Gaussian sigma, MJy/sr.
    seed : int or None
    psf : AiryPSF
    geometry : SliceGeometry
    options : dict
        The scene options used (after defaults).
    """

    name: str
    geometry: SliceGeometry
    psf: AiryPSF
    column_wavelength: np.ndarray
    sources: list
    nebula: object = None
    offset: float = 0.0
    noise: float = 0.0
    seed: object = None
    options: dict = field(default_factory=dict)
    flux: np.ndarray = None
    err: np.ndarray = None
    alpha: np.ndarray = None
    regions: np.ndarray = None
    wavelength: np.ndarray = None
    truth_native: np.ndarray = None
    bad_pixel_mask: np.ndarray = None

    def __repr__(self):
        ny, nx = self.shape
        return (
            f"Scene(name={self.name!r}, shape=({ny}, {nx}), sources={len(self.sources)}, "
            f"nebula={self.nebula is not None}, offset={self.offset}, noise={self.noise}, seed={self.seed})"
        )

    def __post_init__(self):
        lo, w = self.psf.node_weights(self.column_wavelength)
        self._node0 = int(lo.min())
        self._nodes = np.arange(self._node0, int(lo.max()) + 2)
        self._col_lo = lo - self._node0
        self._col_w = w
        if self.regions is None:
            self.regions, self.alpha = self.geometry.maps()
        if self.wavelength is None:
            self.wavelength = np.where(self.regions > 0, self.column_wavelength[None, :], np.nan)

    # ------------------------------------------------------------ geometry
    @property
    def beta(self):
        """ndarray (n_slices,): across-slice centre of region id ``k`` at index ``k - 1``, arcsec."""
        return self.geometry.beta

    @property
    def shape(self):
        """``(ny, nx)``."""
        return (self.geometry.ny, self.geometry.nx)

    # ---------------------------------------------------------- evaluation
    def _slice_values(self, s, col, alpha, width, sources, nebula, offset):
        """Truth in slice ``s`` at flat arrays ``col`` (int) and ``alpha`` (window centres)."""
        geo = self.geometry
        out = np.zeros(alpha.shape)
        bs = float(geo.beta[s - 1])
        hw = 0.5 * geo.slice_width
        if len(sources):
            lo = self._col_lo[col]
            w = self._col_w[col]
            norm = MJY_TO_MJY / (width * geo.slice_width * ARCSEC2_TO_SR)
            for k in sources:
                src = self.sources[k]
                tab = self.psf.band_cdf_tables(bs - hw - src.beta, bs + hw - src.beta, self._nodes)
                da = alpha - src.alpha
                frac = self.psf.eval_band_cdf(tab, lo, w, da + 0.5 * width) - self.psf.eval_band_cdf(
                    tab, lo, w, da - 0.5 * width
                )
                out += (src.flux[col] * norm) * frac
        if nebula and self.nebula is not None:
            out += self.nebula.mean_sb(alpha, bs, self.column_wavelength[col], width)
        if offset:
            out += self.offset
        return out

    def _select(self, sources):
        if sources is None:
            return list(range(len(self.sources)))
        idx = [int(k) for k in np.atleast_1d(sources)]
        for k in idx:
            if not -len(self.sources) <= k < len(self.sources):
                raise IndexError(f"source index {k} out of range: the scene has {len(self.sources)} sources")
        return [k % len(self.sources) for k in idx]

    def _width(self, width):
        width = self.geometry.row_height if width is None else float(width)
        if not width > 0:
            raise ValueError(f"width must be > 0 arcsec, got {width}")
        return width

    def _evaluate(self, region, column, alpha_centre, width, sources, nebula, offset):
        width = self._width(width)
        src = self._select(sources)
        region, column, alpha_centre = np.broadcast_arrays(
            np.asarray(region), np.asarray(column), np.asarray(alpha_centre, dtype=np.float64)
        )
        shape = region.shape
        reg = region.ravel()
        if reg.size and not np.issubdtype(reg.dtype, np.integer):
            if not np.all(np.isfinite(reg)) or np.any(reg != np.round(reg)):
                raise ValueError("region must hold integer slice ids")
        reg = reg.astype(np.int64)
        col = column.ravel()
        if col.size and not np.issubdtype(col.dtype, np.integer):
            if not np.all(np.isfinite(col)) or np.any(col != np.round(col)):
                raise ValueError("column must hold integer column indices")
        col = col.astype(np.int64)
        a = alpha_centre.ravel()
        n = self.geometry.n_slices
        if reg.size and (reg.min() < 0 or reg.max() > n):
            raise ValueError(f"region ids must be in 1..{n} (0 gives NaN), got {reg.min()}..{reg.max()}")
        if col.size and (col.min() < 0 or col.max() >= self.geometry.nx):
            raise ValueError(f"column must be in 0..{self.geometry.nx - 1}, got {col.min()}..{col.max()}")
        inside = reg > 0
        if not np.all(np.isfinite(a[inside])):
            raise ValueError("alpha_centre must be finite where region > 0")
        out = np.full(reg.shape, np.nan)
        order = np.argsort(reg, kind="stable")
        sreg = reg[order]
        for s in np.unique(sreg[sreg > 0]):
            i0, i1 = np.searchsorted(sreg, [s, s + 1])
            idx = order[i0:i1]
            out[idx] = self._slice_values(int(s), col[idx], a[idx], width, src, nebula, offset)
        return out.reshape(shape)

    def truth(self, region, column, alpha_centre, width=None):
        """
        Noise-free mean surface brightness over an along-slice window.

        Parameters
        ----------
        region : int or array_like of int
            Slice id 1..n_slices (0 gives NaN).
        column : int or array_like of int
            Detector column 0..nx-1.
        alpha_centre : float or array_like
            Window centre along the slice, arcsec. ``region``, ``column`` and
            ``alpha_centre`` broadcast against each other.
        width : float, optional
            Window width along the slice, arcsec; default the native row height
            (0.1), so that at native pixel centres this equals ``truth_native``.

        Returns
        -------
        ndarray of float64, MJy/sr
            Mean over ``[alpha_centre - width/2, alpha_centre + width/2]`` and the
            slice width, of all sources (PSF-convolved), the nebula and the offset.

        Raises
        ------
        ValueError
            For region ids outside 0..n_slices, columns outside the detector,
            non-finite alpha in a slice or a non-positive width.
        """
        return self._evaluate(region, column, alpha_centre, width, None, True, True)

    def source_truth(self, index, region, column, alpha_centre, width=None):
        """
        Like :meth:`truth` for point source(s) ``index`` alone (no nebula, no offset).

        Parameters
        ----------
        index : int or sequence of int
            Index (or indices) into ``sources``.
        region, column, alpha_centre, width
            As for :meth:`truth`.

        Returns
        -------
        ndarray of float64, MJy/sr

        Raises
        ------
        IndexError
            If an index is out of range.
        """
        return self._evaluate(region, column, alpha_centre, width, index, False, False)

    def nebula_truth(self, region, column, alpha_centre, width=None):
        """Like :meth:`truth` for the nebula alone (zero if the scene has none)."""
        return self._evaluate(region, column, alpha_centre, width, [], True, False)

    def _native(self, sources, nebula, offset):
        geo = self.geometry
        out = np.full(self.shape, np.nan)
        cols = np.broadcast_to(np.arange(geo.nx), (geo.rows_per_slice, geo.nx))
        src = self._select(sources)
        for s in range(1, geo.n_slices + 1):
            rows = geo.slice_rows(s)
            a = self.alpha[rows, cols]
            out[rows, cols] = self._slice_values(
                s, cols.ravel(), a.ravel(), geo.row_height, src, nebula, offset
            ).reshape(rows.shape)
        return out

    def source_truth_native(self, index):
        """
        Noise-free native image of point source(s) ``index`` alone.

        Returns
        -------
        ndarray of float64, shape (ny, nx), MJy/sr; NaN outside slices.
        """
        return self._native(index, False, False)

    def _oversampled_coords(self, oversample):
        oversample = float(oversample)
        if not (oversample >= 1 and math.isfinite(oversample)):
            raise ValueError(f"oversample must be a finite number >= 1, got {oversample}")
        geo = self.geometry
        n_os = int(math.ceil(geo.ny * oversample))
        y = np.arange(n_os) / oversample - (oversample - 1.0) / (2.0 * oversample)
        near = np.clip(np.round(y).astype(np.int64), 0, geo.ny - 1)
        reg = self.regions[near, :]
        x = np.arange(geo.nx)
        first = np.asarray(geo.first_rows, dtype=np.float64)
        y_low = first[np.maximum(reg, 1) - 1] - 0.5 + geo.tilt(x)[None, :]
        alpha = np.where(reg > 0, geo.alpha_min + (y[:, None] - y_low) * geo.row_height, np.nan)
        cols = np.broadcast_to(x, reg.shape)
        return reg, cols, alpha

    def oversampled_alpha(self, oversample):
        """
        Along-slice coordinate of each oversampled pixel.

        Row ``j`` sits at native row ``y = j/N - (N-1)/(2N)`` and takes the region
        of the nearest native pixel (``numpy.round``).

        Returns
        -------
        regions : ndarray of int32, shape (ceil(ny*N), nx)
        alpha : ndarray of float64, shape (ceil(ny*N), nx), NaN outside slices
        """
        reg, _, alpha = self._oversampled_coords(oversample)
        return reg, alpha

    def truth_oversampled(self, oversample, width=None):
        """
        Noise-free truth on the grid oversampled ``oversample`` times along y.

        Parameters
        ----------
        oversample : float
            Oversampling factor ``N >= 1``.
        width : float, optional
            Along-slice window (arcsec) averaged at each oversampled row; default
            the native row height, i.e. the pixel-integrated profile that an
            ideal reconstruction of the native data recovers.

        Returns
        -------
        ndarray of float64, shape (ceil(ny*N), nx), MJy/sr
            NaN outside slices.
        """
        reg, cols, alpha = self._oversampled_coords(oversample)
        return self._evaluate(reg, cols, np.nan_to_num(alpha), width, None, True, True)

    def source_truth_oversampled(self, index, oversample, width=None):
        """Like :meth:`truth_oversampled` for point source(s) ``index`` alone."""
        reg, cols, alpha = self._oversampled_coords(oversample)
        return self._evaluate(reg, cols, np.nan_to_num(alpha), width, index, False, False)


# ---------------------------------------------------------------- builders
def _at(frac, wave_range):
    return wave_range[0] + frac * (wave_range[1] - wave_range[0])


def star_spectrum(flux, wave_range, dispersion):
    """A-star-like: blue power law with broad absorption lines (fractional positions)."""
    ref = _at(0.5, wave_range)
    lines = tuple(
        Line(_at(f, wave_range), fw * dispersion, -d * flux)
        for f, fw, d in ((0.12, 8.0, 0.30), (0.35, 10.0, 0.40), (0.61, 8.0, 0.25), (0.83, 6.0, 0.35))
    )
    return Spectrum(continuum=flux, ref_wavelength=ref, slope=-2.0, lines=lines)


def emission_spectrum(flux, wave_range, dispersion):
    """Red power law with narrow emission lines and one absorption line."""
    ref = _at(0.5, wave_range)
    lines = tuple(
        Line(_at(f, wave_range), fw * dispersion, p * flux)
        for f, fw, p in ((0.25, 2.0, 0.8), (0.48, 2.5, 1.5), (0.72, 2.0, 0.6), (0.90, 6.0, -0.3))
    )
    return Spectrum(continuum=flux, ref_wavelength=ref, slope=1.0, lines=lines)


def nebula_spectrum(line_sb, continuum_sb, wave_range, dispersion, fwhm_columns):
    """Emission lines (MJy/sr peaks) on a faint flat continuum."""
    ref = _at(0.5, wave_range)
    lines = tuple(
        Line(_at(f, wave_range), fwhm_columns * dispersion, r * line_sb)
        for f, r in ((0.2, 1.0), (0.45, 0.6), (0.52, 0.35), (0.78, 0.8))
    )
    return Spectrum(continuum=continuum_sb, ref_wavelength=ref, slope=0.0, lines=lines)


_POINT = {"alpha": 0.12, "beta": 0.03, "source_flux": 0.02}
_NEBULA = {"line_sb": 2.0, "continuum_sb": 0.05, "line_fwhm_columns": 2.0, "velocity_gradient": 60.0}
_OPTIONS = {
    "point_source": dict(_POINT),
    "nebula": dict(_POINT, **_NEBULA),
    "two_sources": {
        "alpha1": -0.08,
        "beta1": 0.01,
        "flux1": 0.02,
        "alpha2": 0.14,
        "beta2": 0.04,
        "flux2": 0.012,
    },
    "crowded": {
        "n_sources": 40,
        "flux_range": (0.001, 0.03),
        "with_nebula": False,
        **_NEBULA,
    },
    "bad_pixels": dict(_POINT, n_clusters=6, cluster_size=3, offset=0.0),
    "negative_offset": dict(_POINT, offset=-0.1),
}


@lru_cache(maxsize=4)
def _cached_psf(jitter_fwhm, w0, w1):
    """One AiryPSF per (jitter, wavelength range): its tables take ~1 s to build."""
    return AiryPSF(jitter_fwhm=jitter_fwhm, wavelength_range=(w0, w1))


def make_scene(
    name,
    nx=2048,
    ny=2048,
    noise=0.01,
    seed=1,
    *,
    n_slices=30,
    rows_per_slice=30,
    gap_rows=None,
    wave_range=(1.0, 1.8),
    trace_slope=1.0 / 80.0,
    steep_side="left",
    jitter_fwhm=0.01,
    psf=None,
    peak_snr=None,
    **scene_options,
):
    """
    Build a simulated NIRSpec-IFU-like detector image with its noise-free truth.

    Parameters
    ----------
    name : str
        One of :data:`SCENES`:

        ``"point_source"``
            One star (blue continuum, absorption lines) at
            ``(alpha, beta) = (0.12, 0.03)`` arcsec, ``source_flux=0.02`` mJy
            continuum at mid-band (peak pixel ~140 MJy/sr).
        ``"nebula"``
            The point source on a field-filling nebula: emission lines with peak
            ``line_sb=2.0`` MJy/sr and FWHM ``line_fwhm_columns=2`` columns on a
            ``continuum_sb=0.05`` MJy/sr continuum, spatially smooth pattern and
            a ``velocity_gradient=60`` km/s/arcsec shift across slices.
        ``"two_sources"``
            Two sources 0.22" apart (mostly along the slice): a star at
            ``(alpha1, beta1) = (-0.08, 0.01)``, ``flux1=0.02`` mJy, and a red
            emission-line source at ``(alpha2, beta2) = (0.14, 0.04)``, ``flux2=0.012``.
        ``"crowded"``
            ``n_sources=40`` random sources (positions uniform over the field,
            fluxes log-uniform in ``flux_range=(0.001, 0.03)`` mJy, random slopes
            and lines); add the nebula with ``with_nebula=True`` (nebula options
            as for ``"nebula"``).
        ``"bad_pixels"``
            The point source with ``n_clusters=6`` NaN clusters of
            ``cluster_size x cluster_size`` (3) pixels centred on the trace peak
            of the brightest slice, at evenly spaced columns, plus a constant
            ``offset=0.0`` MJy/sr (any finite value; negative for an
            over-subtracted background).
        ``"negative_offset"``
            The point source plus a constant ``offset=-0.1`` MJy/sr on every
            slice pixel.
    nx, ny : int
        Detector size. ``ny=None`` gives the smallest detector that holds the slices.
    noise : float
        Gaussian sigma in MJy/sr (>= 0). Ignored when ``peak_snr`` is given.
    seed : int or None
        Seed for :func:`numpy.random.default_rng` (noise and random scene content).
    n_slices, rows_per_slice, gap_rows, trace_slope, steep_side
        Geometry, see :meth:`SliceGeometry.build`.
    wave_range : tuple of float
        Wavelength of the first and last column, micron (linear in column).
    jitter_fwhm : float
        Gaussian blur of the Airy PSF, arcsec (ignored when ``psf`` is given).
    psf : AiryPSF, optional
        PSF to use; its wavelength range must cover ``wave_range``. By default
        an :class:`AiryPSF` (6.5 m, ``jitter_fwhm``, ``wavelength_range=wave_range``)
        is built once per process and shared by scenes with the same settings.
    peak_snr : float, optional
        Set the Gaussian sigma so that the brightest native pixel of the point
        sources alone (no nebula, no offset) has this signal-to-noise ratio:
        ``noise = max(point-source image) / peak_snr``. ``Scene.noise`` holds the result.
    **scene_options
        Scene-specific options listed above.

    Returns
    -------
    Scene

    Raises
    ------
    ValueError
        Unknown scene name (the message lists :data:`SCENES`), bad sizes or values.
    TypeError
        Options the scene does not take (the message lists the valid ones).

    Examples
    --------
    >>> scene = make_scene("point_source", nx=400, ny=None, noise=0.01, seed=1)
    >>> scene.flux.shape == scene.truth_native.shape
    True
    """
    t0 = time.perf_counter()
    if name not in SCENES:
        raise ValueError(f"unknown scene {name!r}; valid scenes: {', '.join(SCENES)}")
    defaults = _OPTIONS[name]
    unknown = sorted(set(scene_options) - set(defaults))
    if unknown:
        raise TypeError(
            f"scene {name!r} got unknown option(s) {unknown}; valid options: {', '.join(sorted(defaults))}"
        )
    opts = dict(defaults, **scene_options)
    noise = float(noise)
    if not (noise >= 0 and math.isfinite(noise)):
        raise ValueError(f"noise must be a finite sigma >= 0 MJy/sr, got {noise}")
    w0, w1 = (float(v) for v in wave_range)
    if not (0 < w0 < w1):
        raise ValueError(f"wave_range must be (first, last) with 0 < first < last micron, got {wave_range}")

    geo = SliceGeometry.build(
        nx=nx,
        ny=ny,
        n_slices=n_slices,
        rows_per_slice=rows_per_slice,
        gap_rows=gap_rows,
        trace_slope=trace_slope,
        steep_side=steep_side,
    )
    if psf is None:
        psf = _cached_psf(float(jitter_fwhm), w0, w1)
    elif not (psf.wavelength_range[0] <= w0 and psf.wavelength_range[1] >= w1):
        raise ValueError(f"psf wavelength_range {psf.wavelength_range} does not cover wave_range {wave_range}")
    lam = np.linspace(w0, w1, geo.nx)
    disp = (w1 - w0) / (geo.nx - 1)
    wr = (w0, w1)
    noise_rng, scene_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))

    def point(nm, a, b, spec):
        return Source(name=nm, alpha=float(a), beta=float(b), spectrum=spec, flux=spec(lam))

    def make_nebula():
        spec = nebula_spectrum(opts["line_sb"], opts["continuum_sb"], wr, disp, opts["line_fwhm_columns"])
        return Nebula(spectrum=spec, velocity_gradient=float(opts["velocity_gradient"]))

    sources, nebula, offset = [], None, 0.0
    if name in ("point_source", "nebula", "bad_pixels", "negative_offset"):
        sources.append(point("star", opts["alpha"], opts["beta"], star_spectrum(opts["source_flux"], wr, disp)))
        if name == "nebula":
            nebula = make_nebula()
        if name in ("negative_offset", "bad_pixels"):
            offset = float(opts["offset"])
            if name == "negative_offset" and not offset < 0:
                raise ValueError(f"offset must be negative, got {offset}")
            if not math.isfinite(offset):
                raise ValueError(f"offset must be finite, got {offset}")
    elif name == "two_sources":
        sources.append(point("star", opts["alpha1"], opts["beta1"], star_spectrum(opts["flux1"], wr, disp)))
        sources.append(
            point("emitter", opts["alpha2"], opts["beta2"], emission_spectrum(opts["flux2"], wr, disp))
        )
    elif name == "crowded":
        n_src = int(opts["n_sources"])
        if n_src < 1:
            raise ValueError(f"n_sources must be >= 1, got {n_src}")
        fmin, fmax = (float(v) for v in opts["flux_range"])
        if not 0 < fmin <= fmax:
            raise ValueError(f"flux_range must be (min, max) with 0 < min <= max mJy, got {opts['flux_range']}")
        amax = abs(geo.alpha_min) - 0.2
        bmax = 0.5 * geo.n_slices * geo.slice_width - 0.1
        for k in range(n_src):
            a = scene_rng.uniform(-amax, amax)
            b = scene_rng.uniform(-bmax, bmax)
            f = math.exp(scene_rng.uniform(math.log(fmin), math.log(fmax)))
            n_lines = int(scene_rng.integers(1, 5))
            lines = tuple(
                Line(
                    _at(scene_rng.uniform(0.05, 0.95), wr),
                    scene_rng.uniform(2.0, 8.0) * disp,
                    scene_rng.uniform(-0.5, 1.0) * f,
                )
                for _ in range(n_lines)
            )
            spec = Spectrum(continuum=f, ref_wavelength=_at(0.5, wr), slope=scene_rng.uniform(-2.5, 1.5), lines=lines)
            sources.append(point(f"star{k:02d}", a, b, spec))
        if opts["with_nebula"]:
            nebula = make_nebula()

    scene = Scene(
        name=name,
        geometry=geo,
        psf=psf,
        column_wavelength=lam,
        sources=sources,
        nebula=nebula,
        offset=offset,
        noise=noise,
        seed=seed,
        options=opts,
    )
    truth = scene._native(None, True, True)
    scene.truth_native = truth
    if peak_snr is not None:
        peak_snr = float(peak_snr)
        if not (peak_snr > 0 and math.isfinite(peak_snr)):
            raise ValueError(f"peak_snr must be a finite number > 0, got {peak_snr}")
        stars = truth - scene._native([], True, False) - offset if nebula is not None else truth - offset
        noise = float(np.nanmax(stars)) / peak_snr
        scene.noise = noise
    inside = scene.regions > 0
    flux = truth.copy()
    if noise > 0:
        flux[inside] += noise_rng.normal(0.0, noise, size=int(inside.sum()))
    mask = np.zeros(scene.shape, dtype=bool)
    if name == "bad_pixels":
        mask = _bad_pixel_clusters(scene, int(opts["n_clusters"]), int(opts["cluster_size"]))
        flux[mask] = np.nan
    scene.flux = flux
    scene.bad_pixel_mask = mask
    scene.err = np.where(np.isfinite(flux), noise, np.nan)
    log.info(
        "make_scene(%r): %dx%d, %d source(s), nebula=%s, offset=%g, noise=%g in %.2f s",
        name,
        geo.ny,
        geo.nx,
        len(sources),
        nebula is not None,
        offset,
        noise,
        time.perf_counter() - t0,
    )
    return scene


def _bad_pixel_clusters(scene, n_clusters, size):
    """Square NaN clusters centred on the brightest trace (peak row of the brightest slice)."""
    if n_clusters < 1 or size < 1:
        raise ValueError(f"n_clusters and cluster_size must be >= 1, got {n_clusters}, {size}")
    geo = scene.geometry
    src = scene.source_truth_native(0)
    sums = np.array([np.nansum(src[scene.regions == s]) for s in range(1, geo.n_slices + 1)])
    s_best = int(np.argmax(sums)) + 1
    rows = geo.slice_rows(s_best)
    cols = np.linspace(0.1 * (geo.nx - 1), 0.9 * (geo.nx - 1), n_clusters).round().astype(int)
    mask = np.zeros(scene.shape, dtype=bool)
    h = size // 2
    for c in cols:
        r = rows[np.argmax(src[rows[:, c], c]), c]
        r0, c0 = r - h, c - h
        block = np.zeros_like(mask)
        block[max(r0, 0) : r0 + size, max(c0, 0) : c0 + size] = True
        mask |= block & (scene.regions == s_best)
    return mask
