"""Experiment, not part of the package: MIRI MRS channels 1 and 2 (band 12A, the sharpest
PSF) with a wider column window on MIRIFUSHORT, and the ch3/ch4 matrix's scenes moved
to channels 1 and 2 (docs/modes.md, "MIRI MRS channels 1 and 2"; results in
miri_ch12_window.md beside this file).

Usage::

    python benchmarks/experiments/miri_ch12_window.py seeds WORKDIR [OVERRIDES_JSON]
    python benchmarks/experiments/miri_ch12_window.py matrix WORKDIR [SEED]
    python benchmarks/experiments/miri_ch12_window.py spaxels WORKDIR

``seeds``: the channel 1/2 point source of `atm_step.validation.miri.CH12_CONFIG`
(ours only, N = 2 and 3, noisy and noise-free, the ideal floor), noise seeds 1-3, with
`FitParameters.miri_mrs` on MIRIFUSHORT changed by ``OVERRIDES_JSON`` (e.g.
``'{"window": 100}'``; ``'{}'``: the preset). jwst's figures are those of
docs/validation_miri_ch12.md (same images).

``matrix``: the scenes of `atm_step.validation.miri_matrix` (point source, point
source on a nebula, binary with different spectra; no extra blur, peak SNR 500) on
the band-12A geometry, lines moved into channel 1 (5.3-5.6 um) and channel 2
(8.0-8.4 um); the standard cube, jwst's step and ours with the preset's window (50)
and with 100, N = 2 and 3, noisy and noise-free, measured on the matrix's common
spaxel mask (`atm_step.validation.miri_matrix.measure_channel`).

``spaxels``: why the noisy channel-1 figure at N = 3 (about 6%) is far above both the
noise-free one (about 2%) and the noise floor (about 1.6%): for each of the 20
brightest spaxels of the CH12 point source (seed 1), the half-amplitude noisy and
noise-free, and the noise alone (noisy minus noise-free cube, over the spaxel's
median), for the standard cube, ours and jwst at N = 3.
"""

import copy
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from atm_step.core.parameters import FitParameters
from atm_step.validation import miri
from atm_step.validation import miri_matrix as MM
from atm_step.validation.miri_matrix import Nebula, PointSource, Scene, _line

DATA = os.environ.get("ATM_STEP_TEST_DATA",
                      str(Path(__file__).resolve().parents[3] / "shared" / "data"))
CHANNELS = {"1": (5.3, 5.6), "2": (8.0, 8.4)}


def _patch_preset(overrides):
    """`FitParameters.miri_mrs` with ``overrides`` on MIRIFUSHORT (this process only)."""
    original = FitParameters.miri_mrs.__func__

    def patched(cls, detector="MIRIFULONG"):
        params = original(cls, detector)
        if str(detector).upper() == "MIRIFUSHORT" and overrides:
            params = dataclasses.replace(params, **overrides)
        return params

    FitParameters.miri_mrs = classmethod(patched)


def seeds(workdir, overrides):
    """Ours on CH12_CONFIG's point source for seeds 1-3; prints half-amplitudes in %."""
    _patch_preset(overrides)
    cfg = copy.copy(miri.CH12_CONFIG)
    cfg.jwst_oversamples = ()
    table = {}
    for seed in (1, 2, 3):
        c = copy.copy(cfg)
        c.seed = seed
        res = miri.point_source_metrics(DATA, Path(workdir) / f"seed{seed}", c)
        for r in res["rows"]:
            if r["method"] in ("ours", "ideal", "ideal+ours noise"):
                table.setdefault((r["channel"], r["method"], r["N"]), []).append(
                    (r.get("half_amp"), r.get("half_amp_noisefree")))
    print(f"MIRIFUSHORT overrides {overrides}: half-amplitude %, seeds 1-3 (noisy) and noise-free")
    for (ch, method, n), vals in sorted(table.items()):
        noisy = [100 * v[0] for v in vals if v[0] is not None]
        free = [100 * v[1] for v in vals if v[1] is not None]
        line = f"ch{ch} N={n} {method:17s}"
        if noisy:
            line += " noisy " + " ".join(f"{v:.2f}" for v in noisy) + f" mean {np.mean(noisy):.2f}"
        if free:
            line += f" noise-free {free[0]:.2f}"
        print(line)


def _ch12_scenes(alpha0=0.05, beta0=0.1):
    """The matrix's scenes with their lines moved into channels 1 and 2 (the point and
    faint sources' spectra, which have no lines, are the matrix's own)."""

    def blue(w):
        w = np.asarray(w)
        return 10.0 * (w / 20.0) ** -2 * (1 - 0.4 * (_line(w, 5.45) + _line(w, 8.15)))

    def red(w):
        w = np.asarray(w)
        return 6.0 * (w / 20.0) ** 1.5 + 3.0 * (_line(w, 5.5) + _line(w, 8.3))

    return {
        "point": Scene("point", (PointSource(alpha0, beta0, MM._point_spectrum),)),
        "nebula": Scene("nebula", (PointSource(alpha0, beta0, MM._faint_spectrum),),
                        Nebula(lines=(5.38, 5.52, 8.12, 8.28))),
        "binary": Scene("binary", (PointSource(alpha0 - 0.20, beta0 - 0.02, blue),
                                   PointSource(alpha0 + 0.20, beta0 + 0.02, red))),
    }  # fmt: skip


def matrix(workdir, seed):
    """The three scenes on band 12A: jwst, ours (window 50 and 100), common mask."""
    original = miri.miri_mrs_model

    def model_12a(data_dir, wd, err=1e-3, band="34C", **kw):
        return original(data_dir, wd, err=err, band="12A", **kw)

    MM.miri_mrs_model = model_12a  # scene_images builds band 34C otherwise
    cfg = MM.MatrixConfig(channels=CHANNELS, blurs=(0.0,), seed=seed)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cubepar = miri.write_cubepar(workdir / "cubepar.fits")
    variants = {"ours": {}, "ours_w100": {"window": 100}}
    rows = []
    for name, scene in _ch12_scenes().items():
        t0 = time.perf_counter()
        images, _, grids, reference, standard = MM.scene_images(DATA, workdir, scene, 0.0, cfg,
                                                                cubepar)
        cubes = {("standard", 1): standard}
        for noisy in (True, False):
            sfx = "" if noisy else "_nf"
            for n in (2, 3):
                for v, kw in variants.items():
                    img, _ = miri._run_step("ours", images[noisy], n, kw)
                    cubes[(v + sfx, n)] = MM._cubes(img, cubepar, CHANNELS, grids)
                    del img
                cubes[("jwst" + sfx, n)] = MM._jwst_cubes(images[noisy], n, cubepar, CHANNELS,
                                                          grids, True)[0]
        for ch in CHANNELS:
            m = MM.measure_channel({k: v[ch] for k, v in cubes.items()}, reference[ch])
            for r in m["rows"]:
                rows.append({"scene": name, "channel": ch, **r})
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    get = {(r["scene"], r["channel"], r["method"], r["N"]): r["half_amp"] for r in rows}
    print("scene | channel | N | input | ours (window 50) | ours (window 100) | jwst | "
          "50/jwst | 100/jwst")
    for name in _ch12_scenes():
        for ch in CHANNELS:
            for n in (2, 3):
                for sfx, label in (("", "noisy"), ("_nf", "noise-free")):
                    o, w, j = (100 * get[(name, ch, m + sfx, n)]
                               for m in ("ours", "ours_w100", "jwst"))
                    print(f"{name} | {ch} | {n} | {label} | {o:.2f} | {w:.2f} | {j:.2f} | "
                          f"{o / j:.2f} | {w / j:.2f}")
    (workdir / f"matrix_seed{seed}.json").write_text(json.dumps(rows, indent=1, default=float))


def spaxels(workdir):
    """Per-spaxel half-amplitudes and noise, channel 1, N = 3, seed 1."""
    from atm_step.validation import measures as M

    cfg = miri.CH12_CONFIG
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cubepar = miri.write_cubepar(workdir / "cubepar.fits")
    images = {}
    for name, noise in (("noisy", True), ("noise-free", False)):
        m = miri.miri_mrs_model(DATA, workdir, err=cfg.err, band=cfg.band)
        miri.inject_point_source(m, alpha0=cfg.alpha0, beta0=cfg.beta0, seed=1, noise=noise)
        images[name] = m
    grids, cubes = {}, {}
    for method, n in (("standard", 1), ("ours", 3), ("jwst", 3)):
        for name, image in images.items():
            img, _ = miri._run_step(method, image, n)
            cube = miri.build_channel_cubes(img, cubepar, {"1": CHANNELS["1"]}, grids)["1"]
            cubes[(method, name)] = miri._as_measure_cube(cube)[0]
    ref = cubes[("standard", "noise-free")]
    spax = M.brightest_spaxels(ref, 20)
    box = M.aperture_box(ref, 6)
    print("spaxel (brightest first) | method | half-amp noisy % | noise-free % | noise rms %")
    for method in ("standard", "ours", "jwst"):
        noisy, free = cubes[(method, "noisy")], cubes[(method, "noise-free")]
        st_n = M.artifact_amplitude(noisy, spax, M.aperture_spectrum(noisy, box)[0])
        st_f = M.artifact_amplitude(free, spax, M.aperture_spectrum(free, box)[0])
        rel = [np.nanstd((noisy[i, k, 2:-2] - free[i, k, 2:-2]) / np.nanmedian(free[i, k, 2:-2]))
               for i, k in spax]
        for j in range(len(spax)):
            print(f"{j + 1} | {method} | {100 * st_n.half_amplitude[j]:.1f} | "
                  f"{100 * st_f.half_amplitude[j]:.1f} | {100 * rel[j]:.1f}")
        print(f"median | {method} | {100 * st_n.median_half_amplitude:.2f} | "
              f"{100 * st_f.median_half_amplitude:.2f} | {100 * np.median(rel):.2f}")


if __name__ == "__main__":
    os.environ.setdefault("STPIPE_DISABLE_CRDS_STEPPARS", "True")
    if len(sys.argv) < 3 or sys.argv[1] not in ("seeds", "matrix", "spaxels"):
        sys.exit(__doc__)
    if sys.argv[1] == "seeds":
        seeds(sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) > 3 else {})
    elif sys.argv[1] == "spaxels":
        spaxels(sys.argv[2])
    else:
        matrix(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
