"""atm-step vs jwst 3.0's adaptive_trace_model: the whole benchmark suite, one command.

    /work/venv/bin/python benchmarks/run_benchmarks.py            # full (~15-25 min)
    /work/venv/bin/python benchmarks/run_benchmarks.py --quick    # < 3 min

Writes ``docs/performance.md`` (or ``--out``) and ``docs/perf_fitted_slices.png`` and
prints the headline ratios. Every figure is measured in this run: each
implementation runs in its own worker process (``benchmarks/workers.py``) on the same
saved input, back to back; ours is the best of several repeats after a warm-up call,
jwst's is measured once (its runs take minutes). See the "Method" section of the
report for what is extrapolated.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable

#: Goals of the issue (steady state, this 2-core machine).
GOALS = {
    "crowded_ratio": 100.0,
    "crowded_wall_1core": 5.0,
    "point_ratio": 30.0,
    "miri_ratio": 30.0,
    "jit_cold": 30.0,
    "jit_warm": 2.0,
}

STAGES = ["statistics", "spline fits", "oversampling", "errors/DQ/WCS", "I/O", "other"]


# ----------------------------------------------------------------------------- plumbing
def worker(kind, threads=1, env_extra=None, timeout=3600, **spec):
    """Run one measurement in a fresh process; return its JSON result."""
    env = dict(os.environ)
    env.update(
        NUMBA_NUM_THREADS=str(threads),
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        STPIPE_DISABLE_CRDS_STEPPARS="True",
        PYTHONWARNINGS="ignore",
    )
    env.update(env_extra or {})
    spec["kind"] = kind
    t0 = time.perf_counter()
    proc = subprocess.run(
        [PY, str(HERE / "workers.py"), json.dumps(spec)],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=str(REPO),
    )
    elapsed = time.perf_counter() - t0
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            out = json.loads(line[7:])
            out["process_wall"] = elapsed
            return out
    raise RuntimeError(
        f"worker {kind} failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}"
    )


def log(msg):
    print(msg, flush=True)


def save_scene(name, nx, ny, path, seed=1):
    from atm_step.simulate import make_scene

    if not path.is_file():
        s = make_scene(name, nx=nx, ny=ny, seed=seed)
        np.savez(path, flux=s.flux, err=s.err, alpha=s.alpha, regions=s.regions)
    return str(path)


def fmt_s(x):
    if x is None or not np.isfinite(x):
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def fmt_x(x):
    return "-" if x is None or not np.isfinite(x) else f"{x:.0f}x" if x >= 10 else f"{x:.1f}x"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


# ----------------------------------------------------------------------------- suites
def ifu_config(label, scene, N, fit_threshold, slope_limit, cfg, repeats, threads=1):
    """jwst (arrays, once) and ours (arrays, best of repeats) on one saved scene."""
    common = dict(scenes=[scene], oversample=N, fit_threshold=fit_threshold,
                  slope_limit=slope_limit)
    log(f"  [{label} N={N:g}] jwst ...")
    j = worker("jwst_core", max_fit=cfg["jwst_max_fit"], **common)
    log(f"    jwst {fmt_s(j['wall'])} s{' (extrapolated)' if j['extrapolated'] else ''}, "
        f"{j['n_fitted']} slices fitted ({j['n_fitted_really']} really)")
    o = worker("ours_core", threads=threads, repeats=repeats, cores=threads, **common)
    log(f"    ours {fmt_s(o['wall'])} s, {o['n_fitted']} slices fitted -> "
        f"{j['wall'] / o['wall']:.0f}x")
    return {"label": label, "N": N, "jwst": j, "ours": o, "ratio": j["wall"] / o["wall"],
            "same_shape": j["shape"] == o["shape"]}


def step_config(label, path, N, workdir, repeats, max_fit=None):
    log(f"  [{label} N={N:g}] jwst step ...")
    j = worker("step_run", impl="jwst", path=path, oversample=N, workdir=workdir,
               max_fit=max_fit)
    log(f"    jwst {fmt_s(j['wall'])} s{' (extrapolated)' if j['extrapolated'] else ''}, "
        f"{j['n_fitted']} slices fitted ({j['n_fitted_really']} really)")
    o = worker("step_run", impl="ours", path=path, oversample=N, workdir=workdir,
               repeats=repeats)
    c = worker("ours_step_core", path=path, oversample=N, repeats=repeats)
    log(f"    ours {fmt_s(o['wall'])} s (core {fmt_s(c['wall'])} s) -> "
        f"{j['wall'] / o['wall']:.0f}x")
    return {"label": label, "N": N, "jwst": j, "ours": o, "core": c,
            "ratio": j["wall"] / o["wall"], "same_shape": j["shape"] == o["shape"]}


def jit_suite(scene, cold=True):
    """Cold: a fresh process on an empty NUMBA_CACHE_DIR; warm: a second one on it.

    The quick mode measures the warm start only, on the package's own cache.
    """
    if not cold:
        return {"warm": worker("jit_start", scenes=[scene])}
    with tempfile.TemporaryDirectory(prefix="atm_numba_cache_") as cache:
        env = {"NUMBA_CACHE_DIR": cache}
        cold = worker("jit_start", env_extra=env, scenes=[scene])
        warm = worker("jit_start", env_extra=env, scenes=[scene])
    return {"cold": cold, "warm": warm}


def run(args):
    quick = args.quick
    cfg = {
        "nx": 256 if quick else 2048,
        "ny": 2048,
        "repeats": 2 if quick else 3,
        "jwst_max_fit": 1 if quick else args.jwst_slices,
        "sweep_nx": 256 if quick else 1024,
        "sweep_repeats": 1 if quick else 2,
    }
    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(tempfile.gettempdir()) / "atm_step_bench"
        workdir.mkdir(exist_ok=True)
    results = {"config": cfg, "quick": quick, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        git = ["git", "-C", str(REPO)]
        results["commit"] = subprocess.run(git + ["rev-parse", "--short", "HEAD"],
                                           capture_output=True, text=True).stdout.strip()
        results["dirty"] = bool(subprocess.run(
            git + ["status", "--porcelain", "atm_step"], capture_output=True, text=True
        ).stdout.strip())
    except OSError:
        pass
    t_all = time.perf_counter()
    log(f"atm-step benchmarks ({'quick' if quick else 'full'}), work dir {workdir}")

    log("scenes ...")
    sc = {name: save_scene(name, cfg["nx"], cfg["ny"], workdir / f"{name}_{cfg['nx']}.npz")
          for name in ("point_source", "crowded")}
    small = save_scene("crowded", 256, 2048, workdir / "crowded_small.npz")

    Ns = (3.0,) if quick else tuple(float(n) for n in args.oversample)
    log("NIRSpec-IFU-like scenes (array level) ...")
    ifu = []
    for N in Ns:
        ifu.append(ifu_config("point source, default", sc["point_source"], N, 10.0, 0.1,
                              cfg, cfg["repeats"]))
        ifu.append(ifu_config("crowded, 30 slices", sc["crowded"], N, 0.0, 0.0,
                              cfg, cfg["repeats"]))
    results["ifu"] = ifu

    log("MIRI MRS and NIRSpec MOS (steps end to end) ...")
    steps = []
    miri = worker("make_miri", workdir=str(workdir))["path"]
    for N in Ns:
        steps.append(step_config("MIRI MRS point source", miri, N, str(workdir),
                                 cfg["repeats"], max_fit=cfg["jwst_max_fit"]))
    mos_dir = Path(os.environ.get("ATM_STEP_TEST_DATA", REPO.parent / "shared" / "data"))
    mos = sorted((mos_dir / "nirspec_mos").glob("*.fits"))
    for N in Ns:
        for path in mos[: 1 if quick else args.mos_files]:
            steps.append(step_config(f"NIRSpec MOS nod {path.name[24]}", str(path), N,
                                     str(workdir), cfg["repeats"]))
    results["steps"] = steps

    log("JIT (cold and warm cache, fresh processes) ...")
    results["jit"] = jit_suite(small, cold=not quick)

    for key in ("sweep_slices", "sweep_oversample", "sweep_window", "sweep_cores",
                "sweep_batch"):
        results[key] = []
    results["sweep_nx"] = cfg["sweep_nx"]
    try:
        sweeps(results, cfg, sc, workdir, quick)
    except Exception as exc:  # noqa: BLE001 - keep the measured figures
        results["sweep_error"] = repr(exc)
        log(f"scaling sweeps failed: {exc!r}")
    bench_batch = HERE / "bench_batch.py"
    results["bench_batch_present"] = bench_batch.is_file()
    results["elapsed"] = time.perf_counter() - t_all
    results["host"] = f"{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    try:
        results["load"] = os.getloadavg()
    except OSError:
        results["load"] = None
    return results


def sweeps(results, cfg, sc, workdir, quick):
    """Scaling curves of our core (one process per group)."""
    log("scaling: fitted slices, oversampling, window, cores, batch ...")
    sw = cfg["sweep_nx"]
    crowd = save_scene("crowded", sw, cfg["ny"], workdir / f"crowded_{sw}.npz")
    common = dict(scenes=[crowd], oversample=3.0, fit_threshold=0.0, slope_limit=0.0,
                  repeats=cfg["sweep_repeats"])
    ks = [0, 1, 3, 10, 30] if quick else [0, 1, 3, 10, 20, 30]
    jobs = [dict(force_fitted=k, fit_threshold=10.0, slope_limit=0.1, scenes=[sc["crowded"]])
            for k in ks]
    jobs += [dict(oversample=float(n)) for n in (1, 2, 3, 4, 5)]
    jobs += [dict(tuning={"window": w}) for w in (10, 25, 50, 100)]
    runs = worker("ours_sweep", common=common, jobs=jobs)["runs"]
    results["sweep_slices"] = [
        {"k": r["force_fitted"], "ours": r["wall"], "fit": r["stages"].get("spline fits", 0.0)}
        for r in runs[: len(ks)]]
    results["sweep_oversample"] = [{"N": r["oversample"], "ours": r["wall"]}
                                   for r in runs[len(ks): len(ks) + 5]]
    results["sweep_window"] = [{"window": r["tuning"]["window"], "ours": r["wall"]}
                               for r in runs[len(ks) + 5:]]
    results["sweep_cores"] = []
    for c in (1, 2):
        r = worker("ours_core", threads=c, cores=c, **common)
        results["sweep_cores"].append({"cores": c, "ours": r["wall"]})
    batch_scenes = [save_scene("point_source", sw, cfg["ny"],
                               workdir / f"point_source_{sw}_{i}.npz", seed=i + 1)
                    for i in range(4)]
    runs = worker("ours_sweep", common=dict(oversample=3.0, fit_threshold=10.0,
                                            slope_limit=0.1, repeats=cfg["sweep_repeats"]),
                  jobs=[dict(scenes=batch_scenes[:n]) for n in (1, 2, 4)])["runs"]
    results["sweep_batch"] = [{"n": len(r["scenes"]), "ours": r["wall"],
                               "peak_delta_mb": r["peak_delta_mb"]} for r in runs]


# ----------------------------------------------------------------------------- report
def headline(results):
    ifu = {(r["label"], r["N"]): r for r in results["ifu"]}
    steps = {(r["label"], r["N"]): r for r in results["steps"]}
    crowd3 = ifu[("crowded, 30 slices", 3.0)]
    point3 = ifu[("point source, default", 3.0)]
    miri3 = steps[("MIRI MRS point source", 3.0)]
    jit = results["jit"]
    warm_start = jit["warm"]["import"] + jit["warm"]["compile"]
    over = [f"{r['label']} N={r['N']:g}: {r['ours']['peak_delta_mb']:.0f} vs "
            f"{r['jwst']['peak_delta_mb']:.0f} MB"
            for r in results["ifu"] + results["steps"]
            if r["ours"]["peak_delta_mb"] > r["jwst"]["peak_delta_mb"]]
    mem_ok = not over
    rows = [
        ("crowded 30-slice NIRSpec-IFU-like, N=3: speed-up", crowd3["ratio"],
         GOALS["crowded_ratio"], ">=", fmt_x),
        ("crowded 30-slice, N=3: our wall on 1 core (s)", crowd3["ours"]["wall"],
         GOALS["crowded_wall_1core"], "<", fmt_s),
        ("point source default, N=3: speed-up", point3["ratio"], GOALS["point_ratio"], ">=",
         fmt_x),
        ("MIRI MRS point source, N=3 (steps): speed-up", miri3["ratio"], GOALS["miri_ratio"],
         ">=", fmt_x),
        ("JIT compile, cold cache (s)", jit["cold"]["compile"] if "cold" in jit else np.nan,
         GOALS["jit_cold"], "<", fmt_s),
        ("warm start: import + residual compile/load (s)", warm_start, GOALS["jit_warm"], "<",
         fmt_s),
    ]
    out = []
    for name, value, goal, op, f in rows:
        if not np.isfinite(value):
            out.append((name, "not measured", f"{op} {f(goal)}", "-"))
            continue
        met = value >= goal if op == ">=" else value < goal
        by = value / goal if op == ">=" else goal / value
        out.append((name, f(value), f"{op} {f(goal)}", "met" if met else
                    f"MISSED ({by:.2f} of the goal)"))
    out.append(("peak memory no more than jwst's (every scene)",
                "yes" if mem_ok else "no; ours higher in " + "; ".join(over),
                "yes", "met" if mem_ok else "MISSED"))
    return out


def stage_cells(stages):
    return [fmt_s(stages.get(s, 0.0)) for s in STAGES]


def plot_slices(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = np.array([r["k"] for r in results["sweep_slices"]])
    ours = np.array([r["ours"] for r in results["sweep_slices"]])
    crowd = {r["N"]: r for r in results["ifu"] if r["label"].startswith("crowded")}[3.0]["jwst"]
    base = sum(v for k, v in crowd["stages"].items() if k != "spline fits")
    per = crowd["fit_per_slice"] + (crowd.get("oversample_extra_per_slice") or 0.0)
    kk = np.arange(0, 31)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(kk, base + per * kk, "-", color="C3",
            label="jwst 3.0 (measured per-slice cost, linear)")
    ax.plot([0, crowd["n_fitted_really"]],
            [base, base + per * crowd["n_fitted_really"]], "o", color="C3",
            label="jwst 3.0, measured")
    ax.plot(ks, ours, "o-", color="C0", label="atm-step (1 core)")
    ax.set_yscale("log")
    ax.set_xlabel("fitted slices")
    ax.set_ylabel("wall time per exposure (s)")
    nx = results["config"]["nx"]
    ax.set_title(f"NIRSpec-IFU-like {results['config']['ny']}x{nx} detector, N = 3")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(results, out_md, png):
    cfg = results["config"]
    lines = ["# Performance: atm-step vs jwst 3.0's adaptive_trace_model", ""]
    lines += [
        f"Generated by `python benchmarks/run_benchmarks.py{' --quick' if results['quick'] else ''}`"
        f" on {results['started']} ({results['host']}; load average at the end "
        f"{', '.join(f'{x:.1f}' for x in results['load'] or [])}); whole run "
        f"{results['elapsed'] / 60:.1f} min."
        + (" **Quick mode**: 256-column detector, fewer repeats; figures are indicative."
           if results["quick"] else ""),
        "",
        "Every ratio is jwst's time over ours, both measured in this run on the very same "
        "input, each in its own fresh process, back to back. Ours: best of "
        f"{cfg['repeats']} repeats after one warm-up call (the JIT cache is warm; "
        "compile times are reported apart below). jwst: measured once. The machine is "
        "shared, so absolute times are noisy; ratios from one run are what count.",
        "",
        "## Headline",
        "",
        table(["figure", "measured", "goal", "status"], headline(results)),
        "",
    ]
    misses = [r for r in results["steps"] if r["label"].startswith("MIRI") and r["N"] == 3.0
              and r["ratio"] < GOALS["miri_ratio"]]
    for r in misses:
        st = r["ours"]["stages"]
        lines += [f"MIRI MRS N=3 is bounded by our step's work outside the core: the step "
                  f"takes {fmt_s(r['ours']['wall'])} s but the core alone on the same arrays "
                  f"{fmt_s(r['core']['wall'])} s; errors/DQ/WCS (WCS evaluation of the "
                  f"oversampled pixels in the MIRI adapter, write-back and WCS update) "
                  f"{fmt_s(st.get('errors/DQ/WCS', 0))} s, other (stpipe's copy of the "
                  f"input model, step overhead) {fmt_s(st.get('other', 0))} s. At "
                  f"{GOALS['miri_ratio']:.0f}x our step would need <= "
                  f"{fmt_s(r['jwst']['wall'] / GOALS['miri_ratio'])} s.", ""]
    # scenes
    lines += ["## Scenes", "",
              f"NIRSpec-IFU-like scenes: simulated {cfg['ny']}x{cfg['nx']} detector "
              "(`atm_step.simulate.make_scene`), 30 slices, compared at array level: "
              "jwst's `fit_all_regions` + `oversample_flux` (or `_trace_image` at N=1) + "
              "`linear_oversample`/`_inflate_error` of the errors, with jwst's NRS_IFU/NRS1 "
              "fit parameters and thresholds, against `atm_step.core.adaptive_trace_model` "
              "with `FitParameters.nirspec_ifu('NRS1')`, on 1 core "
              "(`NUMBA_NUM_THREADS=1`). MIRI MRS (real ch3+4 LONG geometry, "
              "`atm_step.validation.miri` builder + point source) and NIRSpec MOS (flight "
              "cutouts): both steps end to end on the same file "
              "(`skip=False`), plus our core alone on the same arrays.", ""]
    rows = []
    for r in results["ifu"] + results["steps"]:
        j, o = r["jwst"], r["ours"]
        nfit = j.get("n_fitted", o.get("n_fitted", "-"))
        extr = " *" if j.get("extrapolated") else ""
        per_j = j["wall"] / j["n_fitted"] if j.get("n_fitted") else None
        per_o = o["wall"] / o["n_fitted"] if o.get("n_fitted") else None
        rows.append([
            r["label"], f"{r['N']:g}", f"{nfit}" if "n_fitted" in j else "-",
            fmt_s(j["wall"]) + extr, fmt_s(o["wall"]),
            fmt_s(r["core"]["wall"]) if "core" in r else "-",
            f"**{fmt_x(r['ratio'])}**",
            (fmt_s(per_j) if per_j else "-") + " / " + (fmt_s(per_o) if per_o else "-"),
            f"{j['peak_delta_mb']:.0f} / {o['peak_delta_mb']:.0f}",
            "yes" if r["same_shape"] else f"NO {j['shape']} vs {o['shape']}",
        ])
    lines += [table(["scene", "N", "fitted slices", "jwst (s)", "ours (s)", "our core (s)",
                     "speed-up", "s per fitted slice jwst / ours", "peak MB jwst / ours",
                     "same output shape"], rows), ""]
    lines += ["`*` extrapolated: jwst fitted only the first "
              f"{cfg['jwst_max_fit']} of the slices passing its threshold; the other "
              "slices' fit and oversampling cost is their measured per-slice cost "
              "(see Method). Steps: wall time of `Step.call` on an opened model, without "
              "file I/O (I/O is in the breakdown). Peak MB: rise of resident memory "
              "over the process's size before the run (inputs loaded), measured in "
              "separate processes.", ""]
    if results.get("memory_remeasured"):
        lines += ["Note: this run's harness kept the previous repeat's result alive while "
                  "timing the next one, which inflated our peak memory by one result; our "
                  "peak-memory figures (NIRSpec-IFU-like and MIRI rows) were re-measured "
                  "right after with the fixed harness (`result = None` between repeats), "
                  "same inputs, one repeat. Times and jwst's figures are from the run.", ""]
    # breakdown
    rows = []
    for r in results["ifu"] + results["steps"]:
        for impl in ("jwst", "ours"):
            st = r[impl]["stages"]
            rows.append([r["label"], f"{r['N']:g}", impl, *stage_cells(st),
                         f"{r[impl]['peak_mb']:.0f}"])
    lines += ["## Per-stage breakdown (s)", "",
              table(["scene", "N", "impl", *STAGES, "peak RSS (MB)"], rows), "",
              "Stages: statistics = image statistics and fit threshold; spline fits = "
              "the per-column B-spline fits; oversampling = linear, spline and residual "
              "models and their combination (`_trace_image` at N=1 for jwst); "
              "errors/DQ/WCS = error/variance oversampling, DQ, along-slice coordinates "
              "from the WCS and the WCS update; I/O = opening the file and saving the "
              "result (steps only); other = the rest (step overhead, copies).", ""]
    # scaling
    sk = results["sweep_slices"]
    crowd = {r["N"]: r for r in results["ifu"] if r["label"].startswith("crowded")}[3.0]
    cj = crowd["jwst"]
    base = sum(v for k, v in cj["stages"].items() if k != "spline fits")
    per = cj["fit_per_slice"] + (cj.get("oversample_extra_per_slice") or 0.0)
    lines += ["## How cost grows", "",
              f"Crowded scene, N = 3, 1 core unless stated; time vs fitted slices on "
              f"the {cfg['ny']}x{cfg['nx']} detector, the other curves on a "
              f"{cfg['ny']}x{results['sweep_nx']} one. Fitted slices: the fit "
              "threshold is forced to pass for exactly k slices spread over the "
              "detector (the statistics still run). jwst column: its measured "
              "linear-only cost plus k times its measured per-slice cost "
              f"({fmt_s(per)} s), from the crowded run above.", "",
              f"![time vs fitted slices]({png.name})", "",
              table(["fitted slices", "ours (s)", "ours: spline fits (s)", "jwst (s)",
                     "speed-up"],
                    [[r["k"], fmt_s(r["ours"]), fmt_s(r["fit"]), fmt_s(base + per * r["k"]),
                      fmt_x((base + per * r["k"]) / r["ours"])] for r in sk]), ""]
    if len(sk) > 1:
        slope = np.polyfit([r["k"] for r in sk], [r["ours"] for r in sk], 1)
        lines += [f"Ours: {slope[1]:.2f} s fixed + {slope[0] * 1000:.0f} ms per fitted "
                  f"slice (least-squares line).", ""]
    lines += [table(["oversample N", "ours (s)"],
                    [[r["N"], fmt_s(r["ours"])] for r in results["sweep_oversample"]]), "",
              "(all 30 slices fitted, `slope_limit=0`)", "",
              table(["column window (+-)", "ours (s)"],
                    [[r["window"], fmt_s(r["ours"])] for r in results["sweep_window"]]), "",
              table(["cores (`maximum_cores`, `NUMBA_NUM_THREADS`)", "ours (s)", "speed-up"],
                    [[r["cores"], fmt_s(r["ours"]),
                      fmt_x(results["sweep_cores"][0]["ours"] / r["ours"])]
                     for r in results["sweep_cores"]]), "",
              table(["exposures in one process (point source, N=3)", "ours total (s)",
                     "per exposure (s)", "peak MB"],
                    [[r["n"], fmt_s(r["ours"]), fmt_s(r["ours"] / r["n"]),
                      f"{r['peak_delta_mb']:.0f}"] for r in results["sweep_batch"]]), "",
              "jwst processes exposures independently, so its batch time is n times "
              "its single-exposure time." +
              (" Throughput of the batch runner: `benchmarks/bench_batch.py`."
               if results["bench_batch_present"] else ""), ""]
    jit = results["jit"]
    lines += ["## JIT compilation (apart from the steady-state figures)", "",
              "A fresh process with an empty `NUMBA_CACHE_DIR` (cold), then a second "
              "fresh process with the same cache (warm), each running the core on a "
              "small crowded scene (all code paths: fits, oversampling, errors, "
              "variances). compile = first call - steady call.", "",
              table(["cache", "import atm_step.core (s)", "first call (s)",
                     "steady call (s)", "compile/load (s)", "process wall (s)"],
                    [[k, fmt_s(v["import"]), fmt_s(v["first"]), fmt_s(v["steady"]),
                      fmt_s(v["compile"]), fmt_s(v["process_wall"])]
                     for k, v in jit.items()]), ""]
    lines += ["## Method", "",
              "- `benchmarks/run_benchmarks.py` drives; `benchmarks/workers.py` measures, "
              "one process per implementation and configuration, so neither pollutes "
              "the other's memory or caches. Peak memory: the kernel's RSS high-water "
              "mark is reset (`/proc/self/clear_refs`) once the inputs are loaded and "
              "read after the run.",
              "- Stage times wrap each implementation's own module functions "
              "(`atm_step.core.stats/trace_fit/linear/combine/errors`, the mode adapters; "
              "`jwst.adaptive_trace_model.trace_model.scs/fit_all_regions/oversample_flux/"
              "_trace_image/linear_oversample`); no code is changed or copied.",
              "- jwst's per-slice cost: jwst runs `fit_all_regions` over every slice "
              "(its threshold test runs for all), but `fit_2d_spline_trace` really fits "
              f"only the first {cfg['jwst_max_fit']} passing slices. Missing slices are "
              "added at the measured mean fit time per slice, and at the measured extra "
              "`oversample_flux` cost of a fitted slice over a linear-only slice. jwst's "
              "fit cost per slice barely depends on the content (every column is fitted "
              "with up to 3 rejection passes), so this is close to a full run, which "
              "would take 5-20 min per configuration on this machine. "
              "`--jwst-slices 30` runs jwst in full.",
              "- jwst gets the oversampled along-slice coordinate precomputed (jwst's "
              "step takes it from the WCS); it is created inside jwst's memory "
              "measurement but outside its timing, while our core computes its own "
              "inside the timed call.",
              "- Warm start = `import atm_step.core` + (first call - steady call) in a "
              "fresh process whose Numba cache is already filled. Numba keys its cache "
              "on the source files' timestamps, so an edit of `atm_step/core` between "
              "the cold and the warm process (or during the run) forces a recompile.",
              f"- Code measured: atm-step commit `{results.get('commit', '?')}`"
              f"{' (with uncommitted changes)' if results.get('dirty') else ''}; "
              "jwst 3.0.0.", ""]
    out_md.write_text("\n".join(lines) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="512-column detector, fewer repeats")
    ap.add_argument("--jwst-slices", type=int, default=3,
                    help="slices jwst really fits per configuration (full mode)")
    ap.add_argument("--oversample", nargs="+", default=["1", "3"],
                    help="oversampling factors of the scene comparisons (full mode)")
    ap.add_argument("--mos-files", type=int, default=3,
                    help="NIRSpec MOS nods to run (full mode)")
    ap.add_argument("--out", default=str(REPO / "docs" / "performance.md"))
    ap.add_argument("--json", default=None, help="also write the raw results here")
    ap.add_argument("--workdir", default=None,
                    help="folder for the inputs (reused when present) and outputs; "
                         "default <tmp>/atm_step_bench")
    ap.add_argument("--report-from", default=None,
                    help="re-render the report from a --json file instead of measuring")
    args = ap.parse_args(argv)
    if args.report_from:
        results = json.loads(Path(args.report_from).read_text())
    else:
        results = run(args)
    out_md = Path(args.out)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    png = out_md.parent / "perf_fitted_slices.png"
    plot_slices(results, png)
    report(results, out_md, png)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    print()
    print(table(["headline", "measured", "goal", "status"], headline(results)))
    print(f"\nwrote {out_md} and {png} ({results['elapsed'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
