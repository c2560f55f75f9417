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
    from atm_step.cli import factor, positive_int
    from atm_step.simulate import SCENES

    parser.add_argument("before", nargs="?", help="cal file before ATM (IFUImageModel or slit model)")
    parser.add_argument("after", nargs="?", help="the step's output for it (optional; N is read from it)")
    parser.add_argument("--out", default="atm_qa", help="output folder for the PNG files")
    parser.add_argument("--oversample", type=factor, default=None,
                        help="N (default: read from AFTER, else 3)")
    parser.add_argument("--columns", type=int, nargs="+", default=None,
                        help="columns (core orientation: along the dispersion) for the profile panels")
    parser.add_argument("--regions", type=int, nargs="+", default=None,
                        help="slice (region) ids for the profile panels (default: the most extended bands)")
    parser.add_argument("--cubes", nargs=2, metavar=("BEFORE_S3D", "AFTER_S3D"), default=None,
                        help="cubes built from before/after, for the brightest-spaxel spectra figure")
    parser.add_argument("--simulate", default=None, metavar="SCENE", choices=SCENES,
                        help=f"instead of files, run the core on a simulated scene: {', '.join(SCENES)}")
    parser.add_argument("--nx", type=positive_int, default=400,
                        help="columns of the simulated scene (with --simulate)")
    return parser


def _panels(result, nx, regions=None, columns=None):
    if regions is None:
        fitted = result.region_ids[result.fitted]
        if fitted.size == 0:
            fitted = result.region_ids
        order = np.argsort(-result.n_band_rows[np.isin(result.region_ids, fitted)])
        regions = [int(r) for r in fitted[order][:2]]
    else:
        unknown = sorted(set(int(r) for r in regions) - set(int(r) for r in result.region_ids))
        if unknown:
            raise ValueError(f"no region (slice) {unknown} in this image; it has "
                             f"{', '.join(str(int(r)) for r in result.region_ids)}")
    if columns is None:
        columns = [nx // 8, nx // 2, nx - 1 - nx // 8]
    outside = [c for c in columns if not 0 <= c < nx]
    if outside:
        raise ValueError(f"columns {outside} outside the image's 0..{nx - 1}")
    return [(r, c) for r in regions for c in columns]


def qa_for_arrays(out, flux, alpha, regions, result, *, alpha_os=None, prefix="atm", columns=None,
                  panel_regions=None, source=None, unit="slice"):
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
        File-name prefix: ``<prefix>_profiles.png``, ``<prefix>_model_map.png``.
    columns, panel_regions : list of int, optional
        Profile panels (default: 3 columns in the 2 regions with the widest bands).
    source : str, optional
        What the image is (a file name), shown in the figure titles.
    unit : str
        ``"slice"`` for IFU images (panels titled by slice number), or
        ``"slit <name>"`` for one slit.

    Returns
    -------
    list of str
        Paths written.

    Raises
    ------
    ValueError
        If a requested column or region is not in the image.
    """
    from atm_step.qa import plots

    panels = _panels(result, flux.shape[1], panel_regions, columns)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    what = source or prefix
    where = "" if unit == "slice" else f", {unit}"
    return [
        plots.profile_figure(out / f"{prefix}_profiles.png", flux, alpha, regions, result, panels,
                             alpha_os=alpha_os, title=f"{what}{where}\nalong-slice profiles",
                             unit=unit),
        plots.model_map_figure(out / f"{prefix}_model_map.png", result, regions,
                               title=f"{what}{where}\nwhere the spline model was used"),
    ]


def spectra_for_cubes(out, before, after, n_spaxels=20, box=6, prefix=None):
    """
    Figure-6-like spectra from two ``s3d`` cube files (before / after ATM).

    The brightest spaxels and the ``box x box`` aperture are chosen on ``before``.
    The PNG is ``<prefix>_spectra.png``; ``prefix`` defaults to ``before``'s name
    without ``.fits``.

    Parameters
    ----------
    out : str or Path
        Output folder.
    before, after : str or Path
        ``s3d`` cube files without and with ATM, on the same grid.
    n_spaxels : int
        Brightest spaxels shown.
    box : int
        Aperture side, spaxels.
    prefix : str, optional
        PNG name prefix.

    Returns
    -------
    str
        Path written.

    Raises
    ------
    ValueError
        If the two cubes differ in shape.
    """
    from stdatamodels.jwst import datamodels

    from atm_step.qa import plots
    from atm_step import measures as Q

    cubes, wave = [], None
    for f in (before, after):
        with datamodels.open(str(f)) as m:
            cubes.append(np.transpose(np.asarray(m.data, dtype=np.float64), (1, 2, 0)))
            if wave is None:
                try:
                    wave = m.meta.wcs(0, 0, np.arange(m.data.shape[0]))[2]
                except Exception as exc:  # noqa: BLE001 - the figure falls back to plane index
                    log.warning("%s: no wavelengths from its WCS (%s: %s); the spectra are "
                                "plotted against plane index", f, type(exc).__name__, exc)
                    wave = None
    if cubes[0].shape != cubes[1].shape:
        raise ValueError(f"cubes differ in shape: {cubes[0].shape} vs {cubes[1].shape}")
    spax = Q.brightest_spaxels(cubes[0], n_spaxels)
    ab = Q.aperture_box(cubes[0], box)
    aps = [Q.aperture_spectrum(c, ab)[0] for c in cubes]
    if prefix is None:
        prefix = Path(before).name.removesuffix(".gz").removesuffix(".fits")
    Path(out).mkdir(parents=True, exist_ok=True)
    return plots.spectra_figure(Path(out) / f"{prefix}_spectra.png", cubes, spax, aps, wavelength=wave,
                                labels=[f"before: {Path(before).name}", f"after: {Path(after).name}"],
                                title="brightest spaxels: spectra and their ratio to the aperture spectrum")


def _first_image(model):
    """The first 2-D science unit of a model: the model, or its first slit."""
    slits = getattr(model, "slits", None)
    return slits[0] if slits is not None and len(slits) else model


def oversample_from_files(before, after):
    """
    Oversampling factor N of a step output, read from the files.

    The step's output WCS starts with a ``coordinates`` frame whose transform to the
    detector scales the along-slice axis by ``1/N`` (``atm_step.modes.base.oversample_map``);
    N is read from that scale. Without that frame (an output written with
    ``oversample=1``, or by another program) N is the ratio of the image sizes along
    the longer-grown axis, as ``ceil(n * N)`` rows hold ``n * N`` within one row.

    Parameters
    ----------
    before, after : str or Path
        A cal file and the step's output for it (IFUImageModel, SlitModel or
        MultiSlitModel; for a MultiSlitModel its first slit is read).

    Returns
    -------
    float
        N (1.0 for an output that was not oversampled).
    """
    from astropy.modeling.models import Scale
    from stdatamodels.jwst import datamodels

    with datamodels.open(str(before)) as b, datamodels.open(str(after)) as a:
        unit_b, unit_a = _first_image(b), _first_image(a)
        wcs = getattr(unit_a.meta, "wcs", None)
        if wcs is not None and "coordinates" in wcs.available_frames:
            frames = wcs.available_frames
            step = wcs.get_transform("coordinates", frames[frames.index("coordinates") + 1])
            # a single model (the mock IFU WCS's identity, an output at N = 1) has no tree
            parts = step.traverse_postorder() if hasattr(step, "traverse_postorder") else [step]
            scales = [m for m in parts if isinstance(m, Scale)]
            if scales:
                return float(round(1.0 / float(scales[0].factor.value), 6))
        shape_b = np.shape(unit_b.data)[-2:]
        shape_a = np.shape(unit_a.data)[-2:]
    ratio = max(na / nb for na, nb in zip(shape_a, shape_b))
    return float(round(ratio, 2))


def _unit_label(adapter):
    """``slice`` for IFU images (one region per slice); ``slit <name>`` for slits."""
    from stdatamodels.jwst import datamodels

    if isinstance(adapter.model, datamodels.IFUImageModel):
        return "slice"
    return f"slit {getattr(adapter.model, 'name', None) or ''}".strip()


def qa_for_files(out, before, after=None, oversample=None, columns=None, panel_regions=None):
    """
    QA pictures for a cal file: the core is run on it in memory with the step's adapter.

    PNG names: ``<stem>_profiles.png`` and ``<stem>_model_map.png`` for an IFU image,
    ``<stem>_slit<name>_...`` for each slit of a slit model, where ``<stem>`` is the
    cal file's name without ``.fits``.

    Parameters
    ----------
    out : str or Path
        Output folder (created).
    before : str or Path
        Cal file before ATM.
    after : str or Path, optional
        The step's output; N is read from it (:func:`oversample_from_files`).
    oversample : float, optional
        N (default from ``after``, else 3).
    columns, panel_regions : list of int, optional
        Profile panels, as for :func:`qa_for_arrays`.

    Returns
    -------
    list of str
        Paths written.

    Raises
    ------
    atm_step.cli.UsageError
        If a file is missing, is not a JWST datamodel, or holds no data ATM can model.
    """
    from stdatamodels.jwst import datamodels

    from atm_step.cli import UsageError
    from atm_step.core import adaptive_trace_model
    from atm_step.input_files import InputFileError, check_input_file
    from atm_step.modes import UnsupportedModelError, adapters_for, check_model

    for f in (before, after):
        if f is not None:
            try:  # the step's checks: one message naming the file (missing, truncated...)
                check_input_file(f)
            except InputFileError as exc:
                raise UsageError(str(exc)) from None
    if oversample is None and after is not None:
        try:
            oversample = oversample_from_files(before, after)
        except (OSError, ValueError, TypeError) as exc:
            raise UsageError(f"cannot read {before} and {after} as JWST datamodels: {exc}") from exc
    oversample = 3.0 if oversample is None else float(oversample)
    try:
        model = datamodels.open(str(before))
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"cannot read {before} as a JWST datamodel: {exc}") from exc
    stem = Path(before).name
    for ext in (".fits.gz", ".fits", ".asdf"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
            break
    written = []
    with model:
        try:
            check_model(model, oversample)
            adapters = adapters_for(model)
        except UnsupportedModelError as exc:
            raise UsageError(str(exc)) from exc
        for ad in adapters:
            ci = ad.core_inputs(oversample)
            res = adaptive_trace_model(
                ci.flux, ci.alpha, ci.regions, err=ci.err, oversample=oversample, alpha_os=ci.alpha_os,
                channel_groups=ci.channel_groups, parameters=ci.parameters, pad=ci.pad,
            )
            unit = _unit_label(ad)
            prefix = stem if unit == "slice" else f"{stem}_{unit.replace(' ', '')}"
            written += qa_for_arrays(out, ci.flux, ci.alpha, ci.regions, res, alpha_os=ci.alpha_os,
                                     prefix=prefix, columns=columns, panel_regions=panel_regions,
                                     source=Path(before).name, unit=unit)
    return written


def run_from_args(args):
    """
    Run ``atm-step qa``; returns the exit status (0, or 2 for a usage error).

    Raises
    ------
    atm_step.cli.UsageError
        For a missing or unreadable file, reported by ``atm-step`` in one line.
    """
    from atm_step.cli import UsageError
    from atm_step.qa import require_matplotlib

    logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
    try:
        require_matplotlib()
    except ImportError as exc:
        raise UsageError(str(exc)) from exc
    if not (args.simulate or args.before or args.cubes):
        raise UsageError("give a cal file, --cubes BEFORE_S3D AFTER_S3D, or --simulate SCENE")
    written = []
    if args.simulate:
        from atm_step.core import FitParameters, adaptive_trace_model
        from atm_step.simulate import make_scene

        n = args.oversample or 3.0
        sc = make_scene(args.simulate, nx=args.nx, ny=None)
        reg_os, alpha_os = sc.oversampled_alpha(n)
        res = adaptive_trace_model(sc.flux, sc.alpha, sc.regions, err=sc.err, oversample=n, alpha_os=alpha_os,
                                   parameters=FitParameters.nirspec_ifu("NRS1"))
        try:
            written += qa_for_arrays(args.out, sc.flux, sc.alpha, sc.regions, res, alpha_os=alpha_os,
                                     prefix=args.simulate, columns=args.columns,
                                     panel_regions=args.regions,
                                     source=f"simulated scene {args.simulate!r}")
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    elif args.before:
        try:
            written += qa_for_files(args.out, args.before, args.after, args.oversample, args.columns,
                                    args.regions)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    if args.cubes:
        for f in args.cubes:
            if not Path(f).is_file():
                raise UsageError(f"no such file: {f}")
        try:
            written.append(spectra_for_cubes(args.out, *args.cubes))
        except (OSError, ValueError, TypeError) as exc:
            raise UsageError(f"cannot make spectra from {' and '.join(args.cubes)}: {exc}") from exc
    for w in written:
        print(w)
    return 0
