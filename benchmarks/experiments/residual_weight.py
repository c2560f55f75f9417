"""Experiment, not part of the package: the Wiener-weighted residual inside the band
(`FitParameters.residual_shrinkage`, `atm_step.core.combine.shrink_band_residual`)
against the paper's plain residual, on scenes of `atm_step.validation.grid`.

Usage (jwst cubes come from the validation cache; run the grid once first)::

    python benchmarks/experiments/residual_weight.py grid isolated:1 binary:1 isolated:1:100
    python benchmarks/experiments/residual_weight.py companion 1 0.1
    python benchmarks/experiments/residual_weight.py lines 1 3 --jwst

``--k`` sets the weight's sigma multiplier (the NIRSpec IFU preset uses 1).
"""

import argparse
from dataclasses import replace

import numpy as np

from atm_step.core import FitParameters
from atm_step.validation import grid as G
from atm_step.validation import methods as M
from atm_step.validation.drizzle import drizzle_slices

PRESET = FitParameters.nirspec_ifu("NRS1")


def _ours(scene, n, k, flux=None):
    return M.run_ours(scene, n, flux=flux, parameters=replace(PRESET, residual_shrinkage=k))


def grid_cases(cases, k):
    """Grid rows (ours / jwst / ideal, %) with residual_shrinkage = 0 and ``k``."""
    original = M.run_ours
    try:
        for kk in (0.0, k):
            M.run_ours = lambda scene, n, _k=kk, **kw: original(scene, n, parameters=replace(PRESET, residual_shrinkage=_k), **kw)
            for item in cases:
                recipe, fwhm, *snr = item.split(":")
                snr = float(snr[0]) if snr else G.RECIPES[recipe].peak_snr
                res = G.measure_case(G.Case(recipe, float(fwhm), snr, noise_free=not snr), jwst_compute=False)
                for row in res["rows"]:
                    jw = row.get("jwst")
                    print(f"k={kk:g} {recipe} {fwhm} snr {snr:g} {row['variant']:10s} N={row['N']} ours {100 * row['ours']:.2f} "
                          f"jwst {100 * jw if jw else float('nan'):.2f} ideal {100 * row['ideal']:.2f} "
                          f"noise/N1 {row.get('ours_noise') or float('nan'):.3f} field {row['ours_total']:.4f} "
                          f"ap {row['ours_ap']:.4f}")
    finally:
        M.run_ours = original


def _box(cube, ib, ia):
    return np.nansum(cube[ib - 1 : ib + 2, ia - 1 : ia + 2, :], axis=(0, 1))


def companion(fwhm, ratio, k):
    """Flux of a faint companion (0.33" away, ``ratio`` x the star) in a 3 x 3 spaxel
    box against truth, N = 3, plain and weighted residual."""
    opts = G._binary(0.33)
    opts["flux2"] = opts["flux1"] * ratio
    G.RECIPES["faint_companion"] = G.Recipe("faint_companion", "faint companion", "two_sources", opts, 2000.0)
    scene = G.build_scene(G.Case("faint_companion", fwhm, 2000.0))
    std = M.run_standard(scene)
    cstd = drizzle_slices(std.flux, std.alpha, std.regions, std.pixel_size, err=std.err)
    edges = np.append(cstd.centres - 0.05, cstd.centres[-1] + 0.05)
    truth, _ = G.truth_cubes(scene, cstd.centres, edges, (3,), cache=False)
    src = scene.sources[1]
    ia = int(np.argmin(np.abs(cstd.centres - src.alpha)))
    ib = int(np.argmin(np.abs(scene.beta - src.beta)))
    tb = _box(truth, ib, ia)[2:-2]
    for label, flux in (("noisy", scene.flux), ("noise-free", G.noise_free_flux(scene))):
        for kk in (0.0, k):
            q = _ours(scene, 3, kk, flux)
            c = drizzle_slices(q.flux, q.alpha, q.regions, q.pixel_size, err=q.err, edges=edges).flux
            print(f"FWHM {fwhm} ratio {ratio} {label:10s} k={kk:g} companion box / truth, median "
                  f"{np.nanmedian(_box(c, ib, ia)[2:-2] / tb):.4f}")


def lines(fwhm, sigmas, k, jwst=False):
    """Line flux under a bright star. The isolated star (peak SNR 5000) on a nebula whose
    lines peak at ``sigmas`` x the pixel noise (no nebular continuum), and the same scene
    without the nebula (same noise); each method's line flux is the difference of the
    two cubes summed over the 3 x 3 spaxels centred on the star and +-4 columns around
    each line, over the same for truth. Standard cube (N = 1), ours with residual_shrinkage
    0 and ``k`` (N = 3), jwst optionally; the noise-free image (with the noisy image's
    errors) and the noisy one."""
    base = {"continuum_sb": 0.0}
    G.RECIPES["no_lines"] = G.Recipe("no_lines", "no lines", "nebula", dict(base, line_sb=0.0), 5000.0, nebula=True)
    noise = G.build_scene(G.Case("no_lines", fwhm, 5000.0)).noise
    G.RECIPES["faint_lines"] = G.Recipe("faint_lines", "faint lines under a star", "nebula",
                                        dict(base, line_sb=sigmas * noise), 5000.0, nebula=True)
    scenes = [G.build_scene(G.Case(r, fwhm, 5000.0)) for r in ("no_lines", "faint_lines")]
    std = M.run_standard(scenes[1])
    cstd = drizzle_slices(std.flux, std.alpha, std.regions, std.pixel_size, err=std.err)
    edges = np.append(cstd.centres - 0.05, cstd.centres[-1] + 0.05)
    truths = [G.truth_cubes(sc, cstd.centres, edges, (3,), cache=False)[0] for sc in scenes]
    src = scenes[1].sources[0]
    ia = int(np.argmin(np.abs(cstd.centres - src.alpha)))
    ib = int(np.argmin(np.abs(scenes[1].beta - src.beta)))
    lam = scenes[1].column_wavelength
    cols = [int(round(np.interp(ln.center, lam, np.arange(lam.size)))) for ln in scenes[1].nebula.spectrum.lines]

    def box_lines(c1, c0):
        spec = _box(c1 - c0, ib, ia)
        return np.array([spec[c - 4 : c + 5].sum() for c in cols])

    tl = box_lines(*truths[::-1])
    for label in ("noise-free", "noisy"):
        fl = [G.noise_free_flux(sc) if label == "noise-free" else sc.flux for sc in scenes]
        cubes = {"standard": [], "k=0": [], f"k={k:g}": []}
        if jwst:  # jwst fits the three slices of the box (cached)
            ids = [int(cstd.region_ids[i]) for i in (ib - 1, ib, ib + 1)]
            cubes["jwst"] = [G.jwst_cubes(sc, f, edges, (3,), regions_to_fit=ids)[3][0] for sc, f in zip(scenes, fl)]
        for sc, f in zip(scenes, fl):
            q = M.run_standard(sc, f)
            cubes["standard"].append(drizzle_slices(q.flux, q.alpha, q.regions, q.pixel_size, edges=edges).flux)
            for kk in (0.0, k):
                q = _ours(sc, 3, kk, f)
                cubes[f"k={kk:g}"].append(drizzle_slices(q.flux, q.alpha, q.regions, q.pixel_size, edges=edges).flux)
        print(f"FWHM {fwhm} lines {sigmas:g} sigma {label:10s} " + "  ".join(
            f"{n} {np.round(box_lines(c[1], c[0]) / tl, 3).tolist()}" for n, c in cubes.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    g = sub.add_parser("grid")
    g.add_argument("cases", nargs="+", help="recipe:fwhm[:snr], e.g. isolated:1 isolated:1:100")
    c = sub.add_parser("companion")
    c.add_argument("fwhm", type=float)
    c.add_argument("ratio", type=float)
    li = sub.add_parser("lines")
    li.add_argument("fwhm", type=float)
    li.add_argument("sigmas", type=float, help="line peak in units of the pixel noise")
    li.add_argument("--jwst", action="store_true", help="also jwst (fits 3 slices; cached)")
    ap.add_argument("--k", type=float, default=1.0, help="sigma multiplier of the weight")
    args = ap.parse_args()
    if args.what == "grid":
        grid_cases(args.cases, args.k)
    elif args.what == "lines":
        lines(args.fwhm, args.sigmas, args.k, args.jwst)
    else:
        companion(args.fwhm, args.ratio, args.k)


if __name__ == "__main__":
    main()
