"""MIRI MRS channels 3 and 4: point source, point source on a nebula, binary; common spaxel mask.

Issue 9 (MIRI item): atm-step's artifact amplitude should be no worse than jwst's step
on a common spaxel set, at N = 2 and 3, in channels 3 and 4, for a point source, a
point source on a nebula and a binary, with and without extra PSF blur. This module
builds those scenes on the real band-34C geometry (both channels are on that
MIRIFULONG exposure, `atm_step.validation.miri.miri_mrs_model`), runs the standard
processing, atm-step's and jwst's ``adaptive_trace_model`` step, builds cubes per
channel with jwst's ``pixel_replace`` + ``cube_build`` on the standard cube's grid
(`atm_step.validation.miri.build_channel_cubes`) and measures on the spaxels finite in
every cube (:func:`common_mask`).

Scenes (:func:`make_scene`), all in each channel's own alpha-beta frame:

- ``point``: the Airy point source of `atm_step.validation.miri.inject_point_source`
  (peak ``10 (lambda / 20 um)**-1`` MJy/sr at alpha, beta = 0.05", 0.1").
- ``nebula``: the same source at 0.3 of that peak on a nebula filling the field: a
  continuum ``0.5 (lambda / 20 um)`` MJy/sr with a linear surface-brightness gradient
  (+8% per arcsec along alpha, -6% along beta) plus two emission lines in each
  channel's measured range (peak 1.2 MJy/sr, resolving power 3000, their own gradient).
- ``binary``: two sources 0.40" apart (0.40" along alpha, 0.04" along beta): a blue
  continuum ``10 (lambda / 20)**-2`` with an absorption line (40% deep) and a red
  continuum ``6 (lambda / 20)**1.5`` with an emission line (peak 3 MJy/sr), one line of
  each in each channel.

Blur (:func:`psf_profile`): the Airy convolved with a circular Gaussian of FWHM 0.2"
(pointing jitter, detector scattering), computed as a radial profile by the
Gaussian's Hankel-type kernel ``K(r, r') = r'/s^2 exp(-(r - r')^2 / 2 s^2) i0e(r r' / s^2)``
on a 0.005" radius grid and a 0.5%-step wavelength grid, interpolated linearly. It
keeps the total flux ``4 lambda^2 / (pi D^2)`` (sr) of the peak-1 Airy.
"""

import hashlib
import logging
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.interpolate import RegularGridInterpolator
from scipy.special import i0e

from atm_step.validation import measures as M
from atm_step.validation.grid import _save_npz, cache_dir
from atm_step.validation.miri import (
    _as_measure_cube,
    _run_step,
    _set_data,
    airy_pixel_integrated,
    band_files,
    build_channel_cubes,
    miri_mrs_model,
    slices_near,
    write_cubepar,
)

__all__ = [
    "CHANNELS",
    "MATRIX_VERSION",
    "SCENES",
    "MatrixConfig",
    "Nebula",
    "PointSource",
    "Scene",
    "common_mask",
    "inject_scene",
    "make_scene",
    "measure_channel",
    "psf_profile",
    "render_markdown",
    "run_matrix",
    "scene_cubes",
    "scene_images",
    "write_report",
]

log = logging.getLogger(__name__)

#: Bump when a scene, the measure or the jwst call changes (part of the jwst cache key).
MATRIX_VERSION = 1

#: Cube wavelength range (um) of each measured channel of band 34C (channel 3 LONG
#: covers 15.1-18.3 um, channel 4 LONG 23.7-28.8 um in the wavelengthrange file).
CHANNELS = {"3": (16.0, 17.5), "4": (25.0, 26.5)}

#: Scene names of :func:`make_scene`.
SCENES = ("point", "nebula", "binary")

#: Resolving power of the injected lines (FWHM = lambda / R).
LINE_R = 3000.0


def _line(wave, centre, r=LINE_R):
    """Gaussian line profile of peak 1 and FWHM ``centre / r`` at ``wave`` (um)."""
    sigma = centre / r / 2.3548
    return np.exp(-0.5 * ((np.asarray(wave) - centre) / sigma) ** 2)


@dataclass(frozen=True)
class PointSource:
    """
    A point source: position (arcsec, alpha-beta frame) and peak spectrum.

    Attributes
    ----------
    alpha, beta : float
        Position (arcsec).
    spectrum : callable
        ``spectrum(wave_um) -> ndarray``: surface brightness at the unblurred Airy
        peak (MJy/sr); the source's total flux is ``spectrum * 4 lambda^2 / (pi D^2)``.
    """

    alpha: float
    beta: float
    spectrum: object


@dataclass(frozen=True)
class Nebula:
    """
    Field-filling extended emission: a continuum with a linear gradient plus lines.

    Attributes
    ----------
    continuum : float
        Continuum at 20 um and alpha = beta = 0 (MJy/sr); it scales as ``lambda / 20``.
    grad_alpha, grad_beta : float
        Fractional continuum change per arcsec along alpha and beta.
    lines : tuple of float
        Line centres (um).
    line_peak : float
        Line peak above the continuum at alpha = beta = 0 (MJy/sr).
    line_grad_alpha, line_grad_beta : float
        Fractional line change per arcsec.
    """

    continuum: float = 0.5
    grad_alpha: float = 0.08
    grad_beta: float = -0.06
    lines: tuple = (16.3, 17.035, 25.35, 25.89)
    line_peak: float = 1.2
    line_grad_alpha: float = -0.05
    line_grad_beta: float = 0.10

    def surface_brightness(self, alpha, beta, wave):
        """
        Nebula surface brightness (MJy/sr) at ``alpha, beta`` (arcsec), ``wave`` (um).

        Arrays broadcast together.
        """
        cont = self.continuum * (np.asarray(wave) / 20.0) * (1 + self.grad_alpha * alpha + self.grad_beta * beta)
        lines = sum(_line(wave, c) for c in self.lines)
        return cont + self.line_peak * lines * (1 + self.line_grad_alpha * alpha + self.line_grad_beta * beta)


@dataclass(frozen=True)
class Scene:
    """A named scene: point sources and an optional nebula."""

    name: str
    sources: tuple
    nebula: Nebula = None


def _point_spectrum(wave):
    return 10.0 * (np.asarray(wave) / 20.0) ** -1


def _faint_spectrum(wave):
    return 0.3 * _point_spectrum(wave)


def _blue_spectrum(wave):
    w = np.asarray(wave)
    return 10.0 * (w / 20.0) ** -2 * (1 - 0.4 * (_line(w, 16.6) + _line(w, 25.6)))


def _red_spectrum(wave):
    w = np.asarray(wave)
    return 6.0 * (w / 20.0) ** 1.5 + 3.0 * (_line(w, 17.2) + _line(w, 26.1))


def make_scene(name, alpha0=0.05, beta0=0.1):
    """
    One of the scenes of the matrix (see the module docstring).

    Parameters
    ----------
    name : {'point', 'nebula', 'binary'}
    alpha0, beta0 : float
        Position (arcsec) of the point source; the binary is centred there.

    Returns
    -------
    Scene

    Raises
    ------
    ValueError
        For an unknown scene name.
    """
    if name == "point":
        return Scene(name, (PointSource(alpha0, beta0, _point_spectrum),))
    if name == "nebula":
        return Scene(name, (PointSource(alpha0, beta0, _faint_spectrum),), Nebula())
    if name == "binary":
        return Scene(name, (PointSource(alpha0 - 0.20, beta0 - 0.02, _blue_spectrum),
                            PointSource(alpha0 + 0.20, beta0 + 0.02, _red_spectrum)))  # fmt: skip
    raise ValueError(f"unknown MIRI matrix scene {name!r}; expected one of {SCENES}")


# ------------------------------------------------------------------ PSF
_R_STEP = 0.005  # arcsec
_R_MAX = 12.0  # arcsec, beyond every pixel of a channel-3/4 slice from a source near the centre


@lru_cache(maxsize=4)
def _blur_kernel(fwhm):
    """Radius grid (arcsec) and the Gaussian's radial kernel with trapezoid weights."""
    s = fwhm / 2.3548
    r = np.arange(0.0, _R_MAX + _R_STEP / 2, _R_STEP)
    rp = np.arange(0.0, _R_MAX + 8 * s, _R_STEP)
    w = np.full(rp.size, _R_STEP)
    w[0] = w[-1] = _R_STEP / 2
    kern = (rp[None, :] / s**2) * np.exp(-0.5 * ((r[:, None] - rp[None, :]) / s) ** 2) * i0e(
        r[:, None] * rp[None, :] / s**2
    )
    return r, rp, kern * w[None, :]


@lru_cache(maxsize=8)
def _blur_table(fwhm, wmin, wmax, diameter_m):
    """Interpolator of the blurred profile over (wavelength, radius)."""
    r, rp, kern = _blur_kernel(float(fwhm))
    n = max(2, int(np.ceil(np.log(wmax / wmin) / np.log(1.005))) + 1)
    waves = np.geomspace(wmin, wmax, n)
    airy = airy_pixel_integrated(rp[:, None], waves[None, :], diameter_m)  # (n_rp, n_wave)
    table = (kern @ airy).T  # (n_wave, n_r)
    return RegularGridInterpolator((waves, r), table, bounds_error=False, fill_value=None)


def psf_profile(r_arcsec, wave_um, blur_fwhm=0.0, diameter_m=6.5):
    """
    PSF surface-brightness profile: the peak-1 Airy, optionally blurred by a Gaussian.

    Parameters
    ----------
    r_arcsec, wave_um : ndarray
        Radius from the source (arcsec, at most 12") and wavelength (um), same shape
        (NaN allowed: NaN out).
    blur_fwhm : float
        FWHM of the circular Gaussian (arcsec) convolved with the Airy; 0 for none.
    diameter_m : float
        Aperture diameter (m).

    Returns
    -------
    ndarray
        Same shape. Unblurred: ``(2 J1(x) / x)**2``, ``x = pi D r / lambda``
        (`atm_step.validation.miri.airy_pixel_integrated`). Blurred: the 2-D
        convolution, same total flux ``4 lambda^2 / (pi D^2)`` sr, lower peak.

    Notes
    -----
    The convolution of a radial profile ``A`` with a 2-D Gaussian of sigma ``s`` is
    ``int A(r') (r'/s^2) exp(-(r^2 + r'^2) / 2 s^2) I0(r r' / s^2) dr'``; it is evaluated
    on a 0.005" grid (trapezoid rule, ``i0e`` for the scaled Bessel function) at
    wavelengths 0.5% apart spanning ``wave_um`` and interpolated linearly.
    """
    r = np.asarray(r_arcsec, dtype=float)
    wave = np.asarray(wave_um, dtype=float)
    if blur_fwhm <= 0:
        return airy_pixel_integrated(r, wave, diameter_m)
    ok = np.isfinite(r) & np.isfinite(wave)
    out = np.full(np.broadcast(r, wave).shape, np.nan)
    if not ok.any():
        return out
    r, wave = np.broadcast_arrays(r, wave)
    wmin, wmax = float(wave[ok].min()), float(wave[ok].max())
    wmin, wmax = np.floor(wmin * 100) / 100, np.ceil(wmax * 100) / 100 + 0.01
    interp = _blur_table(float(blur_fwhm), wmin, wmax, float(diameter_m))
    out[ok] = interp(np.column_stack([wave[ok], np.minimum(r[ok], _R_MAX)]))
    return out


# ------------------------------------------------------------------ injection
def inject_scene(model, scene, *, blur_fwhm=0.0, background=0.05, nsub=5, seed=1, noise=True, peak_snr=None):
    """
    Add a scene (point sources, nebula) integrated over each pixel along the slice.

    Extends `atm_step.validation.miri.inject_point_source` to several sources with
    their own spectra, a nebula and PSF blur. Each pixel's value is the mean of the
    scene at ``nsub`` sub-positions spread along detector x (along the slice), mapped
    through the model's ``detector -> alpha_beta`` transform; the spectra are
    evaluated at the pixel centre's wavelength; across the slice the scene is taken at
    the slice centre ``beta``. The blur applies to the point sources only (it leaves
    the nebula's linear gradient unchanged, and its lines are spatially linear too).
    Gaussian noise of the model's ERR is added (seeded).
    Pixels outside slices become NaN with DO_NOT_USE and NON_SCIENCE.

    Parameters
    ----------
    model : IFUImageModel
        MIRI MRS model with a WCS (:func:`atm_step.validation.miri.miri_mrs_model`);
        updated in place.
    scene : Scene
        From :func:`make_scene`.
    blur_fwhm : float
        Extra Gaussian PSF blur (arcsec FWHM), see :func:`psf_profile`.
    background : float
        Constant background (MJy/sr).
    nsub : int
        Sub-positions per pixel along the slice.
    seed : int
        Seed of the noise generator.
    noise : bool
        Add the noise (False: the noise-free image, same error arrays).
    peak_snr : float, optional
        First set ERR (and the variances, split in three) so that the brightest
        noise-free pixel has this SNR.

    Returns
    -------
    float
        The per-pixel error sigma in use (MJy/sr).
    """

    ny, nx = model.data.shape
    det2ab = model.meta.wcs.get_transform("detector", "alpha_beta")
    y, x = np.mgrid[:ny, :nx].astype(np.float64)
    wave = det2ab(x, y)[2]
    data = np.zeros((ny, nx))
    for k in range(nsub):
        alpha, beta, lam = det2ab(x + (k + 0.5) / nsub - 0.5, y)
        for src in scene.sources:
            r = np.hypot(alpha - src.alpha, beta - src.beta)
            data += psf_profile(r, lam, blur_fwhm) * src.spectrum(wave)
        if scene.nebula is not None:
            data += scene.nebula.surface_brightness(alpha, beta, wave)
    data = data / nsub + background
    bad = ~np.isfinite(data)
    if peak_snr is not None:
        err = float(np.nanmax(data) / peak_snr)
        model.err = np.full((ny, nx), err, dtype=np.float32)
        for name in ("var_poisson", "var_rnoise", "var_flat"):
            setattr(model, name, np.full((ny, nx), err**2 / 3, dtype=np.float32))
    if noise:
        data = data + np.random.default_rng(seed).normal(0.0, 1.0, (ny, nx)) * np.asarray(model.err)
    _set_data(model, data, bad)
    return float(np.nanmedian(model.err))


# ------------------------------------------------------------------ measure
def common_mask(cubes, min_fraction=0.9):
    """
    Spaxels finite at ``>= min_fraction`` of the wavelengths in every cube.

    Parameters
    ----------
    cubes : iterable of ndarray, each shape (ny, nx, n_wave)
        Cubes on the same grid (measures layout).
    min_fraction : float
        Fraction of finite wavelengths a spaxel needs in each cube.

    Returns
    -------
    ndarray of bool, shape (ny, nx)

    Raises
    ------
    ValueError
        If the cubes differ in shape or none is given.
    """
    cubes = list(cubes)
    if not cubes:
        raise ValueError("common_mask needs at least one cube")
    shape = cubes[0].shape
    mask = np.ones(shape[:2], dtype=bool)
    for c in cubes:
        if c.shape != shape:
            raise ValueError(f"cubes on different grids: {c.shape} vs {shape}")
        mask &= np.isfinite(c).mean(axis=2) >= min_fraction
    return mask


def measure_channel(cubes, reference, *, n_spaxels=20, box=6, min_fraction=0.9):
    """
    Artifact half-amplitude and aperture flux of every method on a common spaxel set.

    Every cube (and the reference) is cut to the :func:`common_mask` and, inside it,
    to the voxels finite in all of them (so the aperture sums add the same voxels).
    The ``n_spaxels`` brightest spaxels and the ``box`` x ``box`` aperture are chosen
    on the cut reference and used for every method; the artifact measure is the
    paper's (section III.1, :func:`atm_step.validation.measures.artifact_amplitude`).

    Parameters
    ----------
    cubes : dict of (str, int) to ndarray, each shape (ny, nx, n_wave)
        ``(method, N)`` to flux cube (MJy/sr); must hold ``("standard", 1)``.
    reference : ndarray, shape (ny, nx, n_wave)
        Noise-free standard cube (spaxel and aperture selection).
    n_spaxels, box : int
        Spaxels measured; aperture side (spaxels).
    min_fraction : float
        See :func:`common_mask`.

    Returns
    -------
    dict
        ``mask`` (bool (ny, nx)), ``n_common`` (spaxels in it), ``spaxels`` (list of
        (row, col)), ``box`` (row and column start), ``rows`` (per method: ``method``,
        ``N``, ``half_amp``, ``rms``, ``ap_vs_standard`` (median of the aperture
        spectrum over the standard's), ``ap_total_vs_standard``).
    """
    mask = common_mask([reference, *cubes.values()], min_fraction)
    finite = np.isfinite(reference)
    for c in cubes.values():
        finite &= np.isfinite(c)
    keep = finite & mask[:, :, None]
    cut = {k: np.where(keep, c, np.nan) for k, c in cubes.items()}
    ref = np.where(keep, reference, np.nan)
    spaxels = M.brightest_spaxels(ref, n_spaxels, mask=mask)
    ap_box = M.aperture_box(ref, box)
    ap_std = M.aperture_spectrum(cut[("standard", 1)], ap_box)[0]
    rows = []
    for (method, n), c in cut.items():
        ap = M.aperture_spectrum(c, ap_box)[0]
        st = M.artifact_amplitude(c, spaxels, ap)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = ap / ap_std
        ok = np.isfinite(ratio)
        ok[:2] = ok[-2:] = False
        rows.append({"method": method, "N": int(n), "half_amp": st.median_half_amplitude, "rms": st.median_rms,
                     "ap_vs_standard": float(np.median(ratio[ok])),
                     "ap_total_vs_standard": float(np.sum(ap[ok]) / np.sum(ap_std[ok]))})  # fmt: skip
    return {"mask": mask, "n_common": int(mask.sum()), "spaxels": spaxels,
            "box": [ap_box[0].start, ap_box[1].start], "rows": rows}  # fmt: skip


# ------------------------------------------------------------------ runs
@dataclass
class MatrixConfig:
    """
    Settings of the MIRI ch3/ch4 matrix.

    Attributes
    ----------
    scenes : tuple of str
        From :data:`SCENES`.
    blurs : tuple of float
        Extra Gaussian blur FWHM (arcsec); 0 = none.
    channels : dict of str to tuple of float
        Channel to cube wavelength range (um).
    oversamples : tuple of int
        N for both steps.
    alpha0, beta0 : float
        Source position (arcsec).
    peak_snr : float
        SNR of the brightest noise-free pixel (sets ERR).
    seed : int
        Noise seed.
    n_spaxels, box : int
        Spaxels measured, aperture side (spaxels).
    noise_free : bool
        Also run both steps on the noise-free image (rows ``ours_nf``, ``jwst_nf``:
        the artifacts without the noise; measured on the same common mask).
    slices_near_source : int or None
        Keep only the ``2 n + 1`` slices of each channel nearest ``beta0`` (others
        gap; for quick tests). None (the default, used for the report) keeps every
        slice: the nebula fills the field, and the cube's extent, hence the common
        grid and mask, would otherwise depend on the slices kept.
    """

    scenes: tuple = SCENES
    blurs: tuple = (0.0, 0.2)
    channels: dict = field(default_factory=lambda: dict(CHANNELS))
    oversamples: tuple = (2, 3)
    alpha0: float = 0.05
    beta0: float = 0.1
    peak_snr: float = 500.0
    seed: int = 1
    n_spaxels: int = 20
    box: int = 6
    slices_near_source: int = None
    noise_free: bool = True

    def as_dict(self):
        """The settings as a plain dict (for the JSON record)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(self).items()}


def _jwst_key(model, n, channels, grids):
    """SHA-256 of what jwst's cubes depend on: the image, N, channels, grids, versions."""
    import jwst

    h = hashlib.sha256()
    for name in ("data", "err", "dq"):
        a = np.ascontiguousarray(getattr(model, name))
        h.update(str((a.dtype, a.shape)).encode())
        h.update(a.tobytes())
    label = np.asarray(model.meta.wcs.get_transform("detector", "alpha_beta").label_mapper.mapper)
    h.update(np.ascontiguousarray(label).tobytes())
    h.update(repr((int(n), sorted(channels.items()), sorted((k, sorted(g.items())) for k, g in grids.items()),
                   str(jwst.__version__), MATRIX_VERSION)).encode())  # fmt: skip
    return h.hexdigest()[:32]


def _cubes(img, cubepar, channels, grids):
    """Measures-layout flux cubes per channel (`build_channel_cubes`, which fills ``grids``)."""
    return {ch: _as_measure_cube(c)[0] for ch, c in build_channel_cubes(img, cubepar, channels, grids).items()}


def _jwst_cubes(model, n, cubepar, channels, grids, cache):
    """jwst's step at N and its cubes, from the disk cache when there; (cubes, seconds, cached)."""
    path = cache_dir() / f"miri_matrix_jwst_{_jwst_key(model, n, channels, grids)}.npz"
    if cache and path.exists():
        with np.load(path) as z:
            log.info("jwst N=%d cubes from cache %s", n, path.name)
            return {ch: z[f"ch{ch}"].astype(float) for ch in channels}, float(z["seconds"]), True
    img, dt = _run_step("jwst", model, n)
    cubes = _cubes(img, cubepar, channels, grids)
    if cache:
        _save_npz(path, {**{f"ch{ch}": c.astype(np.float32) for ch, c in cubes.items()}, "seconds": np.float64(dt)})
    return cubes, dt, False


def scene_images(data_dir, workdir, scene, blur, cfg, cubepar, *, keep_slices=None):
    """
    The scene's noisy and noise-free band-34C images and their standard cubes.

    Parameters
    ----------
    data_dir, workdir : str or Path
        Shared data folder (``miri_mrs/``); writable scratch folder.
    scene : Scene
        From :func:`make_scene`.
    blur : float
        Extra Gaussian blur FWHM (arcsec).
    cfg : MatrixConfig
        ``channels``, ``peak_snr``, ``seed``.
    cubepar : str or Path
        From `atm_step.validation.miri.write_cubepar`.
    keep_slices : sequence of int, optional
        Slice ids kept in the slice map (others gap).

    Returns
    -------
    images : dict of bool to IFUImageModel
        ``True``: the noisy image; ``False``: the noise-free one.
    err : float
        The noise sigma (MJy/sr).
    grids : dict
        Channel to cube_build grid, filled here (pass it on to later cubes).
    reference, standard : dict of str to ndarray, each shape (ny, nx, n_wave)
        Channel to flux cube (MJy/sr) of the noise-free and the noisy image, no ATM.
    """
    images = {}
    for noisy in (True, False):
        m = miri_mrs_model(data_dir, workdir, err=1.0, band="34C", keep_slices=keep_slices)
        err = inject_scene(m, scene, blur_fwhm=blur, seed=cfg.seed, noise=noisy, peak_snr=cfg.peak_snr)
        images[noisy] = m
    grids = {}
    reference = _cubes(images[False], cubepar, cfg.channels, grids)
    standard = _cubes(images[True], cubepar, cfg.channels, grids)
    return images, err, grids, reference, standard


def scene_cubes(data_dir, workdir, scene, blur, cfg, *, cubepar=None, keep_slices=None, cache=True):
    """
    Cubes of every method for one scene and blur, per channel, on the standard's grid.

    Parameters
    ----------
    data_dir, workdir : str or Path
        Shared data folder (``miri_mrs/``); writable scratch folder.
    scene : Scene
        From :func:`make_scene`.
    blur : float
        Extra Gaussian blur FWHM (arcsec).
    cfg : MatrixConfig
        ``channels``, ``oversamples``, ``peak_snr``, ``seed``.
    cubepar : str or Path, optional
        From `atm_step.validation.miri.write_cubepar` (written to ``workdir`` if None).
    keep_slices : sequence of int, optional
        Slice ids kept in the slice map (others gap).
    cache : bool
        Use the jwst cache (see :func:`run_matrix`).

    Returns
    -------
    dict
        ``cubes``: ``(method, N)`` -> channel -> flux cube ``(ny, nx, n_wave)``
        (MJy/sr, NaN where cube_build put no pixel) of the noisy image, for
        ``("standard", 1)``, ``("ours", N)``, ``("jwst", N)`` (and of the noise-free
        image for ``("ours_nf", N)``, ``("jwst_nf", N)`` with ``cfg.noise_free``); ``reference``: channel ->
        noise-free standard cube; ``seconds`` and ``cached`` per ``(method, N)``;
        ``err``: the noise sigma (MJy/sr); ``grids``: channel -> cube_build grid;
        ``image``: the noisy IFUImageModel.
    """
    workdir = Path(workdir)
    if cubepar is None:
        cubepar = write_cubepar(workdir / "cubepar_matrix.fits")
    images, err, grids, reference, standard = scene_images(data_dir, workdir, scene, blur, cfg, cubepar,
                                                           keep_slices=keep_slices)  # fmt: skip
    cubes = {("standard", 1): standard}
    seconds, cached = {("standard", 1): 0.0}, {}
    variants = [("", images[True])] + ([("_nf", images[False])] if cfg.noise_free else [])
    for suffix, image in variants:
        for n in cfg.oversamples:
            key = ("ours" + suffix, n)
            img, seconds[key] = _run_step("ours", image, n)
            cubes[key] = _cubes(img, cubepar, cfg.channels, grids)
            del img
        for n in cfg.oversamples:
            key = ("jwst" + suffix, n)
            cubes[key], seconds[key], cached[key] = _jwst_cubes(image, n, cubepar, cfg.channels, grids, cache)
    return {"cubes": cubes, "reference": reference, "seconds": seconds, "cached": cached, "err": err,
            "grids": grids, "image": images[True]}  # fmt: skip


def run_matrix(data_dir, workdir, cfg=None, *, cache=True):
    """
    Run the MIRI ch3/ch4 matrix: scenes x blur x channel x N, ours vs jwst on a common mask.

    Per scene and blur: the noisy and the noise-free image on the real band-34C
    geometry (:func:`inject_scene`), the standard processing (no ATM), atm-step's step
    (``atm_step.AdaptiveTraceModelStep``, default parameters) and jwst 3.0's step at
    each N on the noisy image, cubes per channel on the standard cube's grid, then
    :func:`measure_channel` with the noise-free standard cube as reference.

    Parameters
    ----------
    data_dir : str or Path
        Shared data folder holding ``miri_mrs/``.
    workdir : str or Path
        Writable scratch folder (regions file, cubepar).
    cfg : MatrixConfig, optional
    cache : bool
        Read and write jwst's cubes in ``$ATM_STEP_VALIDATION_CACHE`` (default
        ``~/.cache/atm-step-validation``), keyed by a hash of the input image, N,
        channels, cube grids, jwst's version and :data:`MATRIX_VERSION`.

    Returns
    -------
    dict
        ``rows`` (one per scene, blur, channel, method, N: ``scene``, ``blur``,
        ``channel``, ``method``, ``N``, ``half_amp``, ``rms``, ``ap_vs_standard``,
        ``ap_total_vs_standard``, ``seconds`` (step), ``cached``), ``masks`` (per
        scene, blur, channel: ``n_common``, ``n_spaxels_total``), ``errs`` (noise sigma
        per scene and blur), ``config``, ``seconds``.
    """
    cfg = cfg or MatrixConfig()
    t_all = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cubepar = write_cubepar(workdir / "cubepar_matrix.fits")
    keep = None
    if cfg.slices_near_source is not None:
        dist = Path(data_dir) / "miri_mrs" / band_files("34C")["distortion"]
        keep = [i for ch in cfg.channels for i in slices_near(dist, ch, cfg.beta0, cfg.slices_near_source)]
    rows, masks, errs = [], [], []
    for name in cfg.scenes:
        scene = make_scene(name, cfg.alpha0, cfg.beta0)
        for blur in cfg.blurs:
            t0 = time.perf_counter()
            sc = scene_cubes(data_dir, workdir, scene, blur, cfg, cubepar=cubepar, keep_slices=keep, cache=cache)
            errs.append({"scene": name, "blur": blur, "err": sc["err"]})
            cubes = sc["cubes"]
            for ch in cfg.channels:
                res = measure_channel({k: v[ch] for k, v in cubes.items()}, sc["reference"][ch],
                                      n_spaxels=cfg.n_spaxels, box=cfg.box)  # fmt: skip
                masks.append({"scene": name, "blur": blur, "channel": ch, "n_common": res["n_common"],
                              "n_spaxels_total": int(res["mask"].size),
                              "n_finite_standard": int(common_mask([cubes[("standard", 1)][ch]]).sum())})  # fmt: skip
                for r in res["rows"]:
                    key = (r["method"], r["N"])
                    rows.append({"scene": name, "blur": blur, "channel": ch, **r,
                                 "seconds": sc["seconds"][key], "cached": sc["cached"].get(key, False)})  # fmt: skip
            log.info("MIRI matrix %s blur %.1f\": %.0f s", name, blur, time.perf_counter() - t0)
    return {"rows": rows, "masks": masks, "errs": errs, "config": cfg.as_dict(),
            "seconds": time.perf_counter() - t_all}  # fmt: skip


# ------------------------------------------------------------------ report
def _pct(v):
    return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.2f}%"


def render_markdown(res, stamp=None):
    """
    Markdown of the matrix: section "6b" of the validation report.

    Parameters
    ----------
    res : dict
        From :func:`run_matrix`.
    stamp : dict, optional
        From `atm_step.validation.report.commit_stamp`.

    Returns
    -------
    str
    """
    c = res["config"]
    L = []
    w = L.append
    w("# Validation: MIRI MRS channels 3 and 4\n")
    w("## 6b. MIRI MRS ch3/ch4: point, nebula, binary, common mask (issue 9)\n")
    if stamp:
        from atm_step.validation.report import stamp_sentence

        w(stamp_sentence(stamp, res["seconds"], " (jwst's cubes from the cache where marked)"))
    w("- Geometry: the band-34C (MIRIFULONG, ch3 + ch4 LONG) exposure of section 6 "
      "(`atm_step.validation.miri.miri_mrs_model`: flight distortion/specwcs/wavelengthrange, ground slice "
      "map, `load_wcs`); " + ("every slice" if c["slices_near_source"] is None else
                              f"only the {2 * c['slices_near_source'] + 1} slices nearest the source per channel")
      + ". One exposure, no dither. Scenes (`atm_step.validation.miri_matrix.make_scene`), each in the channel's "
      f"own alpha-beta frame, source at ({c['alpha0']}, {c['beta0']})\": **point** = section 6's Airy source "
      "(peak 10 (λ/20 µm)^-1 MJy/sr); **nebula** = that source at 0.3x on a field-filling nebula (continuum "
      "0.5 (λ/20 µm) MJy/sr, +8%/\" along alpha, -6%/\" along beta, two emission lines per channel at R = 3000, "
      "peak 1.2 MJy/sr, their own gradient); **binary** = two sources 0.40\" apart (0.40\" along alpha, "
      "0.04\" along beta): blue continuum with a 40% absorption line and red continuum with an emission line. "
      "Blur: the Airy convolved with a 0.2\" FWHM Gaussian (`miri_matrix.psf_profile`, same total flux). "
      f"Pixel-integrated along the slice (5 sub-positions), + 0.05 MJy/sr background, seeded Gaussian noise "
      f"at a peak SNR of {c['peak_snr']:.0f}.")
    w("- Methods on the same noisy image: **standard** (no ATM), **ours** (`atm_step.AdaptiveTraceModelStep`, "
      "default parameters), **jwst** (jwst 3.0 `AdaptiveTraceModelStep`, `skip=False`), N = "
      + ", ".join(str(n) for n in c["oversamples"]) + "; jwst's `pixel_replace` + `cube_build` "
      "(`weighting='drizzle'`) per channel on the standard cube's grid: "
      + ", ".join(f"ch{ch} {lo}-{hi} µm" for ch, (lo, hi) in c["channels"].items()) + ". jwst's cubes are "
      "cached on disk (`$ATM_STEP_VALIDATION_CACHE`) by a hash of the input image, N, grids and versions.")
    w("- Common mask: spaxels finite at >= 90% of the wavelengths in every cube of the scene and channel "
      "(standard, ours and jwst at each N, noisy and noise-free, and the noise-free reference); inside it, voxels NaN in any cube are "
      "NaN in all. On it: the paper's artifact half-amplitude (section 1's measure, median over the "
      f"{c['n_spaxels']} brightest spaxels of the noise-free standard cube) and the {c['box']} x {c['box']} "
      "spaxel aperture flux over the standard's (median over wavelength). For the nebula the brightest spaxels "
      "are the star's; the nebula's lines, different in a spaxel and in the aperture, add the same features to "
      "every method's ratio (a floor common to all).\n")
    nf = bool(c.get("noise_free"))
    w("| scene | blur | ch | N | standard | ours | jwst | ours / jwst | ours <= jwst | "
      + ("noise-free: ours, jwst, ratio | " if nf else "")
      + "aperture / standard: ours, jwst | common spaxels |")
    w("|---|---|---|---|---|---|---|---|---|" + ("---|" if nf else "") + "---|---|")
    nf_losses = []
    by = {(r["scene"], r["blur"], r["channel"], r["method"], r["N"]): r for r in res["rows"]}
    nmask = {(m["scene"], m["blur"], m["channel"]): m for m in res["masks"]}
    losses = []
    for name in c["scenes"]:
        for blur in c["blurs"]:
            for ch in c["channels"]:
                std = by[(name, blur, ch, "standard", 1)]
                mk = nmask[(name, blur, ch)]
                for n in c["oversamples"]:
                    o, j = by[(name, blur, ch, "ours", n)], by[(name, blur, ch, "jwst", n)]
                    ratio = o["half_amp"] / j["half_amp"] if j["half_amp"] else np.nan
                    ok = o["half_amp"] <= j["half_amp"]
                    if not ok:
                        losses.append(f"{name}, blur {blur}\", ch{ch}, N={n} (ours/jwst {ratio:.3f})")
                    nf_cell = ""
                    if nf:
                        onf, jnf = by[(name, blur, ch, "ours_nf", n)], by[(name, blur, ch, "jwst_nf", n)]
                        rnf = onf["half_amp"] / jnf["half_amp"] if jnf["half_amp"] else np.nan
                        if onf["half_amp"] > jnf["half_amp"]:
                            nf_losses.append(f"{name}, blur {blur}\", ch{ch}, N={n} ({rnf:.3f})")
                        nf_cell = f"{_pct(onf['half_amp'])}, {_pct(jnf['half_amp'])}, {rnf:.3f} | "
                    w(f"| {name} | {blur:.1f}\" | {ch} | {n} | {_pct(std['half_amp'])} | {_pct(o['half_amp'])} | "
                      f"{_pct(j['half_amp'])}{' (cached)' if j['cached'] else ''} | {ratio:.3f} | "
                      f"{'yes' if ok else '**no**'} | {nf_cell}{o['ap_vs_standard']:.4f}, {j['ap_vs_standard']:.4f} | "
                      f"{mk['n_common']} of {mk['n_finite_standard']} |")  # fmt: skip
    total = len(c["scenes"]) * len(c["blurs"]) * len(c["channels"]) * len(c["oversamples"])
    w("")
    if losses:
        w(f"Ours is no worse than jwst in {total - len(losses)} of {total} cells; it loses in: "
          + "; ".join(losses) + ".")
    else:
        w(f"Ours is no worse than jwst in all {total} cells.")
    if nf:
        w("\nNoise-free (the same steps on the noise-free image, same mask and spaxels): ours is no worse than jwst "
          f"in {total - len(nf_losses)} of {total} cells" + ("; it loses in: " + "; ".join(nf_losses) if nf_losses
                                                            else "") + ".")  # fmt: skip
    w("\n'common spaxels' = spaxels in the common mask of all cubes, of those finite (>= 90%) in the standard "
      "cube alone. Noise sigma per scene (MJy/sr): "
      + ", ".join(f"{e['scene']} {e['blur']:.1f}\": {e['err']:.4g}" for e in res["errs"]) + ".")
    return "\n".join(L) + "\n"


def write_report(out_dir, res, command):
    """
    Write ``<out_dir>/validation_miri.md`` (atomically) and ``validation_miri.json``.

    Parameters
    ----------
    out_dir : str or Path
    res : dict
        From :func:`run_matrix`.
    command : str
        Command line for the commit stamp.

    Returns
    -------
    Path
        The markdown file.
    """
    from atm_step.validation.report import write_stamped_report

    return write_stamped_report(out_dir, "validation_miri", res, command, render_markdown)
