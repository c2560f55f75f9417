"""Validation on simulated NIRSpec-IFU-like scenes: ours vs jwst's functions vs standard.

Each scene is processed by the three methods of :mod:`atm_step.validation.methods`,
resampled by the 1-D drizzle of :mod:`atm_step.validation.drizzle` onto 0.1 arcsec
spaxels, and measured against the scene's noise-free truth with
:mod:`atm_step.validation.measures`.
"""

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from atm_step.simulate import make_scene
from atm_step.validation import measures as Q
from atm_step.validation import methods as M
from atm_step.validation.drizzle import drizzle_slices
from atm_step.validation.truth import truth_cube

__all__ = ["SceneConfig", "DEFAULT_CONFIG", "QUICK_CONFIG", "cube_of", "pixel_replace_mingrad",
           "point_source_metrics", "nebula_metrics", "two_sources_metrics", "bad_pixel_metrics",
           "error_metrics"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SceneConfig:
    """
    Simulator settings shared by the validation scenes.

    The defaults emulate a 400-column piece of G395H: 2.90-3.35 micron, the Airy PSF
    of the 6.5 m aperture blurred by a 0.08 arcsec Gaussian so that the along-slice
    PSF core (FWHM ~0.13 arcsec) resembles the in-flight NIRSpec IFU PSF, and the
    NRS1 trace tilt (a full pixel-phase cycle every 80 columns).
    """

    nx: int = 400
    noise: float = 0.01
    wave_range: tuple = (2.9, 3.35)
    jitter_fwhm: float = 0.08
    seed: int = 1
    n_realisations: int = 4
    oversamples: tuple = (1, 2, 3)
    extra: dict = field(default_factory=dict)

    def scene(self, name, seed=None, noise=None, **opts):
        """:func:`make_scene` with these settings."""
        return make_scene(
            name, nx=self.nx, ny=None, noise=self.noise if noise is None else noise,
            seed=self.seed if seed is None else seed, wave_range=self.wave_range,
            jitter_fwhm=self.jitter_fwhm, **opts,
        )


DEFAULT_CONFIG = SceneConfig()
#: A smaller setting for regression tests (fewer columns, fewer realisations).
QUICK_CONFIG = SceneConfig(nx=240, n_realisations=2)


def cube_of(p, edges=None):
    """Drizzle a :class:`~atm_step.validation.methods.Processed` image (with errors)."""
    return drizzle_slices(p.flux, p.alpha, p.regions, p.pixel_size, err=p.err, edges=edges)


def pixel_replace_mingrad(flux, err, regions):
    """
    jwst's ``pixel_replace`` (algorithm ``mingrad``) on plain arrays.

    Builds a throw-away IFUImageModel (dispersion along x) and calls
    ``jwst.pixel_replace.pixel_replace.PixelReplacement(...).replace()``. NaN pixels
    inside slices are flagged DO_NOT_USE; pixels outside slices DO_NOT_USE + NON_SCIENCE.

    Parameters
    ----------
    flux, err : ndarray, shape (ny, nx)
    regions : ndarray of int, shape (ny, nx)

    Returns
    -------
    flux, err : ndarray, shape (ny, nx)
        With replaced pixels filled.
    """
    from jwst.pixel_replace.pixel_replace import PixelReplacement
    from stdatamodels.jwst import datamodels
    from stdatamodels.jwst.datamodels import dqflags

    dnu, nsci = dqflags.pixel["DO_NOT_USE"], dqflags.pixel["NON_SCIENCE"]
    dq = np.zeros(flux.shape, dtype=np.uint32)
    dq[~np.isfinite(flux)] |= dnu
    dq[regions <= 0] |= dnu | nsci
    e = np.where(np.isfinite(err), err, np.nan)
    model = datamodels.IFUImageModel(
        data=flux.astype(np.float32), dq=dq, err=e.astype(np.float32),
        var_poisson=(e**2).astype(np.float32), var_rnoise=np.zeros_like(e, dtype=np.float32),
        var_flat=np.zeros_like(e, dtype=np.float32),
    )
    model.meta.wcsinfo.dispersion_direction = 1
    model.meta.exposure.type = "NRS_IFU"
    PixelReplacement(model, algorithm="mingrad").replace()
    out = np.asarray(model.data, dtype=np.float64), np.asarray(model.err, dtype=np.float64)
    model.close()
    return out


def _process_all(scene, cfg, jwst_fit=None, flux=None, pixel_replace=False):
    """All processings of one scene: {(method, N): Processed}."""
    runs = {("standard", 1): M.run_standard(scene, flux)}
    fit = jwst_fit
    for n in cfg.oversamples:
        runs[("ours", n)] = M.run_ours(scene, n, flux=flux)
        if n > 1:
            if fit is None:
                fit = M.fit_jwst(scene, flux=flux)
            runs[("jwst", n)] = M.run_jwst(scene, n, fit)
        else:
            runs[("jwst", 1)] = M.run_jwst(scene, 1, None)
    if pixel_replace:
        for key, p in runs.items():
            p.flux, p.err = pixel_replace_mingrad(p.flux, p.err, p.regions)
    return runs, fit


def _ideal(scene, n, edges):
    reg, al = scene.oversampled_alpha(n)
    return drizzle_slices(scene.truth_oversampled(n), al, reg, scene.geometry.row_height / n, edges=edges).flux


def point_source_metrics(cfg=DEFAULT_CONFIG, keep=False):
    """
    Artifact amplitude, truth deviation and aperture flux on the isolated point source.

    Runs every method on the noisy image and on the noise-free image (same errors), so
    the artifact amplitude can be separated from noise. The noise floor is the measure
    applied to the truth cube plus the standard cube's noise.

    Returns
    -------
    dict
        ``rows``: list of dicts (method, N, half-amplitude / RMS noisy and noise-free,
        truth deviation, aperture ratio vs standard and truth); ``noise_floor``;
        ``ideal``: {N: half-amplitude of a perfect reconstruction}; with ``keep`` also
        the cubes and scene for figures.
    """
    t0 = time.perf_counter()
    scene = cfg.scene("point_source")
    runs, fit = _process_all(scene, cfg)
    nf_runs, _ = _process_all(scene, cfg, flux=scene.truth_native)
    std = cube_of(runs[("standard", 1)])
    edges = np.append(std.centres - 0.05, std.centres[-1] + 0.05)
    truth = truth_cube(scene, std.centres)
    spax = Q.brightest_spaxels(truth, 20)
    box = Q.aperture_box(truth)
    t_ap, _ = Q.aperture_spectrum(truth, box)
    s_ap, _ = Q.aperture_spectrum(std.flux, box)
    noise = std.flux - cube_of(nf_runs[("standard", 1)]).flux
    floor = Q.artifact_amplitude(truth + noise, spax, t_ap + Q.aperture_spectrum(noise, box)[0])
    rows, cubes = [], {}
    for key in sorted(runs, key=lambda k: (k[1], k[0])):
        c = cube_of(runs[key], edges)
        cnf = cube_of(nf_runs[key], edges)
        ap, _ = Q.aperture_spectrum(c.flux, box)
        apnf, _ = Q.aperture_spectrum(cnf.flux, box)
        a = Q.artifact_amplitude(c.flux, spax, ap)
        anf = Q.artifact_amplitude(cnf.flux, spax, apnf)
        dev = Q.truth_deviation(cnf.flux, truth, spax)
        with np.errstate(divide="ignore", invalid="ignore"):
            r_std = ap / s_ap
            r_truth = apnf / t_ap
        rows.append({
            "method": key[0], "N": key[1],
            "half_amp": a.median_half_amplitude, "rms": a.median_rms,
            "half_amp_noisefree": anf.median_half_amplitude, "rms_noisefree": anf.median_rms,
            "truth_rms": dev["median_rms"], "truth_bias": dev["median_bias"],
            "ap_vs_standard": float(np.nanmedian(r_std)),
            "ap_vs_standard_p95": float(np.nanpercentile(np.abs(r_std - 1), 95)),
            "ap_vs_truth": float(np.nanmedian(r_truth)),
            "ap_vs_truth_p95": float(np.nanpercentile(np.abs(r_truth - 1), 95)),
            "seconds": runs[key].seconds,
        })
        cubes[key] = c
    ideal = {n: Q.artifact_amplitude(_ideal(scene, n, edges), spax, t_ap).median_half_amplitude
             for n in cfg.oversamples}
    out = {"rows": rows, "noise_floor": floor.median_half_amplitude, "noise_floor_rms": floor.median_rms,
           "ideal": ideal, "spaxels": spax, "box": box, "jwst_fit_seconds": fit["seconds"] if fit else None}
    if keep:
        out.update(scene=scene, runs=runs, cubes=cubes, truth=truth, truth_aperture=t_ap)
    log.info("point source metrics in %.0f s", time.perf_counter() - t0)
    return out


def nebula_metrics(cfg=DEFAULT_CONFIG, min_distance=0.5):
    """
    Emission-line flux of the field-filling nebula away from the star, method / truth.

    Spaxels whose centre is more than ``min_distance`` arcsec from the star (in alpha and
    beta) are measured; line fluxes use a +-4 column window and a linear continuum from
    4 columns on each side (:func:`measures.line_fluxes`).

    Returns
    -------
    dict
        ``rows``: method, N, median and 5-95 % range of the per-spaxel, per-line ratio,
        and the artifact half-amplitude of the star's brightest spaxels in this scene.
    """
    scene = cfg.scene("nebula")
    runs, _ = _process_all(scene, cfg)
    std = cube_of(runs[("standard", 1)])
    edges = np.append(std.centres - 0.05, std.centres[-1] + 0.05)
    truth = truth_cube(scene, std.centres)
    star = scene.sources[0]
    da = np.abs(std.centres - star.alpha)[None, :]
    db = np.abs(scene.beta - star.beta)[:, None]
    far = (np.hypot(da, db) > min_distance) & np.isfinite(truth[:, :, 0])
    lam = scene.column_wavelength
    centres = [np.interp(ln.center, lam, np.arange(lam.size)) for ln in scene.nebula.spectrum.lines]
    idx = np.argwhere(far)
    tl = np.array([Q.line_fluxes(truth[i, k], centres, 4) for i, k in idx])
    spax = Q.brightest_spaxels(truth, 20)
    box = Q.aperture_box(truth)
    rows = []
    for key in sorted(runs, key=lambda k: (k[1], k[0])):
        c = cube_of(runs[key], edges)
        ml = np.array([Q.line_fluxes(c.flux[i, k], centres, 4) for i, k in idx])
        ratio = (ml / tl).ravel()
        ratio = ratio[np.isfinite(ratio)]
        ap, _ = Q.aperture_spectrum(c.flux, box)
        a = Q.artifact_amplitude(c.flux, spax, ap)
        rows.append({"method": key[0], "N": key[1], "line_ratio": float(np.median(ratio)),
                     "line_p5": float(np.percentile(ratio, 5)), "line_p95": float(np.percentile(ratio, 95)),
                     "n": int(ratio.size), "half_amp": a.median_half_amplitude})
    return {"rows": rows, "n_spaxels": int(len(idx))}


def two_sources_metrics(cfg=DEFAULT_CONFIG):
    """
    Two close sources with different spectra: each source's peak spaxel against truth.

    For each source the spaxel where its own truth is brightest is taken, and the
    method's spectrum there is compared with the truth cube (both sources): RMS of
    ``cube / truth - 1`` (noise-free input, so artifacts only) and the same for the
    noisy input.

    Returns
    -------
    dict
        ``rows``: method, N, per-source RMS (noise-free and noisy).
    """
    scene = cfg.scene("two_sources")
    runs, fit = _process_all(scene, cfg)
    nf_runs, _ = _process_all(scene, cfg, flux=scene.truth_native)
    std = cube_of(runs[("standard", 1)])
    edges = np.append(std.centres - 0.05, std.centres[-1] + 0.05)
    truth = truth_cube(scene, std.centres)
    peaks = [Q.brightest_spaxels(truth_cube(scene, std.centres, part=k), 1)[0] for k in range(2)]
    rows = []
    for key in sorted(runs, key=lambda k: (k[1], k[0])):
        c = cube_of(runs[key], edges)
        cnf = cube_of(nf_runs[key], edges)
        row = {"method": key[0], "N": key[1]}
        for j, (i, k) in enumerate(peaks):
            row[f"src{j}_rms_noisefree"] = Q.truth_deviation(cnf.flux, truth, [(i, k)])["median_rms"]
            row[f"src{j}_rms"] = Q.truth_deviation(c.flux, truth, [(i, k)])["median_rms"]
        rows.append(row)
    return {"rows": rows, "peaks": peaks, "names": [s.name for s in scene.sources]}


def bad_pixel_metrics(cfg=DEFAULT_CONFIG, oversample=3):
    """
    Dip depth at bad-pixel clusters on the trace.

    Compared: standard (NaN pixels simply carry no weight in the drizzle), jwst's
    ``pixel_replace`` (mingrad) alone, and ATM (ours, jwst's) at ``oversample``
    followed by ``pixel_replace`` as in the pipeline. The dip depth is
    ``1 - cube / truth`` at the cluster columns in the spaxels of the affected slice
    that hold the trace (the 3 brightest of that slice), worst case and median.

    Returns
    -------
    dict
        ``rows``: processing name, worst and median dip (fractional; negative = bump).
    """
    scene = cfg.scene("bad_pixels")
    std = M.run_standard(scene)
    cstd = cube_of(std)
    edges = np.append(cstd.centres - 0.05, cstd.centres[-1] + 0.05)
    truth = truth_cube(scene, cstd.centres)
    bad_rows, bad_cols = np.nonzero(scene.bad_pixel_mask)
    s_bad = int(np.unique(scene.regions[bad_rows, bad_cols])[0])
    i = list(cstd.region_ids).index(s_bad)
    with np.errstate(invalid="ignore"):
        med = np.nanmedian(truth[i], axis=1)
    ks = np.argsort(np.nan_to_num(med, nan=-np.inf))[::-1][:3]
    cols = np.unique(bad_cols)

    def dips(cube):
        d = 1.0 - cube[i][np.ix_(ks, cols)] / truth[i][np.ix_(ks, cols)]
        return float(np.nanmax(d)), float(np.nanmedian(d))

    rows = []
    rows.append(("standard (NaN, no replacement)", *dips(cstd.flux)))
    f_pr, _ = pixel_replace_mingrad(scene.flux, scene.err, scene.regions)
    rows.append(("pixel_replace (mingrad) alone", *dips(cube_of(M.run_standard(scene, f_pr), edges).flux)))
    p = M.run_ours(scene, oversample)
    p.flux, p.err = pixel_replace_mingrad(p.flux, p.err, p.regions)
    rows.append((f"ours N={oversample} + pixel_replace", *dips(cube_of(p, edges).flux)))
    fit = M.fit_jwst(scene)
    pj = M.run_jwst(scene, oversample, fit)
    pj.flux, pj.err = pixel_replace_mingrad(pj.flux, pj.err, pj.regions)
    rows.append((f"jwst N={oversample} + pixel_replace", *dips(cube_of(pj, edges).flux)))
    return {"rows": [{"processing": r[0], "worst_dip": r[1], "median_dip": r[2]} for r in rows],
            "n_clusters": int(cols.size // 3), "slice": s_bad}


def error_metrics(cfg=DEFAULT_CONFIG, include_jwst=True):
    """
    Reported SNR of the aperture spectrum at each N, and true scatter vs reported error.

    The true scatter is measured from ``cfg.n_realisations`` noise realisations of the
    point source: the spread of the aperture spectrum around the same method applied
    to the noise-free image (so systematic artifacts do not count as noise), pooled
    over columns. For jwst only the first realisation is used (its fit takes ~1 min).

    Returns
    -------
    dict
        ``rows``: method, N, median reported SNR, SNR ratio to N=1, median reported
        error, true scatter, their ratio.
    """
    base = cfg.scene("point_source")
    std = cube_of(M.run_standard(base))
    truth = truth_cube(base, std.centres)
    box = Q.aperture_box(truth)
    edges = np.append(std.centres - 0.05, std.centres[-1] + 0.05)
    rows = []
    methods = ["standard", "ours"] + (["jwst"] if include_jwst else [])
    nf = {}
    jfit_nf = M.fit_jwst(base, flux=base.truth_native) if include_jwst else None
    jfits = {}
    for m in methods:
        for n in (cfg.oversamples if m != "standard" else (1,)):
            devs, snrs, errs = [], [], []
            nreal = 1 if m == "jwst" else cfg.n_realisations
            for r in range(nreal):
                sc = base if r == 0 else cfg.scene("point_source", seed=cfg.seed + 100 + r)
                if m == "standard":
                    p, q = M.run_standard(sc), M.run_standard(sc, sc.truth_native)
                elif m == "ours":
                    p = M.run_ours(sc, n)
                    q = nf.get(n) or M.run_ours(sc, n, flux=sc.truth_native)
                    nf[n] = q
                else:
                    if r not in jfits:
                        jfits[r] = M.fit_jwst(sc)
                    p = M.run_jwst(sc, n, jfits[r])
                    q = M.run_jwst(sc, n, jfit_nf) if n > 1 else M.run_standard(sc, sc.truth_native)
                c = cube_of(p, edges)
                ap, ape = Q.aperture_spectrum(c.flux, box, c.err)
                ref, _ = Q.aperture_spectrum(cube_of(q, edges).flux, box)
                devs.append(ap - ref)
                snrs.append(np.nanmedian(ap / ape))
                errs.append(np.nanmedian(ape))
            dev = np.concatenate(devs)
            scatter = float(np.nanstd(dev[2:-2] if len(devs) == 1 else dev))
            rows.append({"method": m, "N": n, "snr": float(np.mean(snrs)), "reported_err": float(np.mean(errs)),
                         "true_scatter": scatter, "n_real": nreal})
    for row in rows:
        ref = next(r for r in rows if r["method"] == (row["method"] if row["method"] != "standard" else "standard") and r["N"] == 1)
        row["snr_vs_n1"] = row["snr"] / ref["snr"]
        row["err_vs_scatter"] = row["reported_err"] / row["true_scatter"]
    return {"rows": rows}
