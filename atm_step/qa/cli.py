"""``atm-step qa``: QA pictures for a run of the step (or a pair of cal files).

Examples
--------
Pictures for a cal file (the step is run on it in memory, oversampled N times)::

    atm-step qa jw..._cal.fits --out qa/ --oversample 3

With the step's output as well (its oversampling factor is read from its shape) and the
two cubes built from before/after, for the Figure-6-like spectra::

    atm-step qa before_cal.fits after_cal.fits --cubes before_s3d.fits after_s3d.fits --out qa/

On a simulated scene (no files needed)::

    atm-step qa --simulate point_source --out qa/
"""

import logging
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "run_from_args", "qa_for_arrays", "qa_for_files", "spectra_for_cubes"]

log = logging.getLogger(__name__)


def add_arguments(parser):
    """Add the ``qa`` arguments to an argparse parser."""
    parser.add_argument("before", nargs="?", help="cal file before ATM (IFUImageModel or slit model)")
    parser.add_argument("after", nargs="?", help="the step's output for it (optional)")
    parser.add_argument("--out", default="atm_qa", help="output folder for the PNG files")
    parser.add_argument("--oversample", type=float, default=None, help="N (default: from AFTER, else 3)")
    parser.add_argument("--columns", type=int, nargs="+", default=None,
                        help="columns (core orientation: along the dispersion) for the profile panels")
    parser.add_argument("--regions", type=int, nargs="+", default=None,
                        help="region (slice) ids for the profile panels (default: the most extended bands)")
    parser.add_argument("--cubes", nargs=2, metavar=("BEFORE_S3D", "AFTER_S3D"), default=None,
                        help="cubes built from before/after, for the brightest-spaxel spectra figure")
    parser.add_argument("--simulate", default=None, metavar="SCENE",
                        help="instead of files, run the core on a simulated scene (atm_step.simulate)")
    parser.add_argument("--nx", type=int, default=400, help="columns of the simulated scene (with --simulate)")
    return parser


def _panels(result, nx, regions=None, columns=None):
    if regions is None:
        fitted = result.region_ids[result.fitted]
        if fitted.size == 0:
            fitted = result.region_ids
        order = np.argsort(-result.n_band_rows[np.isin(result.region_ids, fitted)])
        regions = [int(r) for r in fitted[order][:2]]
    if columns is None:
        columns = [nx // 8, nx // 2, nx - 1 - nx // 8]
    return [(r, c) for r in regions for c in columns]


def qa_for_arrays(out, flux, alpha, regions, result, *, alpha_os=None, prefix="atm", columns=None,
                  panel_regions=None):
    """
    Profile and model-map PNGs for one core run.

    Parameters
    ----------
    out : str or Path
        Output folder (created).
    flux, alpha, regions : ndarray, shape (ny, nx)
        The core's inputs (core orientation).
    result : ATMResult
    alpha_os : ndarray, optional
        Oversampled alpha, as given to the core.
    prefix : str
        File-name prefix.
    columns, panel_regions : list of int, optional
        Profile panels (default: 3 columns in the 2 regions with the widest bands).

    Returns
    -------
    list of str
        Paths written.
    """
    from atm_step.qa import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    panels = _panels(result, flux.shape[1], panel_regions, columns)
    return [
        plots.profile_figure(out / f"{prefix}_profiles.png", flux, alpha, regions, result, panels, alpha_os=alpha_os),
        plots.model_map_figure(out / f"{prefix}_model_map.png", result, regions),
    ]


def spectra_for_cubes(out, before, after, n_spaxels=20, box=6, prefix="atm"):
    """
    Figure-6-like spectra from two ``s3d`` cube files (before / after ATM).

    The brightest spaxels and the ``box x box`` aperture are chosen on ``before``.

    Returns
    -------
    str
        Path written.
    """
    from stdatamodels.jwst import datamodels

    from atm_step.qa import plots
    from atm_step.validation import measures as Q

    cubes, wave = [], None
    for f in (before, after):
        with datamodels.open(str(f)) as m:
            cubes.append(np.transpose(np.asarray(m.data, dtype=np.float64), (1, 2, 0)))
            if wave is None:
                try:
                    wave = m.meta.wcs(0, 0, np.arange(m.data.shape[0]))[2]
                except Exception:  # noqa: BLE001 - the figure falls back to plane index
                    wave = None
    if cubes[0].shape != cubes[1].shape:
        raise ValueError(f"cubes differ in shape: {cubes[0].shape} vs {cubes[1].shape}")
    spax = Q.brightest_spaxels(cubes[0], n_spaxels)
    ab = Q.aperture_box(cubes[0], box)
    aps = [Q.aperture_spectrum(c, ab)[0] for c in cubes]
    return plots.spectra_figure(Path(out) / f"{prefix}_spectra.png", cubes, spax, aps, wavelength=wave,
                                labels=["before", "after"])


def qa_for_files(out, before, after=None, oversample=None, columns=None, panel_regions=None):
    """
    QA pictures for a cal file: the core is run on it in memory with the step's adapter.

    Parameters
    ----------
    out : str or Path
    before : str or Path
        Cal file before ATM.
    after : str or Path, optional
        The step's output; only its shape is used (to read N).
    oversample : float, optional
        N (default from ``after``, else 3).

    Returns
    -------
    list of str
    """
    from stdatamodels.jwst import datamodels

    from atm_step.core import adaptive_trace_model
    from atm_step.modes import adapters_for

    model = datamodels.open(str(before))
    if oversample is None and after is not None:
        with datamodels.open(str(after)) as a:
            oversample = max(np.asarray(a.data).shape) / max(np.asarray(model.data).shape)
            oversample = float(round(oversample * 4) / 4) if oversample > 1.01 else None
        if oversample is None:
            oversample = 1.0
    oversample = 3.0 if oversample is None else float(oversample)
    written = []
    for k, ad in enumerate(adapters_for(model)):
        ci = ad.core_inputs(oversample)
        res = adaptive_trace_model(
            ci.flux, ci.alpha, ci.regions, err=ci.err, oversample=oversample, alpha_os=ci.alpha_os,
            channel_groups=ci.channel_groups, parameters=ci.parameters, pad=ci.pad,
        )
        written += qa_for_arrays(out, ci.flux, ci.alpha, ci.regions, res, alpha_os=ci.alpha_os,
                                 prefix=f"{Path(before).stem}_{k}", columns=columns, panel_regions=panel_regions)
    model.close()
    return written


def run_from_args(args):
    """Run ``atm-step qa``; returns the exit status."""
    from atm_step.qa import require_matplotlib

    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
    try:
        require_matplotlib()
    except ImportError as exc:
        print(exc)
        return 2
    written = []
    if args.simulate:
        from atm_step.core import FitParameters, adaptive_trace_model
        from atm_step.simulate import make_scene

        n = args.oversample or 3.0
        sc = make_scene(args.simulate, nx=args.nx, ny=None)
        reg_os, alpha_os = sc.oversampled_alpha(n)
        res = adaptive_trace_model(sc.flux, sc.alpha, sc.regions, err=sc.err, oversample=n, alpha_os=alpha_os,
                                   parameters=FitParameters.nirspec_ifu("NRS1"))
        written += qa_for_arrays(args.out, sc.flux, sc.alpha, sc.regions, res, alpha_os=alpha_os,
                                 prefix=args.simulate, columns=args.columns, panel_regions=args.regions)
    elif args.before:
        written += qa_for_files(args.out, args.before, args.after, args.oversample, args.columns, args.regions)
    elif not args.cubes:
        print("atm-step qa: give a cal file, --cubes, or --simulate SCENE")
        return 2
    if args.cubes:
        written.append(spectra_for_cubes(args.out, *args.cubes))
    for w in written:
        print(w)
    return 0
