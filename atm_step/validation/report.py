"""Regenerate ``docs/validation.md`` and its figures (``python -m atm_step.validation``)."""

import json
import logging
import time
from pathlib import Path

import numpy as np

from atm_step.validation import nirspec as V

__all__ = ["generate", "grid_section", "miri_section", "render_markdown", "commit_stamp", "write_text_atomic", "json_default"]

log = logging.getLogger(__name__)


_GENERATED = ("docs/validation.md", "docs/validation.json", "docs/figures", "docs/validation_miri.md",
              "docs/validation_miri.json", "docs/validation_miri_ch12.md", "docs/validation_miri_ch12.json")


def commit_stamp(command):
    """
    Where the numbers come from: commit, dirty flag, command, versions, date.

    Parameters
    ----------
    command : str
        The command line that produced the report.

    Returns
    -------
    dict
        ``describe`` (``git describe --always --tags``, ``-dirty`` added when ``dirty``),
        ``commit`` (full id),
        ``dirty`` (uncommitted changes outside the generated report files), ``command``,
        ``date`` (UTC), ``atm_step``, ``jwst`` and ``numpy`` versions. Git fields are
        ``"unknown"`` outside a git checkout.
    """
    import datetime
    import subprocess

    import atm_step

    repo = Path(atm_step.__file__).resolve().parents[1]

    def git(*a):
        try:
            r = subprocess.run(["git", "-C", str(repo), *a], capture_output=True, text=True, timeout=30,
                               check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    status = git("status", "--porcelain", "--", ".", *(f":(exclude){g}" for g in _GENERATED))
    describe = git("describe", "--always", "--tags") or "unknown"
    if status:  # git's own --dirty would also count the reports being regenerated
        describe += "-dirty"
    try:
        import jwst

        jv = jwst.__version__
    except ImportError:
        jv = None
    return {
        "describe": describe,
        "commit": git("rev-parse", "HEAD") or "unknown",
        "dirty": None if status is None else bool(status),
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "atm_step": getattr(atm_step, "__version__", "unknown"),
        "jwst": jv,
        "numpy": np.__version__,
    }


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` atomically (`atm_step.atomic.atomic_write`)."""
    from atm_step.atomic import atomic_write

    atomic_write(path, lambda fh: fh.write(text))


def _pct(v, nd=2):
    return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.{nd}f}%"


def _figures(ps, figdir):
    from atm_step.qa import plots

    figs = {}
    runs, cubes, scene = ps["runs"], ps["cubes"], ps["scene"]
    keys = [("standard", 1), ("ours", 3), ("jwst", 3)]
    aps = [np.nansum(cubes[k].flux[ps["box"][0], ps["box"][1], :], axis=(0, 1)) for k in keys]
    figs["spectra"] = plots.spectra_figure(
        figdir / "point_source_spectra.png", [cubes[k].flux for k in keys], ps["spaxels"], aps,
        wavelength=scene.column_wavelength, labels=["standard", "ours N=3", "jwst N=3"],
        title="Brightest spaxels (paper Fig. 6): spectra and ratio to the 0.6\" aperture spectrum")
    res = runs[("ours", 3)].extra["result"]
    fitted = res.region_ids[res.fitted]
    order = np.argsort(-res.n_band_rows[res.fitted])
    best = [int(r) for r in fitted[order][:3]]
    nx = scene.shape[1]
    panels = [(best[0], c) for c in (nx // 8, nx // 2, nx - nx // 8)] + [(r, nx // 2) for r in best[1:3]]
    figs["profile"] = plots.profile_figure(
        figdir / "point_source_profiles.png", scene.flux, scene.alpha, scene.regions, res, panels,
        alpha_os=runs[("ours", 3)].alpha, title="Normalised along-slice profiles and spline fits (paper Fig. 3)")
    figs["map"] = plots.model_map_figure(figdir / "point_source_model_map.png", res, scene.regions)
    return figs


def grid_section(out_dir="docs", cases=None, grid_kw=None, command="python -m atm_step.validation --only-grid"):
    """
    Re-run only the sharp-PSF grid and re-render ``validation.md`` from the stored numbers.

    The other sections' numbers are read from ``<out_dir>/validation.json`` and kept;
    the grid entry is replaced and carries its own commit stamp (shown in its section).

    Parameters
    ----------
    out_dir : str or Path
        Folder holding ``validation.json``.
    cases : list of atm_step.validation.grid.Case, optional
        Default :func:`grid.full_cases`.
    grid_kw : dict, optional
        Keyword arguments of :func:`grid.run_grid`.
    command : str
        Command line recorded in the grid's stamp.

    Returns
    -------
    dict
        All numbers (also written as JSON).

    Raises
    ------
    FileNotFoundError
        If ``<out_dir>/validation.json`` does not exist (run the full command first).
    """
    from atm_step.validation import grid as G

    out = Path(out_dir)
    js = out / "validation.json"
    if not js.exists():
        raise FileNotFoundError(f"{js} not found: run `python -m atm_step.validation --out {out_dir}` first")
    results = json.loads(js.read_text())
    results["grid"] = G.run_grid(G.full_cases() if cases is None else cases, **(grid_kw or {}))
    results["grid"]["stamp"] = commit_stamp(command)
    write_text_atomic(js, json.dumps(results, indent=1, default=json_default))
    write_text_atomic(out / "validation.md", render_markdown(results))
    return results


def miri_section(out_dir="docs", data_dir=None, workdir=None, cfg=None):
    """
    Run only the MIRI MRS measure and re-render ``validation.md`` from the stored numbers.

    The NIRSpec numbers are read from ``<out_dir>/validation.json`` (written by
    :func:`generate`) and left as they are; the ``miri`` entry is replaced.

    Parameters
    ----------
    out_dir : str or Path
        Folder holding ``validation.json``.
    data_dir : str or Path, optional
        Shared data folder (default ``$ATM_STEP_TEST_DATA`` or ``<repo>/../shared/data``).
    workdir : str or Path, optional
        Scratch folder (default a temporary folder).
    cfg : atm_step.validation.miri.MiriConfig, optional
        MIRI settings.

    Returns
    -------
    dict
        All numbers (also written as JSON).
    """
    out = Path(out_dir)
    results = json.loads((out / "validation.json").read_text())
    results["miri"] = _miri_metrics(data_dir, workdir, cfg)
    results["miri"]["stamp"] = commit_stamp(f"python -m atm_step.validation --only-miri --out {out_dir}")
    write_text_atomic(out / "validation.json", json.dumps(results, indent=1, default=json_default))
    write_text_atomic(out / "validation.md", render_markdown(results))
    return results


def stamp_sentence(stamp, seconds, note=""):
    """
    The "Generated by ... at commit ..." line that opens a generated report.

    Parameters
    ----------
    stamp : dict
        From :func:`commit_stamp`.
    seconds : float
        Run time of the report, s.
    note : str, optional
        Text added after the run time (e.g. where cached results were used).

    Returns
    -------
    str
        One markdown paragraph, ending in a blank line.
    """
    return (f"Generated by `{stamp['command']}` (do not edit by hand) at commit `{stamp['describe']}` "
            f"({stamp['commit']}" + (", **uncommitted changes**" if stamp.get("dirty") else "")
            + f"), {stamp['date']}; jwst {stamp.get('jwst')}, numpy {stamp.get('numpy')}. "
            f"Run time {seconds:.0f} s{note}.\n")


def write_stamped_report(out_dir, stem, res, command, render):
    """
    Write ``<out_dir>/<stem>.json`` (``res`` with the commit stamp) and ``<stem>.md``
    (``render(res, stamp)``), each atomically.

    Parameters
    ----------
    out_dir : str or Path
        Created if missing.
    stem : str
        File name without extension.
    res : dict
        The numbers (JSON-serialisable through :func:`json_default`).
    command : str
        Command line for the stamp (:func:`commit_stamp`).
    render : callable
        ``render(res, stamp) -> str``, the markdown.

    Returns
    -------
    Path
        The markdown file.
    """
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = commit_stamp(command)
    write_text_atomic(out / f"{stem}.json", json.dumps({**res, "stamp": stamp}, indent=1, default=json_default))
    path = out / f"{stem}.md"
    write_text_atomic(path, render(res, stamp))
    return path


def json_default(o):
    """``json.dumps`` helper for NumPy scalars and arrays."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


_json_default = json_default


def _default_data_dir():
    import os

    return Path(os.environ.get("ATM_STEP_TEST_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def _miri_metrics(data_dir=None, workdir=None, cfg=None):
    """MIRI MRS point-source numbers, or ``{'failed': ...}``."""
    import tempfile

    from atm_step.validation import miri

    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="atm_miri_") as tmp:
            res = miri.point_source_metrics(data_dir or _default_data_dir(), workdir or tmp,
                                            cfg or miri.DEFAULT_CONFIG)
    except Exception as exc:  # noqa: BLE001 - a failed section must not lose the others
        log.exception("validation section miri failed")
        return {"failed": f"{type(exc).__name__}: {exc}"}
    res["seconds"] = time.perf_counter() - t0
    return res


def generate(out_dir="docs", cfg=V.DEFAULT_CONFIG, figures=True, miri=True, legacy=True, grid_cases=None,
             grid_kw=None, command="python -m atm_step.validation --out docs"):
    """
    Run every validation measure and write ``validation.md``, ``validation.json`` and figures.

    Parameters
    ----------
    out_dir : str or Path
        Folder for ``validation.md`` (figures go to ``<out_dir>/figures``).
    cfg : SceneConfig
        Simulator settings.
    figures : bool
        Write the PNG figures (needs matplotlib).
    miri : bool
        Also run the MIRI MRS section (real geometry, jwst cube_build).
    legacy : bool
        Also run the G395H-like blurred-PSF sections (point source, nebula, two
        sources, bad pixels, errors).
    grid_cases : list of atm_step.validation.grid.Case, optional
        Cases of the sharp-PSF grid (default :func:`grid.full_cases`).
    grid_kw : dict, optional
        Keyword arguments of :func:`grid.run_grid` (``jwst``, ``jwst_compute``, ``cache``).
    command : str
        Command line recorded in the commit stamp.

    Returns
    -------
    dict
        All numbers (also written as JSON).
    """
    from atm_step.validation import grid as G

    out = Path(out_dir)
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = {"stamp": commit_stamp(command)}
    results["grid"] = G.run_grid(G.full_cases() if grid_cases is None else grid_cases, **(grid_kw or {}))
    if legacy:
        results["config"] = {k: getattr(cfg, k) for k in ("nx", "noise", "wave_range", "jitter_fwhm", "seed",
                                                            "n_realisations", "oversamples")}
        ps = V.point_source_metrics(cfg, keep=figures)
        if figures:
            results["figures"] = {k: str(Path(v).relative_to(out)) for k, v in _figures(ps, figdir).items()}
        results["point_source"] = {k: ps[k] for k in ("rows", "noise_floor", "noise_floor_rms", "ideal",
                                                      "jwst_fit_seconds")}
        for name, fn in (("nebula", V.nebula_metrics), ("two_sources", V.two_sources_metrics),
                         ("bad_pixels", V.bad_pixel_metrics), ("errors", V.error_metrics)):
            try:
                results[name] = fn(cfg)
            except Exception as exc:  # noqa: BLE001 - one failed section must not lose the others
                log.exception("validation section %s failed", name)
                results[name] = {"failed": f"{type(exc).__name__}: {exc}"}
    if miri:
        results["miri"] = _miri_metrics()
    results["seconds"] = time.perf_counter() - t0
    write_text_atomic(out / "validation.json", json.dumps(results, indent=1, default=json_default))
    write_text_atomic(out / "validation.md", render_markdown(results))
    log.info("validation written to %s in %.0f s", out, results["seconds"])
    return results


def render_markdown(r):
    """The ``validation.md`` text for the numbers of :func:`generate`."""
    from atm_step.validation import grid as G

    L = []
    w = L.append
    w("# Validation: resampling artifacts, flux, lines and errors\n")
    st = r.get("stamp", {})
    w(f"Generated by `{st.get('command', 'python -m atm_step.validation --out docs')}` (do not edit by hand) at "
      f"commit `{st.get('describe', 'unknown')}` ({st.get('commit', 'unknown')}"
      + (", **uncommitted changes**" if st.get("dirty") else "") + f"), {st.get('date', '')}; "
      f"jwst {st.get('jwst', '-')}, numpy {st.get('numpy', '-')}. Run time {r['seconds']:.0f} s. "
      "Subsets: `python -m atm_step.validation --quick` or `--scene NAME --fwhm PX --n N` (see `--help`).\n")
    if "grid" in r:
        G.render_markdown(r["grid"], w)
        if "stamp" in r["grid"]:
            gs = r["grid"]["stamp"]
            w(f"Grid numbers re-run separately: `{gs['command']}` at commit `{gs['describe']}` ({gs['commit']}), "
              f"{gs['date']}.\n")
    if "point_source" in r:
        _render_legacy(r, w)
    if "miri" in r:
        _render_miri(r["miri"], w)
    else:
        w("- MIRI MRS through jwst's cube_build is not part of this run (see the report of the validation issue).")
    return "\n".join(L) + "\n"


def _render_legacy(r, w):
    """Append the G395H-like blurred-PSF sections 1-5 via ``w``."""
    c = r["config"]
    ps = r["point_source"]
    w("# G395H-like blurred PSF: sections 1-5\n")
    w("## Set-up\n")
    w(f"- Scenes: `atm_step.simulate.make_scene(name, nx={c['nx']}, ny=None, noise={c['noise']}, "
      f"seed={c['seed']}, wave_range={tuple(c['wave_range'])}, jitter_fwhm={c['jitter_fwhm']})`: a "
      f"{c['nx']}-column piece of a G395H-like band (Airy PSF of the 6.5 m aperture blurred by a "
      f"{c['jitter_fwhm']}\" Gaussian, so the PSF core is ~0.13\" as in flight), 30 slices of 30 rows, "
      "0.1\" pixels, NRS1 trace tilt (a pixel-phase cycle every 80 columns).")
    w("- Methods, on the same arrays: **standard** (native image); **ours** "
      "(`atm_step.core.adaptive_trace_model`, preset `FitParameters.nirspec_ifu('NRS1')`); **jwst** "
      "(jwst 3.0 `trace_model.fit_all_regions` + `oversample_flux` + `linear_oversample`/`_inflate_error`, with "
      "`_set_fit_kwargs('NRS_IFU','NRS1',None,nx)`, `_set_oversample_kwargs`, and the threshold "
      "`fit_and_oversample` computes). At N = 1 both steps leave the flux unchanged (identical to standard). "
      "Both steps get the exact oversampled alpha of the simulator.")
    w("- Cube building: no NIRSpec IFU WCS exists offline, so `atm_step.validation.drizzle.drizzle_slices` "
      "stands in for cube_build: each pixel covers [alpha - d/2, alpha + d/2] (d = 0.1\"/N) and is spread "
      "onto regular 0.1\" spaxels along its slice by exact overlap (cube_build's normalisation "
      "sum(w f)/sum(w), variance sum(w² e²)/sum(w)²), per column and slice; one exposure, no dither. "
      "This is harsher than the paper's 4-point-dithered cubes: dithers average part of the artifacts away.")
    w("- Truth cube: the native-pixel-integrated truth averaged over each spaxel (what a perfect "
      "reconstruction at infinite N gives). **ideal N** is the drizzle of the exact truth on the "
      "N-oversampled grid: the floor any ATM can reach at that N with this cube building.")
    w("- Artifact measure (paper III.1): the 20 brightest spaxels (of the truth cube), each divided by the "
      "0.6\" x 0.6\" aperture-summed spectrum of the same cube, a cubic polynomial in wavelength divided out; "
      "half-amplitude = half the 5-95 percentile range, and RMS; medians over the 20 spaxels. "
      "*noise-free* columns run the same methods on the noise-free image (same error array), isolating "
      "artifacts from noise. The noise floor is the measure on truth + the standard cube's noise.\n")
    w("## 1. Isolated point source: artifact amplitude, truth deviation, aperture flux\n")
    w(f"Noise floor (half-amplitude / RMS): {_pct(ps['noise_floor'])} / {_pct(ps['noise_floor_rms'])}. "
      "Ideal-reconstruction floor of this cube building: "
      + ", ".join(f"N={k}: {_pct(v)}" for k, v in ps["ideal"].items()) + ".\n")
    w("| method | N | half-amp | RMS | half-amp noise-free | RMS noise-free | vs truth RMS (noise-free) | aperture / standard (median, p95 abs dev) | aperture / truth (noise-free; median, p95) | time (s) |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for x in ps["rows"]:
        w(f"| {x['method']} | {x['N']} | {_pct(x['half_amp'])} | {_pct(x['rms'])} | {_pct(x['half_amp_noisefree'])} | "
          f"{_pct(x['rms_noisefree'])} | {_pct(x['truth_rms'])} | {x['ap_vs_standard']:.4f} ({_pct(x['ap_vs_standard_p95'])}) | "
          f"{x['ap_vs_truth']:.4f} ({_pct(x['ap_vs_truth_p95'])}) | {x['seconds']:.1f} |")
    if ps.get("jwst_fit_seconds"):
        w(f"\njwst's spline fit (`fit_all_regions`) took {ps['jwst_fit_seconds']:.0f} s for this image; "
          "ours fits and oversamples in the time listed (after Numba compilation).\n")
    if "figures" in r:
        f = r["figures"]
        w(f"\n![brightest spaxels]({f['spectra']})\n")
        w(f"![profiles]({f['profile']})\n")
        w(f"![model map]({f['map']})\n")
    def failed(key):
        if "failed" in r[key]:
            w(f"\n**{key}: failed** ({r[key]['failed']})\n")
            return True
        return False

    neb = r["nebula"]
    if failed("nebula"):
        neb = {"rows": [], "n_spaxels": 0}
    w("## 2. Emission lines: star + field-filling nebula\n")
    w(f"Line flux (4 lines, ±4 columns, linear continuum) in the {neb['n_spaxels']} spaxels more than 0.5\" from "
      "the star, method / truth; and the star's artifact half-amplitude in this scene.\n")
    w("| method | N | line flux / truth (median) | 5-95% range | star half-amp |")
    w("|---|---|---|---|---|")
    for x in neb["rows"]:
        w(f"| {x['method']} | {x['N']} | {x['line_ratio']:.4f} | {x['line_p5']:.3f} - {x['line_p95']:.3f} | {_pct(x['half_amp'])} |")
    ts = r["two_sources"]
    if failed("two_sources"):
        ts = {"rows": [], "peaks": [(0, 0), (0, 0)], "names": ["source 0", "source 1"]}
    w("\n## 3. Two close sources with different spectra\n")
    w(f"Spaxel where each source's own truth peaks ({ts['names'][0]}: {tuple(ts['peaks'][0])}, "
      f"{ts['names'][1]}: {tuple(ts['peaks'][1])}); RMS of spaxel / truth - 1 over wavelength.\n")
    w(f"| method | N | {ts['names'][0]} noise-free | {ts['names'][0]} noisy | {ts['names'][1]} noise-free | {ts['names'][1]} noisy |")
    w("|---|---|---|---|---|---|")
    for x in ts["rows"]:
        w(f"| {x['method']} | {x['N']} | {_pct(x['src0_rms_noisefree'])} | {_pct(x['src0_rms'])} | "
          f"{_pct(x['src1_rms_noisefree'])} | {_pct(x['src1_rms'])} |")
    bp = r["bad_pixels"]
    if failed("bad_pixels"):
        bp = {"rows": [], "n_clusters": 0, "slice": 0}
    w("\n## 4. Bad-pixel clusters on the trace\n")
    w(f"{bp['n_clusters']} clusters of 3x3 NaN pixels on the trace peak of slice {bp['slice']}; dip = 1 - cube / truth "
      "in the 3 trace spaxels at the cluster columns (negative = excess). jwst's `pixel_replace` (mingrad) "
      "cannot fill a NaN whose neighbours along both axes are NaN, so it leaves 3x3 clusters alone.\n")
    w("| processing | worst dip | median dip |")
    w("|---|---|---|")
    for x in bp["rows"]:
        w(f"| {x['processing']} | {_pct(x['worst_dip'], 1)} | {_pct(x['median_dip'], 1)} |")
    er = r["errors"]
    if failed("errors"):
        er = {"rows": []}
    w("\n## 5. Errors\n")
    w("Reported SNR = median over wavelength of aperture flux / aperture error (spaxel errors in quadrature). "
      "True scatter = standard deviation of the aperture spectrum around the same method applied to the "
      "noise-free image, pooled over columns and noise realisations (jwst: one realisation).\n")
    w("| method | N | realisations | reported SNR | SNR / SNR(N=1) | reported error | true scatter | reported / true |")
    w("|---|---|---|---|---|---|---|---|")
    for x in er["rows"]:
        w(f"| {x['method']} | {x['N']} | {x['n_real']} | {x['snr']:.0f} | {x['snr_vs_n1']:.3f} | {x['reported_err']:.4g} | "
          f"{x['true_scatter']:.4g} | {x['err_vs_scatter']:.3f} |")
    w("\n## Notes\n")
    w("- Reported errors of drizzled cubes ignore the covariance between spaxels that share a pixel, so even the "
      "standard cube under-reports the aperture scatter; the paper's inflation (X = 0.23 N + 0.77) targets SNR "
      "conservation relative to N = 1, not the absolute scatter.")


def _render_miri(m, w):
    """Append the MIRI MRS section to the markdown lines via ``w``."""
    w("\n## 6. MIRI MRS (real geometry, jwst cube_build)\n")
    if "failed" in m:
        w(f"**miri: failed** ({m['failed']})\n")
        return
    c = m["config"]
    if "stamp" in m:
        ms = m["stamp"]
        w(f"MIRI numbers re-run separately: `{ms['command']}` at commit `{ms['describe']}` ({ms['commit']}), "
          f"{ms['date']}.\n")
    w("- Scene: `atm_step.validation.miri.point_source_metrics`: the MIRISim ch3/4 LONG (MIRIFULONG) level-2b "
      "shell with the flight distortion/specwcs/wavelengthrange and ground regions files "
      "(`miri_mrs/` in the data folder, `$ATM_STEP_TEST_DATA`), WCS from `jwst.assign_wcs.assign_wcs.load_wcs`. One bright, undersampled "
      f"Airy point source (6.5 m aperture, no jitter) at alpha, beta = ({c['alpha0']}, {c['beta0']})\", integrated "
      f"over each pixel along the slice, + 0.05 MJy/sr background, Gaussian noise sigma = {c['err']} MJy/sr "
      f"(peak SNR {m['peak_snr']:.0f}). **Single exposure, no dither.**")
    w("- Methods on the same image: **standard** (no ATM); **ours** (`atm_step.AdaptiveTraceModelStep.call(model, "
      "oversample=N)`); **jwst** (`jwst.adaptive_trace_model.AdaptiveTraceModelStep.call(model, oversample=N, "
      "skip=False)`), default parameters for both. Then jwst's `pixel_replace` and `cube_build` (channel 3, "
      f"`weighting='drizzle'`, {c['wave_range'][0]}-{c['wave_range'][1]} um, cubepar written by "
      "`miri.write_cubepar` with a `MULTICHANNEL_DRIZ` table), every cube on the standard cube's grid "
      f"({m['spaxel_arcsec']:.2f}\" spaxels, cube {m['cube_shape'][0]} x {m['cube_shape'][1]} spaxels x "
      f"{m['cube_shape'][2]} wavelengths).")
    w(f"- Measure: as section 1, on the {c['n_spaxels']} brightest spaxels of the noise-free standard cube, "
      f"aperture = the {m['box']} x {m['box']} spaxel box ({m['box_arcsec']:.1f}\") holding the most flux: the same "
      "number of spaxels as the 0.6\" NIRSpec box, ~2 PSF FWHM at 16-17.5 um. Noise floor: the measure on a cube "
      "with no artifacts (the noise-free standard aperture spectrum scaled to each spaxel) plus the standard "
      "cube's noise.\n")
    w(f"Noise floor (half-amplitude / RMS): {_pct(m['noise_floor'])} / {_pct(m['noise_floor_rms'])}.\n")
    w("| method | N | half-amp | RMS | half-amp noise-free | RMS noise-free | aperture / standard (median, p95 abs dev) | total aperture flux / standard | step time (s) |")
    w("|---|---|---|---|---|---|---|---|---|")
    for x in m["rows"]:
        w(f"| {x['method']} | {x['N']} | {_pct(x['half_amp'])} | {_pct(x['rms'])} | {_pct(x.get('half_amp_noisefree'))} | "
          f"{_pct(x.get('rms_noisefree'))} | {x['ap_vs_standard']:.4f} ({_pct(x['ap_vs_standard_p95'])}) | "
          f"{x['ap_total_vs_standard']:.4f} | {x['seconds']:.1f} |")
    w(f"\nMIRI section run time {m['seconds']:.0f} s (steps, pixel_replace and cube_build, noisy and noise-free).\n")
    w("Channels 3 and 4, point source / nebula / binary, with and without blur, on a common spaxel mask: "
      "[validation_miri.md](validation_miri.md) (section 6b, `python -m atm_step.validation --only-miri-matrix`). "
      "Channels 1 and 2 (band 12A, the sharpest PSF), against jwst and the ideal-oversampling floor, noisy over "
      "three noise seeds: [validation_miri_ch12.md](validation_miri_ch12.md) (section 6c, "
      "`python -m atm_step.validation --only-miri-ch12`).\n")
