"""MIRI MRS validation with real instrument geometry and jwst's own cube_build.

Builders (moved here from ``tests/helpers.py`` so that library code never imports
from ``tests/``): a channel 3+4 LONG :class:`IFUImageModel` with the flight WCS from
the shared data folder (its ``README.md``) and an Airy point source injected through
that WCS. The offline stand-ins (a ``cubepar`` file, the local CRDS answer) live in
`atm_step.testing` and are re-exported here.

Measure (:func:`point_source_metrics`): the paper's artifact amplitude (Law et al.,
section III.1/III.2) on cubes built by jwst's ``pixel_replace`` + ``cube_build``
(``weighting='drizzle'``) from the standard image, jwst's ``adaptive_trace_model``
step and atm-step's step at N = 1, 2, 3, plus the aperture flux ratio ATM/standard.
"""

import logging
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy.special import j1

from atm_step.atomic import atomic_save
from atm_step.testing import offline_crds, write_cubepar
from atm_step.validation import measures as M

__all__ = [
    "MIRI_MRS_FILES",
    "MRS_BANDS",
    "band_files",
    "band_wave_ranges",
    "miri_mrs_model",
    "miri_mrs_reference_files",
    "inject_point_source",
    "point_source_truth",
    "ideal_oversampled_image",
    "airy_pixel_integrated",
    "write_cubepar",
    "offline_crds",
    "build_channel_cubes",
    "build_cube",
    "MiriConfig",
    "DEFAULT_CONFIG",
    "CH12_CONFIG",
    "CH12_SEEDS",
    "run_ch12",
    "render_ch12_markdown",
    "write_ch12_report",
    "point_source_metrics",
    "slices_near",
    "write_mrs_cal",
]

log = logging.getLogger(__name__)

#: Files of ``miri_mrs/`` used to build a MIRI MRS model, by role.
MIRI_MRS_FILES = {
    "distortion": "jwst_miri_mrs34C_distortion_flt9.asdf",
    "specwcs": "jwst_miri_mrs34C_specwcs_flt9.asdf",
    "wavelengthrange": "jwst_miri_mrs_wavelengthrange_flt9.asdf",
    "regions": "jwst_miri_regions_0017.asdf",
    "template": "template_34C.fits.gz",
}


#: Channel pair, band name and detector of each MRS band code.
MRS_BANDS = {
    "12A": ("12", "SHORT", "MIRIFUSHORT"),
    "12B": ("12", "MEDIUM", "MIRIFUSHORT"),
    "12C": ("12", "LONG", "MIRIFUSHORT"),
    "34A": ("34", "SHORT", "MIRIFULONG"),
    "34B": ("34", "MEDIUM", "MIRIFULONG"),
    "34C": ("34", "LONG", "MIRIFULONG"),
}


def band_files(band):
    """
    File names in ``miri_mrs/`` for one MRS band.

    Parameters
    ----------
    band : str
        Band code: ``12A``, ``12B``, ``12C``, ``34A``, ``34B`` or ``34C``.

    Returns
    -------
    dict of str to str
        ``distortion``, ``specwcs``, ``wavelengthrange``, ``template`` and, for 34C
        only, ``regions`` (the ground slice map).

    Raises
    ------
    ValueError
        For an unknown band code.
    """
    band = str(band).upper()
    if band not in MRS_BANDS:
        raise ValueError(f"unknown MIRI MRS band {band!r}; expected one of {sorted(MRS_BANDS)}")
    files = {
        "distortion": f"jwst_miri_mrs{band}_distortion_flt9.asdf",
        "specwcs": f"jwst_miri_mrs{band}_specwcs_flt9.asdf",
        "wavelengthrange": MIRI_MRS_FILES["wavelengthrange"],
        "template": f"template_{band}.fits.gz",
    }
    if band == "34C":
        files["regions"] = MIRI_MRS_FILES["regions"]
    return files


def band_wave_ranges(wavelengthrange, band, widen=0.1):
    """
    Wavelength range (um) of each channel of a band, from the ``wavelengthrange`` file.

    Parameters
    ----------
    wavelengthrange : str or Path
        MIRI MRS ``wavelengthrange`` reference file.
    band : str
        Band code (e.g. ``12A``).
    widen : float
        Fraction by which each range is widened at both ends.

    Returns
    -------
    dict of int to tuple of float
    """
    from stdatamodels.jwst.datamodels import WavelengthrangeModel

    channels, name, _ = MRS_BANDS[str(band).upper()]
    with WavelengthrangeModel(str(wavelengthrange)) as ref:
        ranges = dict(zip(ref.waverange_selector, ref.wavelengthrange, strict=True))
    out = {}
    for ch in channels:
        lo, hi = ranges[f"{ch}{name}"]
        out[int(ch)] = (lo * (1 - widen), hi * (1 + widen))
    return out


def miri_mrs_reference_files(data_dir, workdir, band="34C", derived_slices=None, keep_slices=None):
    """
    Reference-file map for ``load_wcs`` built from ``<data_dir>/miri_mrs``.

    The slice map (``regions``): for 34C by default the ground-test map, whose one
    plane is repeated into the 9 throughput planes jwst 3.0 expects; for every other
    band (or with ``derived_slices=True``) a map derived from the band's distortion
    file by `atm_step.validation.miri_slices` (on 34 LONG it agrees with the ground
    map for 97% of the slice pixels, 98% of slice edges within one pixel). Either is
    written to ``workdir`` once and reused.

    Parameters
    ----------
    data_dir : str or Path
        The shared data folder (holding ``miri_mrs/``).
    workdir : str or Path
        Writable folder for the regions file.
    band : str
        Band code (``12A`` ... ``34C``).
    derived_slices : bool or None
        Use the derived slice map; None: only where no real map exists (not 34C).
    keep_slices : sequence of int, optional
        Keep only these slices in the map (the others become gap, 0): a smaller
        problem with the same geometry for the slices kept (e.g. those around a
        source, for quick tests).

    Returns
    -------
    dict of str to str
        Reftype to path: distortion, specwcs, wavelengthrange, regions.

    Raises
    ------
    FileNotFoundError
        If one of the files is missing.
    ValueError
        For an unknown band code.
    """
    from stdatamodels.jwst.datamodels import RegionsModel

    from atm_step.validation import miri_slices

    files = band_files(band)
    band = str(band).upper()
    if derived_slices is None:
        derived_slices = "regions" not in files
    mrs = Path(data_dir) / "miri_mrs"
    needed = [v for k, v in files.items() if k != "regions" or not derived_slices]
    for name in needed:
        if not (mrs / name).is_file():
            raise FileNotFoundError(f"MIRI MRS test file missing: {mrs / name}")
    refs = {k: str(mrs / files[k]) for k in ("distortion", "specwcs", "wavelengthrange")}
    if derived_slices:
        regions9 = Path(workdir) / f"miri_regions_derived_{band}.asdf"
        if not regions9.is_file():
            log.info("Deriving the %s slice map from %s", band, files["distortion"])
            ranges = band_wave_ranges(refs["wavelengthrange"], band)
            label = miri_slices.derive_slice_map(refs["distortion"], ranges)
            channel, name, detector = MRS_BANDS[band]
            instrument = {"detector": detector, "channel": channel, "band": name}
            miri_slices.write_regions_file(label, regions9, instrument)
    else:
        regions9 = Path(workdir) / "miri_regions_9planes.asdf"
        if not regions9.is_file():
            with RegionsModel(str(mrs / files["regions"])) as ref:
                plane = np.asarray(ref.regions)
            instrument = {"detector": "MIRIFULONG", "channel": "34", "band": "LONG"}
            miri_slices.write_regions_file(plane, regions9, instrument)
    if keep_slices is not None:
        keep = sorted(int(k) for k in keep_slices)
        subset = Path(workdir) / f"{regions9.stem}_{keep[0]}-{keep[-1]}_{len(keep)}.asdf"
        if not subset.is_file():
            with RegionsModel(str(regions9)) as ref:
                plane = np.asarray(ref.regions[0])
                instrument = {k: getattr(ref.meta.instrument, k) for k in ("detector", "channel", "band")}
            plane = np.where(np.isin(plane, keep), plane, 0)
            miri_slices.write_regions_file(plane, subset, instrument)
        regions9 = subset
    refs["regions"] = str(regions9)
    return refs


def slices_near(distortion, channel, beta0, n):
    """
    Ids of the ``2 n + 1`` slices of ``channel`` whose centres are nearest ``beta0``.

    Parameters
    ----------
    distortion : str or Path
        MRS ``distortion`` reference file (per-slice ``beta_model`` constants).
    channel : int
        Channel number.
    beta0 : float
        Across-slice position (arcsec).
    n : int
        Slices on each side of the nearest one.

    Returns
    -------
    list of int
    """
    import asdf

    with asdf.open(str(distortion), lazy_load=False, memmap=False) as af:
        ids = [int(s) for s in af.tree["slices"]]
        beta = [float(m.amplitude.value) for m in af.tree["beta_model"]]
    pairs = sorted((b, i) for b, i in zip(beta, ids, strict=True) if i // 100 == int(channel))
    k = int(np.argmin([abs(b - beta0) for b, _ in pairs]))
    return [i for _, i in pairs[max(0, k - n) : k + n + 1]]


def miri_mrs_model(data_dir, workdir, err=1e-3, band="34C", derived_slices=None, keep_slices=None):
    """
    MIRI MRS IFUImageModel of one band with the real instrument WCS.

    The MIRISim template's own ASDF extension (unreadable by stdatamodels 6) is
    dropped and a WCS is assigned from the flight distortion, specwcs and
    wavelengthrange files and a slice map (:func:`miri_mrs_reference_files`) with
    ``jwst.assign_wcs.assign_wcs.load_wcs``. Arrays: SCI zeros, ERR ``err``, DQ 0,
    variances ``err**2`` split in three (MJy/sr units).

    Parameters
    ----------
    data_dir, workdir : str or Path
        As for :func:`miri_mrs_reference_files`.
    err : float
        Per-pixel error (also the noise sigma :func:`inject_point_source` adds).
    band : str
        Band code: ``12A``, ``12B``, ``12C``, ``34A``, ``34B``, ``34C``.
    derived_slices, keep_slices
        As for :func:`miri_mrs_reference_files`.

    Returns
    -------
    stdatamodels.jwst.datamodels.IFUImageModel
        Shape (1024, 1032); ``meta.cal_step.assign_wcs = 'COMPLETE'``; file name
        ``miri_mrs_34long_cal.fits`` (34C) or ``miri_mrs_<band>_cal.fits``.
    """
    from jwst.assign_wcs.assign_wcs import load_wcs
    from stdatamodels.jwst import datamodels

    band = str(band).upper()
    refs = miri_mrs_reference_files(data_dir, workdir, band, derived_slices, keep_slices)
    template = Path(data_dir) / "miri_mrs" / band_files(band)["template"]
    with fits.open(template) as hdul:
        kept = fits.HDUList([hdu.copy() for hdu in hdul if hdu.name != "ASDF"])
    model = datamodels.IFUImageModel(kept)
    channel, name, detector = MRS_BANDS[band]
    inst = model.meta.instrument
    if (str(inst.channel), str(inst.band), str(inst.detector)) != (channel, name, detector):
        raise ValueError(
            f"{template}: holds CHANNEL={inst.channel} BAND={inst.band} "
            f"DETECTOR={inst.detector}, not band {band}"
        )
    shape = model.data.shape
    model.data = np.zeros(shape, dtype=np.float32)
    model.err = np.full(shape, err, dtype=np.float32)
    model.dq = np.zeros(shape, dtype=np.uint32)
    for var in ("var_poisson", "var_rnoise", "var_flat"):
        setattr(model, var, np.full(shape, err**2 / 3, dtype=np.float32))
    model = load_wcs(model, refs)
    model.meta.cal_step.assign_wcs = "COMPLETE"
    model.meta.filename = "miri_mrs_34long_cal.fits" if band == "34C" else f"miri_mrs_{band}_cal.fits"
    return model


def airy_pixel_integrated(r_arcsec, wave_um, diameter_m=6.5):
    """
    Airy profile (peak 1) of a circular aperture at ``r`` arcsec and ``wave`` um.

    Parameters
    ----------
    r_arcsec, wave_um : ndarray
        Radius from the source and wavelength, broadcast together.
    diameter_m : float
        Aperture diameter in metres.

    Returns
    -------
    ndarray
        ``(2 J1(x) / x)**2`` with ``x = pi D r / lambda``.
    """
    x = np.pi * diameter_m * np.radians(np.asarray(r_arcsec) / 3600.0) / (wave_um * 1e-6)
    x = np.where(np.abs(x) < 1e-8, 1e-8, x)
    return (2.0 * j1(x) / x) ** 2


def inject_point_source(
    model, *, alpha0=0.0, beta0=0.0, flux=None, background=0.05, nsub=5, seed=1, noise=True
):
    """
    Add an Airy point source, integrated over each pixel along the slice, to a MIRI MRS model.

    The source sits at slice coordinates ``(alpha0, beta0)`` arcsec. Each pixel's
    value is the mean of the profile at ``nsub`` sub-positions spread over the pixel
    along detector x (the along-slice direction), mapped through the model's own
    ``detector -> alpha_beta`` transform; across the slice the profile is evaluated
    at the slice centre ``beta``. A constant background and Gaussian noise of
    ``model.err`` are added. Pixels outside slices become NaN with DO_NOT_USE.

    Parameters
    ----------
    model : IFUImageModel
        MIRI MRS model with a WCS; updated in place.
    alpha0, beta0 : float
        Source position in the alpha-beta frame (arcsec).
    flux : callable or None
        Peak surface brightness (MJy/sr) as a function of wavelength (um); default a
        gentle slope ``10 * (lambda / 20)**-1``.
    background : float
        Constant background (MJy/sr).
    nsub : int
        Sub-positions per pixel along the slice.
    seed : int
        Seed of the noise generator.
    noise : bool
        Add the Gaussian noise (False: noise-free image, same error arrays).

    Returns
    -------
    IFUImageModel
        The same model.
    """

    ny, nx = model.data.shape
    det2ab = model.meta.wcs.get_transform("detector", "alpha_beta")
    y, x = np.mgrid[:ny, :nx].astype(np.float64)
    truth = point_source_truth(lambda dx: det2ab(x + dx, y), alpha0=alpha0, beta0=beta0,
                               flux=flux, background=background, nsub=nsub)  # fmt: skip
    rng = np.random.default_rng(seed)
    data = truth + noise * rng.normal(0.0, 1.0, (ny, nx)) * np.asarray(model.err)
    _set_data(model, data, ~np.isfinite(data))
    return model


def point_source_truth(sample, *, alpha0=0.0, beta0=0.0, flux=None, background=0.05, nsub=5):
    """
    Noise-free surface brightness of the injected point source, pixel by pixel.

    Each pixel's value is the mean of the Airy profile at ``nsub`` sub-positions
    spread over one native pixel width along x (the along-slice direction of MIRI
    MRS); across the slice the profile is taken at the slice centre's ``beta``. The
    native image (:func:`inject_point_source`) and the ideal oversampled one
    (:func:`ideal_oversampled_image`) differ only in ``sample``.

    Parameters
    ----------
    sample : callable
        ``sample(dx) -> (alpha, beta, wavelength)``, arrays of the image's shape in
        arcsec, arcsec, um: the sky position of each pixel's sub-position offset by
        ``dx`` native pixels (``-0.5 < dx < 0.5``) along x.
    alpha0, beta0, flux, background, nsub
        As for :func:`inject_point_source`.

    Returns
    -------
    ndarray of float64
        MJy/sr; NaN outside every slice. The peak brightness is taken at the first
        sub-position's wavelength.
    """
    prof = 0.0
    wave = None
    for k in range(nsub):
        alpha, beta, lam = sample((k + 0.5) / nsub - 0.5)
        if wave is None:
            wave = lam
        prof = prof + airy_pixel_integrated(np.hypot(alpha - alpha0, beta - beta0), lam)
    prof /= nsub
    peak = 10.0 * (wave / 20.0) ** -1 if flux is None else flux(wave)
    return peak * prof + background


def ideal_oversampled_image(oversampled, *, alpha0=0.0, beta0=0.0, flux=None, background=0.05,
                            nsub=5):  # fmt: skip
    """
    The ideal-oversampling floor: an oversampled image holding the exact truth.

    Takes an oversampled MIRI MRS image (a step's output, for its WCS, DQ and
    errors) and replaces its SCI by the noise-free point source of
    :func:`inject_point_source` as an ideal reconstruction of the native data would
    give it: the profile averaged over one *native* pixel width along the slice,
    centred on each oversampled pixel (the pixel-convolved profile that the trace
    model describes, sampled N times per pixel; the issue-9 grid's floor,
    `atm_step.simulate.Scene.truth_oversampled`). Each oversampled pixel's centre
    is mapped through the image's own ``coordinates -> detector -> alpha_beta``
    transforms; alpha is taken as linear in detector x across the window, with the
    slope of the parent native pixel, so the window never changes slice. At the
    native pixel centres this is the native image itself. Pixels the step left NaN
    stay NaN, so the ideal image covers the same pixels.

    Parameters
    ----------
    oversampled : IFUImageModel
        Image oversampled along detector x (MIRI MRS), with the ``coordinates``
        frame of atm-step's output WCS; not changed.
    alpha0, beta0, flux, background, nsub
        As for :func:`inject_point_source`.

    Returns
    -------
    IFUImageModel
        A copy of ``oversampled`` with the truth as SCI.

    Raises
    ------
    ValueError
        If the image's WCS has no ``coordinates`` frame (not an oversampled image).
    """
    wcs = oversampled.meta.wcs
    if "coordinates" not in wcs.available_frames:
        raise ValueError(f"{oversampled.meta.filename}: no 'coordinates' frame in its WCS; "
                         "not an oversampled image")
    to_detector = wcs.get_transform("coordinates", "detector")
    det2ab = wcs.get_transform("detector", "alpha_beta")
    ny, nx = oversampled.data.shape
    y, x = np.mgrid[:ny, :nx].astype(np.float64)
    xd, yd = to_detector(x, y)
    parent = np.round(xd)  # the nearest native pixel, whose slice the window keeps
    alpha, beta, wave = det2ab(xd, yd)
    dadx = (det2ab(parent + 0.25, yd)[0] - det2ab(parent - 0.25, yd)[0]) / 0.5
    truth = point_source_truth(lambda dx: (alpha + dx * dadx, beta, wave), alpha0=alpha0,
                               beta0=beta0, flux=flux, background=background, nsub=nsub)  # fmt: skip
    truth[~np.isfinite(np.asarray(oversampled.data))] = np.nan
    out = oversampled.copy()
    out.data = truth.astype(np.float32)
    return out


def _set_data(model, data, bad):
    """Store ``data`` as the model's SCI array with the pixels ``bad`` (outside every
    slice, or NaN) NaN in SCI, ERR and the variances and flagged DO_NOT_USE +
    NON_SCIENCE in DQ, as the pipeline marks them."""
    from stdatamodels.jwst.datamodels import dqflags

    data = np.array(data, dtype=np.float64)
    data[bad] = np.nan
    model.data = data.astype(np.float32)
    dq = np.asarray(model.dq).copy()
    dq[bad] |= dqflags.pixel["DO_NOT_USE"] | dqflags.pixel["NON_SCIENCE"]
    model.dq = dq
    for name in ("err", "var_poisson", "var_rnoise", "var_flat"):
        arr = np.asarray(getattr(model, name)).copy()
        arr[bad] = np.nan
        setattr(model, name, arr)


def build_channel_cubes(model, cubepar, channels, grids=None):
    """
    jwst's ``pixel_replace`` once, then ``cube_build`` (drizzle weighting) per channel.

    Parameters
    ----------
    model : IFUImageModel
        Standard or ATM-oversampled MIRI MRS image.
    cubepar : str
        Path written by :func:`write_cubepar` (it holds the ``MULTICHANNEL_DRIZ``
        table that ``weighting='drizzle'`` reads).
    channels : dict of str to tuple of float
        Channel to build -> its ``(wavemin, wavemax)`` in um.
    grids : dict of str to dict, optional
        Channel -> ``ra_center``, ``dec_center``, ``nspax_x``, ``nspax_y``, forcing a
        common grid. A channel missing from it is built on cube_build's own grid, which
        is then added (so later calls with the same dict share it).

    Returns
    -------
    dict of str to IFUCubeModel
    """
    from jwst.cube_build import CubeBuildStep
    from jwst.pixel_replace import PixelReplaceStep

    grids = {} if grids is None else grids
    out = {}
    with offline_crds():
        replaced = PixelReplaceStep.call(model)
        for ch, (lo, hi) in channels.items():
            kwargs = {"override_cubepar": str(cubepar), "channel": ch, "weighting": "drizzle",
                      "wavemin": lo, "wavemax": hi, **grids.get(ch, {})}  # fmt: skip
            cube = CubeBuildStep.call(replaced, **kwargs)[0]
            grids.setdefault(ch, {"ra_center": float(cube.meta.wcsinfo.crval1),
                                  "dec_center": float(cube.meta.wcsinfo.crval2),
                                  "nspax_x": int(cube.data.shape[2]),
                                  "nspax_y": int(cube.data.shape[1])})  # fmt: skip
            out[ch] = cube
    return out


def build_cube(model, cubepar, wave_range, grid=None, channel="3"):
    """
    jwst's ``pixel_replace`` then ``cube_build`` (drizzle weighting) of one channel.

    Parameters
    ----------
    model : IFUImageModel
        Standard or ATM-oversampled MIRI MRS image.
    cubepar : str
        Path written by :func:`write_cubepar`.
    wave_range : tuple of float
        ``(wavemin, wavemax)`` in um.
    grid : dict, optional
        ``ra_center``, ``dec_center``, ``nspax_x``, ``nspax_y`` to force a common grid.
    channel : str
        Channel to build.

    Returns
    -------
    IFUCubeModel
    """
    grids = {} if grid is None else {channel: dict(grid)}
    return build_channel_cubes(model, cubepar, {channel: wave_range}, grids)[channel]


class MiriConfig:
    """
    Settings of the MIRI MRS point-source validation.

    Parameters
    ----------
    alpha0, beta0 : float
        Source position in the alpha-beta frame (arcsec).
    err : float
        Per-pixel noise sigma (MJy/sr); 0.04 gives a peak SNR of ~300 for the
        default source in channel 3 (peak ~12 MJy/sr at 16.5 um), ~400 in channel 1.
    wave_range : tuple of float
        Cube wavelength range (um) of ``channel`` (when ``channels`` is not given).
    oversamples : tuple of int
        N values for atm-step's step.
    jwst_oversamples : tuple of int
        N values for jwst's step. Default N = 3 only: jwst's spline fit takes 2-4 min
        per full-frame MIRI image on one core.
    n_spaxels : int
        Brightest spaxels measured.
    box : int
        Aperture box side in spaxels.
    noise_free : bool
        Also run every method on the noise-free image (needed for the noise floor,
        the noise-free artifact amplitude and the measured SNR).
    seed : int
        Noise seed.
    band : str
        MRS band code (``12A`` ... ``34C``); bands other than 34C use the slice map
        derived from the geometry (`atm_step.validation.miri_slices`).
    channel : str
        Channel whose cube is measured (when ``channels`` is not given).
    channels : dict of str to tuple of float, optional
        Several channels of the same exposure, each with its cube wavelength range;
        the steps run once, cubes are built per channel.
    variants : dict of str to dict, optional
        Extra atm-step runs with tuning overrides (e.g. ``{"ours_k50": {"nknots": 50}}``),
        at the last N of ``oversamples``.
    only_channels : bool
        Blank (NaN, DO_NOT_USE) the pixels of the detector's other channel before
        running the steps (faster; the measured channel is unchanged).
    slices_near_source : int or None
        Keep only the ``2 n + 1`` slices of each measured channel nearest the source
        in the slice map (:func:`slices_near`); the others are gap. Much faster (both
        steps loop over every slice); the cube then covers those slices only.
    ideal_oversamples : tuple of int
        N of the ideal-oversampling floor (:func:`ideal_oversampled_image`, noise-free
        only; needs ``noise_free``).

    Raises
    ------
    ValueError
        If ``ideal_oversamples`` is given with ``noise_free=False``.
    """

    def __init__(self, alpha0=0.05, beta0=0.1, err=0.04, wave_range=(16.0, 17.5),
                 oversamples=(1, 2, 3), jwst_oversamples=(3,), n_spaxels=20, box=6,
                 noise_free=True, seed=1, band="34C", channel="3", channels=None,
                 variants=None, only_channels=False, slices_near_source=None,
                 ideal_oversamples=()):  # fmt: skip
        self.alpha0, self.beta0, self.err = alpha0, beta0, err
        self.wave_range = tuple(wave_range)
        self.oversamples = tuple(oversamples)
        self.jwst_oversamples = tuple(jwst_oversamples)
        self.n_spaxels, self.box, self.noise_free, self.seed = n_spaxels, box, noise_free, seed
        self.band, self.channel = str(band).upper(), str(channel)
        self.channels = {str(k): tuple(v) for k, v in (channels or {self.channel: self.wave_range}).items()}
        self.variants = dict(variants or {})
        self.only_channels = bool(only_channels)
        self.slices_near_source = slices_near_source
        self.ideal_oversamples = tuple(ideal_oversamples)
        if self.ideal_oversamples and not self.noise_free:
            raise ValueError("ideal_oversamples needs noise_free=True (the floor is noise-free)")

    def as_dict(self):
        """The settings as a plain dict (for the JSON record)."""
        return dict(vars(self))


#: Settings of ``python -m atm_step.validation``.
DEFAULT_CONFIG = MiriConfig()

#: Channel 1 and 2 of band 12A (the most undersampled channels), N = 2 and 3, both steps
#: and the ideal-oversampling floor.
CH12_CONFIG = MiriConfig(band="12A", channels={"1": (5.3, 5.6), "2": (8.0, 8.4)},
                         oversamples=(2, 3), jwst_oversamples=(2, 3),
                         ideal_oversamples=(2, 3))  # fmt: skip

#: Noise seeds of the channel 1/2 run: one noise realisation moves jwst's channel-1
#: figure from 6.95% to 7.67%, so single-seed ratios are not trusted.
CH12_SEEDS = (1, 2, 3)


def _run_step(method, model, n, overrides=None):
    """Run one method on a copy of ``model``; returns (image model, seconds)."""
    t0 = time.perf_counter()
    with offline_crds():
        if method == "standard":
            out = model.copy()
        elif method == "jwst":
            from jwst.adaptive_trace_model import AdaptiveTraceModelStep

            out = AdaptiveTraceModelStep.call(model.copy(), oversample=n, skip=False)
        else:  # "ours" or a variant of it
            from atm_step import AdaptiveTraceModelStep

            out = AdaptiveTraceModelStep.call(model.copy(), oversample=n, **(overrides or {}))
    return out, time.perf_counter() - t0


def _as_measure_cube(cube_model):
    """cube_build ``(n_wave, ny, nx)`` -> measures layout ``(ny, nx, n_wave)``; flux and error."""
    data = np.transpose(np.asarray(cube_model.data, dtype=float), (1, 2, 0)).copy()
    err = np.transpose(np.asarray(cube_model.err, dtype=float), (1, 2, 0)).copy()
    data[data == 0] = np.nan  # cube_build writes 0 where no pixel falls
    return data, err


def _blank_other_channels(model, keep):
    """NaN and DO_NOT_USE on the pixels of channels not in ``keep`` (in place)."""
    from stdatamodels.jwst.datamodels import dqflags

    label = np.asarray(model.meta.wcs.get_transform("detector", "alpha_beta").label_mapper.mapper)
    drop = (label > 0) & ~np.isin(label // 100, [int(c) for c in keep])
    for name in ("data", "err", "var_poisson", "var_rnoise", "var_flat"):
        arr = np.array(getattr(model, name))
        arr[drop] = np.nan
        setattr(model, name, arr)
    dq = np.array(model.dq)
    dq[drop] |= dqflags.pixel["DO_NOT_USE"]
    model.dq = dq


def point_source_metrics(data_dir, workdir, cfg=DEFAULT_CONFIG):
    """
    Artifact amplitude, aperture flux and SNR on MIRI MRS cubes from jwst's cube_build.

    One exposure (no dither) of a bright, undersampled Airy point source on the real
    geometry of ``cfg.band``. Methods: standard (no ATM), atm-step and jwst's step at
    each N (plus atm-step variants). Each method runs once; cubes are built per
    channel on the standard cube's grid; the brightest spaxels and the aperture box
    are chosen on the standard cube (noise-free when available) and used for every
    method.

    Parameters
    ----------
    data_dir : str or Path
        Shared data folder holding ``miri_mrs/``.
    workdir : str or Path
        Writable folder (regions file, cubepar).
    cfg : MiriConfig
        Settings.

    Returns
    -------
    dict
        ``rows`` (one per channel, method and N: ``channel``, ``method``, ``N``,
        ``half_amp``, ``rms``, ``half_amp_noisefree``, ``rms_noisefree``,
        ``ap_vs_standard`` (median ratio of aperture spectra), ``ap_vs_standard_p95``
        (95th percentile of |ratio - 1|), ``ap_total_vs_standard``,
        ``field_vs_standard`` (flux of the whole cube over the standard's), ``snr_reported``
        (median aperture flux over the cube's ERR summed in quadrature), ``snr``
        (median noise-free aperture flux over the rms of noisy minus noise-free; None
        without the noise-free run), ``seconds``; rows of method ``ideal``, the
        ideal-oversampling floor of ``cfg.ideal_oversamples``, carry only the
        noise-free figures, and rows ``ideal+ours noise`` / ``ideal+jwst noise``, the
        ideal image plus that step's own noise (its noisy minus its noise-free
        output), only the noisy ones); ``channels`` (per channel:
        ``noise_floor``, ``noise_floor_rms``, ``spaxel_arcsec``, ``cube_shape``,
        ``box_arcsec``); for the first channel, the same keys at the top level (as
        before); ``peak_snr``, ``box``, ``config``.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cubepar = write_cubepar(workdir / "cubepar_validation.fits")
    scenes = {"noisy": True}
    if cfg.noise_free:
        scenes["noisefree"] = False
    keep = None
    if cfg.slices_near_source is not None:
        dist = Path(data_dir) / "miri_mrs" / band_files(cfg.band)["distortion"]
        keep = [i for ch in cfg.channels for i in slices_near(dist, ch, cfg.beta0, cfg.slices_near_source)]
    images = {}
    for name, noise in scenes.items():
        m = miri_mrs_model(data_dir, workdir, err=cfg.err, band=cfg.band, keep_slices=keep)
        inject_point_source(m, alpha0=cfg.alpha0, beta0=cfg.beta0, seed=cfg.seed, noise=noise)
        if cfg.only_channels:
            _blank_other_channels(m, cfg.channels)
        images[name] = m
    nf = images.get("noisefree", images["noisy"])
    peak_snr = float(np.nanmax(nf.data) / cfg.err)

    runs = ([("standard", 1, None)] + [("ours", n, None) for n in cfg.oversamples]
            + [(v, cfg.oversamples[-1], kw) for v, kw in cfg.variants.items()]
            + [("jwst", n, None) for n in cfg.jwst_oversamples]
            + [("ideal", n, None) for n in cfg.ideal_oversamples]
            # the noisy floors: the ideal image plus each step's own noise at that N
            + [(f"ideal+{m} noise", n, None) for m, ns in (("ours", cfg.oversamples),
                                                          ("jwst", cfg.jwst_oversamples))
               for n in cfg.ideal_oversamples if n in ns])  # fmt: skip
    cubes, seconds = {}, {}
    grids, spaxel = {}, {}
    # at the ideal's N: each step's SCI, our noise-free output (layout and WCS of the
    # ideal image), the ideal images
    kept, ours_noisefree, ideal_images = {}, {}, {}
    for method, n, overrides in runs:
        for name in scenes:
            if method == "ideal":
                if name == "noisy":  # the floor is noise-free only
                    continue
                layout = ours_noisefree.get(n)
                if layout is None:  # ours did not run at this N
                    layout = _run_step("ours", images[name], n)[0]
                img, dt = ideal_oversampled_image(layout, alpha0=cfg.alpha0, beta0=cfg.beta0), 0.0
                ideal_images[n] = img
            elif method.startswith("ideal+"):
                if name != "noisy":
                    continue
                step = method.removeprefix("ideal+").removesuffix(" noise")
                img, dt = ideal_images[n].copy(), 0.0
                img.data = (np.asarray(img.data, dtype=np.float64) + kept[(step, n, "noisy")]
                            - kept[(step, n, "noisefree")]).astype(np.float32)  # fmt: skip
            else:
                img, dt = _run_step(method if method in ("standard", "jwst") else "ours",
                                    images[name], n, overrides)  # fmt: skip
                if method in ("ours", "jwst") and n in cfg.ideal_oversamples:
                    kept[(method, n, name)] = np.array(img.data, dtype=np.float64)
                    if method == "ours" and name == "noisefree":
                        ours_noisefree[n] = img
            if method.startswith("ideal"):
                seconds[(method, n)] = None
            elif name == "noisy":
                seconds[(method, n)] = dt
            for ch, cube in build_channel_cubes(img, cubepar, cfg.channels, grids).items():
                spaxel.setdefault(ch, float(abs(cube.meta.wcsinfo.cdelt2) * 3600.0))
                cubes[(ch, method, n, name)] = _as_measure_cube(cube)
            log.info("MIRI %s %s N=%d %s: step %.1f s", cfg.band, method, n, name, dt)
            del img

    rows, per_channel = [], {}
    for ch in cfg.channels:
        ref_key = (ch, "standard", 1, "noisefree" if cfg.noise_free else "noisy")
        ref = cubes[ref_key][0]
        spaxels = M.brightest_spaxels(ref, cfg.n_spaxels)
        box = M.aperture_box(ref, cfg.box)
        ap_std = M.aperture_spectrum(cubes[(ch, "standard", 1, "noisy")][0], box)[0]
        for method, n, _ in runs:
            row = {"channel": ch, "method": method, "N": n, "seconds": seconds[(method, n)]}
            aps = {}
            if method == "ideal":  # noise-free only: the noisy figures stay None
                row.update(half_amp=None, rms=None, ap_vs_standard=None, ap_vs_standard_p95=None,
                           ap_total_vs_standard=None, field_vs_standard=None, snr_reported=None)
            elif method.startswith("ideal+"):  # noisy only
                row.update(half_amp_noisefree=None, rms_noisefree=None)
            for name in scenes:
                if (method == "ideal" and name == "noisy") or (method.startswith("ideal+")
                                                               and name != "noisy"):
                    continue
                cube, cube_err = cubes[(ch, method, n, name)]
                ap, ap_err = M.aperture_spectrum(cube, box, err=cube_err)
                aps[name] = ap
                st = M.artifact_amplitude(cube, spaxels, ap)
                sfx = "" if name == "noisy" else "_noisefree"
                row["half_amp" + sfx] = st.median_half_amplitude
                row["rms" + sfx] = st.median_rms
                if name != "noisy":
                    continue
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = ap / ap_std
                ok = np.isfinite(ratio)
                ok[:2] = ok[-2:] = False
                row["ap_vs_standard"] = float(np.median(ratio[ok]))
                row["ap_vs_standard_p95"] = float(np.percentile(np.abs(ratio[ok] - 1), 95))
                row["ap_total_vs_standard"] = float(np.nansum(ap[ok]) / np.nansum(ap_std[ok]))
                field_std = np.nansum(cubes[(ch, "standard", 1, "noisy")][0][:, :, 2:-2])
                row["field_vs_standard"] = float(np.nansum(cube[:, :, 2:-2]) / field_std)
                row["snr_reported"] = float(np.nanmedian((ap / ap_err)[ok]))
            row["snr"] = None
            if cfg.noise_free and not method.startswith("ideal"):
                diff = (aps["noisy"] - aps["noisefree"])[2:-2]
                row["snr"] = float(np.nanmedian(aps["noisefree"][2:-2]) / np.nanstd(diff))
            rows.append(row)

        # Noise floor: a cube with no artifacts at all (each spaxel = its median fraction
        # of the noise-free standard aperture spectrum) plus the standard cube's noise.
        noise_floor = noise_floor_rms = None
        if cfg.noise_free:
            noise = cubes[(ch, "standard", 1, "noisy")][0] - ref
            ap_nf = M.aperture_spectrum(ref, box)[0]
            smooth = np.empty_like(ref)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                frac = np.nanmedian(ref / ap_nf[None, None, :], axis=2)
            smooth[:] = frac[:, :, None] * ap_nf[None, None, :]
            fl = smooth + noise
            st = M.artifact_amplitude(fl, spaxels, M.aperture_spectrum(fl, box)[0])
            noise_floor, noise_floor_rms = st.median_half_amplitude, st.median_rms
        per_channel[ch] = {
            "noise_floor": noise_floor,
            "noise_floor_rms": noise_floor_rms,
            "spaxel_arcsec": spaxel[ch],
            "box_arcsec": cfg.box * spaxel[ch],
            "cube_shape": [int(v) for v in ref.shape],
        }
    first = per_channel[next(iter(cfg.channels))]
    return {
        "rows": rows,
        "channels": per_channel,
        **first,
        "box": cfg.box,
        "peak_snr": peak_snr,
        "config": cfg.as_dict(),
    }


def run_ch12(data_dir, workdir, seeds=CH12_SEEDS, cfg=None):
    """
    :func:`point_source_metrics` of :data:`CH12_CONFIG` for each noise seed.

    Parameters
    ----------
    data_dir, workdir : str or Path
        As for :func:`point_source_metrics`.
    seeds : sequence of int
        Noise seeds (the noise-free image is the same for all).
    cfg : MiriConfig, optional
        Default :data:`CH12_CONFIG`; its ``seed`` is replaced by each of ``seeds``.

    Returns
    -------
    dict
        ``runs``: one :func:`point_source_metrics` result per seed (``seed`` added);
        ``seeds``; ``seconds``.
    """
    import copy

    cfg = CH12_CONFIG if cfg is None else cfg
    t0 = time.perf_counter()
    runs = []
    for seed in seeds:
        c = copy.copy(cfg)
        c.seed = int(seed)
        res = point_source_metrics(data_dir, Path(workdir) / f"seed{seed}", c)
        res["seed"] = int(seed)
        runs.append(res)
        log.info("MIRI %s seed %d done (%.0f s so far)", cfg.band, seed, time.perf_counter() - t0)
    return {"runs": runs, "seeds": [int(s) for s in seeds], "seconds": time.perf_counter() - t0}


def render_ch12_markdown(res, stamp=None):
    """
    Markdown of the channel 1/2 run (:data:`CH12_CONFIG`): section 6c of the validation.

    Parameters
    ----------
    res : dict
        From :func:`run_ch12`: the first seed's run in full, then every seed's noisy
        figures.
    stamp : dict, optional
        From `atm_step.validation.report.commit_stamp`.

    Returns
    -------
    str
    """
    allres = res
    res = allres["runs"][0]
    c = res["config"]

    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}%"

    def ratio(a, b):
        return "-" if a is None or not b else f"{a / b:.2f}"

    L = []
    w = L.append
    w("# Validation: MIRI MRS channels 1 and 2\n")
    w("## 6c. MIRI MRS band 12A: ours, jwst and the ideal-oversampling floor (issue 9)\n")
    if stamp:
        from atm_step.validation.report import stamp_sentence

        w(stamp_sentence(stamp, allres.get("seconds", float("nan"))))
    chans = ", ".join(f"channel {ch}: {lo}-{hi} um, {res['channels'][ch]['spaxel_arcsec']:.2f}\" spaxels"
                      for ch, (lo, hi) in c["channels"].items())
    w("- Geometry: band 12A (MIRIFUSHORT, channels 1 and 2 SHORT), flight distortion, specwcs and "
      "wavelengthrange, the slice map derived from the geometry (docs/modes.md); `load_wcs`. "
      f"One Airy point source (6.5 m, no jitter, no blur: the sharpest MRS PSF) at alpha, beta = "
      f"({c['alpha0']}, {c['beta0']})\", pixel-integrated along the slice (5 sub-positions), + 0.05 MJy/sr, "
      f"noise sigma {c['err']} MJy/sr (peak SNR {res['peak_snr']:.0f}). One exposure, no dither.")
    w("- Methods: **standard** (no ATM); **ours** (`atm_step.AdaptiveTraceModelStep`, default parameters); "
      "**jwst** (jwst 3.0 `AdaptiveTraceModelStep`, `skip=False`); **ideal**: the floor, our output image with "
      "its SCI replaced by the exact noise-free source averaged over one native pixel width centred on each "
      "oversampled pixel, through that image's own WCS (`atm_step.validation.miri.ideal_oversampled_image`): "
      "the pixel-convolved profile a perfect trace model recovers, sampled N times per pixel, as the floor of "
      "the NIRSpec-like grid. Then jwst's `pixel_replace` + `cube_build` (drizzle), " + chans
      + ", every cube on the standard cube's grid.")
    w("- Measure: the paper's artifact half-amplitude, median over the 20 brightest spaxels of the noise-free "
      "standard cube, against the cube's own aperture spectrum (6 x 6 spaxels). What the slices "
      "themselves leave (across-slice sampling, which ATM does not change) is part of the ideal floor.")
    w("- Floors: **ideal** (noise-free) as above; **ideal + noise**, the ideal image plus the step's own "
      "noise (its output on the noisy image minus its output on the noise-free one): the figure a perfect "
      "trace model would reach with that step's handling of the noise.\n")
    w("| channel | method | N | half-amp, noisy | ideal + own noise | noisy / (ideal + own noise) | "
      "half-amp, noise-free | ideal | noise-free / ideal | noisy / jwst | noise-free / jwst | "
      "box flux / standard | reported SNR |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    def index(run):
        return {(r["channel"], r["method"], r["N"]): r for r in run["rows"]}

    rows = res["rows"]
    find = index(res)
    for r in rows:
        if r["method"].startswith("ideal"):
            continue  # shown as the floors of the steps' rows
        ch, n, m = r["channel"], r["N"], r["method"]
        ideal = find.get((ch, "ideal", n), {}).get("half_amp_noisefree")
        floor = find.get((ch, f"ideal+{m} noise", n), {}).get("half_amp")
        jw = find.get((ch, "jwst", n), {})
        ap = r.get("ap_vs_standard")
        snr = r.get("snr_reported")
        step = m != "standard"
        w(f"| {ch} | {m} | {n} | {pct(r.get('half_amp'))} | {pct(floor)} | {ratio(r.get('half_amp'), floor)} | "
          f"{pct(r.get('half_amp_noisefree'))} | {pct(ideal) if step else '-'} | "
          f"{ratio(r.get('half_amp_noisefree'), ideal) if step else '-'} | "
          f"{ratio(r.get('half_amp'), jw.get('half_amp')) if m == 'ours' else '-'} | "
          f"{ratio(r.get('half_amp_noisefree'), jw.get('half_amp_noisefree')) if m == 'ours' else '-'} | "
          f"{'-' if ap is None else f'{ap:.4f}'} | {'-' if snr is None else f'{snr:.0f}'} |")
    w(f"\nThe table above is noise seed {res['seed']}. Noisy half-amplitudes for every seed (the "
      "noise-free figures do not depend on it); the mean is over seeds:\n")
    seeds = allres["runs"]
    found = [index(run) for run in seeds]
    w("| channel | N | method | " + " | ".join(f"seed {r['seed']}" for r in seeds)
      + " | mean | ideal + own noise, mean | ours / jwst, mean |")
    w("|---|---|---|" + "---|" * (len(seeds) + 3))
    for ch in c["channels"]:
        for n in c["oversamples"]:
            means = {}
            for m in ("ours", "jwst"):
                vals = [f.get((ch, m, n), {}).get("half_amp") for f in found]
                floors = [f.get((ch, f"ideal+{m} noise", n), {}).get("half_amp") for f in found]
                if all(v is None for v in vals):
                    continue
                mean = float(np.mean([v for v in vals if v is not None]))
                fl = [v for v in floors if v is not None]
                means[m] = mean
                last = ratio(means.get("ours"), mean) if m == "jwst" and "ours" in means else "-"
                w(f"| {ch} | {n} | {m} | " + " | ".join(pct(v) for v in vals)
                  + f" | {pct(mean)} | {pct(float(np.mean(fl))) if fl else '-'} | {last} |")
    w("")
    for ch in c["channels"]:
        nf = res["channels"][ch].get("noise_floor")
        w(f"Channel {ch}: noise floor (an artifact-free cube plus the standard cube's noise; seed "
          f"{res['seed']}) {pct(nf)}.")
    w("")
    return "\n".join(L)


def write_ch12_report(out_dir, res, command):
    """
    Write the channel 1/2 report: ``validation_miri_ch12.md`` and its ``.json``.

    Parameters
    ----------
    out_dir, command
        As for `atm_step.validation.report.write_stamped_report` (folder; command
        line of the stamp).
    res : dict
        From :func:`run_ch12`, rendered by :func:`render_ch12_markdown`.

    Returns
    -------
    Path
        ``<out_dir>/validation_miri_ch12.md``.
    """
    from atm_step.validation.report import write_stamped_report

    return write_stamped_report(out_dir, "validation_miri_ch12", res, command, render_ch12_markdown)


def write_mrs_cal(out, band, data_dir, *, alpha0=0.05, beta0=0.1, err=0.04, background=0.05,
                  seed=1, noise=True, derived_slices=None, workdir=None, overwrite=False):  # fmt: skip
    """
    Write a MIRI MRS ``_cal`` file of any band with an injected point source.

    The file is an IFUImageModel with the band's real WCS (:func:`miri_mrs_model`)
    and an Airy point source integrated over each pixel along the slice
    (:func:`inject_point_source`). It is written to a temporary name and renamed,
    so an interrupted run never leaves a partial file under ``out``.

    Parameters
    ----------
    out : str or Path
        Output FITS file.
    band : str
        Band code: ``12A``, ``12B``, ``12C``, ``34A``, ``34B``, ``34C``.
    data_dir : str or Path
        The shared data folder (holding ``miri_mrs/``).
    alpha0, beta0 : float
        Source position in the alpha-beta frame (arcsec).
    err : float
        Per-pixel noise sigma and ERR value (MJy/sr).
    background : float
        Constant background (MJy/sr).
    seed : int
        Noise seed.
    noise : bool
        Add Gaussian noise.
    derived_slices : bool or None
        Slice map derived from the geometry (default: for every band but 34C).
    workdir : str or Path, optional
        Folder for the regions file (default: next to ``out``).
    overwrite : bool
        Replace an existing ``out``.

    Returns
    -------
    IFUImageModel
        The model written.

    Raises
    ------
    FileExistsError
        If ``out`` exists and ``overwrite`` is False.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    workdir = Path(workdir) if workdir is not None else out.parent
    workdir.mkdir(parents=True, exist_ok=True)
    model = miri_mrs_model(data_dir, workdir, err=err, band=band, derived_slices=derived_slices)
    inject_point_source(model, alpha0=alpha0, beta0=beta0, background=background, seed=seed,
                        noise=noise)  # fmt: skip
    model.meta.filename = out.name
    atomic_save(model, out)
    log.info("Wrote %s (band %s)", out, band)
    return model


def main(argv=None):
    """``python -m atm_step.validation.miri --band 12A --out FILE``; returns the exit status."""
    import argparse
    import os
    import sys

    p = argparse.ArgumentParser(
        prog="python -m atm_step.validation.miri",
        description="Write a MIRI MRS _cal file (real geometry of one band) with an injected, "
        "pixel-integrated point source.",
    )
    p.add_argument("--band", required=True, choices=sorted(MRS_BANDS), type=str.upper)
    p.add_argument("--out", required=True, help="output FITS file")
    p.add_argument("--data", default=os.environ.get("ATM_STEP_TEST_DATA", "../shared/data"),
                   help="shared data folder holding miri_mrs/ (default: $ATM_STEP_TEST_DATA)")
    p.add_argument("--alpha0", type=float, default=0.05, help="source alpha (arcsec)")
    p.add_argument("--beta0", type=float, default=0.1, help="source beta (arcsec)")
    p.add_argument("--err", type=float, default=0.04, help="noise sigma, MJy/sr")
    p.add_argument("--background", type=float, default=0.05, help="background, MJy/sr")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-noise", action="store_true", help="noise-free image")
    p.add_argument("--derived-slices", action="store_true",
                   help="use the derived slice map also for 34C (which has a real one)")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        model = write_mrs_cal(
            args.out, args.band, args.data, alpha0=args.alpha0, beta0=args.beta0, err=args.err,
            background=args.background, seed=args.seed, noise=not args.no_noise,
            derived_slices=True if args.derived_slices else None, overwrite=args.overwrite,
        )  # fmt: skip
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: band {args.band}, peak {np.nanmax(model.data):.3g} MJy/sr")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
