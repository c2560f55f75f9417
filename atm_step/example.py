"""``atm-step example``: the main job on a bundled, simulated exposure.

It simulates a NIRSpec-IFU-like NRS1 exposure of an isolated star (no external data),
writes it as a ``_cal`` file with a mock IFU WCS, runs the real step on it from the
command line (``strun atm FILE --oversample=3``), and prints the resampling-artifact
figure before and after: the paper's measure (brightest-spaxel spectra divided by the
0.6" aperture spectrum, a cubic trend removed, median half-amplitude) on cubes built
by a 1-D drizzle along each slice (`atm_step.validation.drizzle`).
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["add_arguments", "run_from_args", "run_example"]


def add_arguments(parser):
    """Command-line options of ``atm-step example``."""
    from atm_step.cli import factor, positive_int

    parser.add_argument(
        "--output-dir", default="atm_example", help="folder for the files (default ./atm_example)"
    )
    parser.add_argument("--oversample", type=factor, default=3.0, help="oversampling factor N >= 1")
    parser.add_argument("--nx", type=positive_int, default=1024, help="detector columns to simulate")
    parser.add_argument("--seed", type=int, default=1, help="noise seed")


def _strun():
    """The ``strun`` of this Python (beside its executable), else the one on PATH."""
    beside = Path(sys.executable).with_name("strun")
    if beside.is_file():
        return str(beside)
    found = shutil.which("strun")
    if found is None:
        raise RuntimeError("strun not found: is stpipe installed in this Python?")
    return found


def _cube(flux, alpha, regions, pixel, edges):
    from atm_step.validation.drizzle import drizzle_slices

    return drizzle_slices(flux, alpha, regions, pixel, edges=edges).flux


def run_example(output_dir="atm_example", oversample=3.0, nx=1024, seed=1):
    """
    Simulate an exposure, run ``strun atm`` on it, and measure the artifacts.

    Parameters
    ----------
    output_dir : str or Path
        Folder receiving the simulated ``_cal`` file and the step's output.
    oversample : float
        Oversampling factor passed to the step.
    nx : int
        Number of detector columns simulated (the full detector has 2048).
    seed : int
        Noise seed.

    Returns
    -------
    dict
        ``input``, ``output`` (paths), ``before``, ``after`` (median artifact
        half-amplitude of the 20 brightest spaxels), ``flux_ratio`` (aperture flux,
        after / before), ``seconds`` (the step's wall time).

    Raises
    ------
    RuntimeError
        If ``strun`` fails; its output is included in the message.
    """
    from stdatamodels.jwst import datamodels

    from atm_step.atomic import atomic_save
    from atm_step.simulate import AiryPSF, make_scene
    from atm_step.simulate.to_datamodel import scene_to_ifu_model
    from atm_step.validation import measures
    from atm_step.validation.drizzle import spaxel_edges

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # a G395H-like stretch of spectrum, as in docs/validation.md: short enough that
    # the PSF's growth with wavelength stays within the measure's cubic trend
    wave_range = (2.9, 3.35)
    psf = AiryPSF(jitter_fwhm=0.08, wavelength_range=wave_range)
    scene = make_scene(
        "point_source", nx=nx, ny=None, noise=0.01, seed=seed, psf=psf, wave_range=wave_range
    )
    cal = out / "atm_example_nrs1_cal.fits"
    model = scene_to_ifu_model(scene, filename=cal.name)
    atomic_save(model, cal)  # a stopped run leaves no truncated file
    model.close()
    print(f"Simulated {cal} ({scene.flux.shape[1]} columns, 30 slices, isolated star)")

    env = dict(os.environ, STPIPE_DISABLE_CRDS_STEPPARS="True")
    cmd = [_strun(), "atm", str(cal), f"--oversample={oversample}", f"--output_dir={out}"]
    print("Running: strun", " ".join(cmd[1:]))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"strun failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    outputs = sorted(out.glob("atm_example_nrs1_*.fits"))
    result = [p for p in outputs if p != cal]
    if not result:
        raise RuntimeError(f"strun wrote no output in {out}: {[p.name for p in outputs]}")
    result = result[0]

    with datamodels.open(result) as after:
        flux_os = np.array(after.data, dtype=np.float64)
    regions_os, alpha_os = scene.oversampled_alpha(oversample)
    edges = spaxel_edges(np.nanmin(scene.alpha), np.nanmax(scene.alpha))
    before = _cube(scene.flux, scene.alpha, scene.regions, 0.1, edges)
    after_cube = _cube(flux_os, alpha_os, regions_os, 0.1 / oversample, edges)
    spaxels = measures.brightest_spaxels(before, n=20)
    box = measures.aperture_box(before, size=6)
    ap_before, _ = measures.aperture_spectrum(before, box)
    ap_after, _ = measures.aperture_spectrum(after_cube, box)
    amp_before = measures.artifact_amplitude(before, spaxels, ap_before).median_half_amplitude
    amp_after = measures.artifact_amplitude(after_cube, spaxels, ap_after).median_half_amplitude
    ratio = float(np.nanmedian(ap_after / ap_before))
    print()
    print("Resampling artifacts in the 20 brightest spaxels (median half-amplitude):")
    print(f"  standard (native pixels)      {100 * amp_before:6.2f} %")
    print(f"  ATM, oversample={oversample:g}            {100 * amp_after:6.2f} %")
    print(f"  aperture flux, ATM / standard {ratio:8.4f}")
    print(f"  step wall time (strun)        {seconds:6.1f} s")
    print(f"Output: {result}")
    return {
        "input": cal,
        "output": result,
        "before": amp_before,
        "after": amp_after,
        "flux_ratio": ratio,
        "seconds": seconds,
    }


def run_from_args(args):
    """Entry for ``atm-step example``; returns the exit status."""
    from atm_step.cli import UsageError

    try:
        run_example(args.output_dir, args.oversample, args.nx, args.seed)
    except RuntimeError as exc:
        print(f"atm-step example: {exc}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:  # e.g. too few columns, an unwritable folder
        raise UsageError(str(exc)) from exc
    return 0
