"""atm-step vs jwst 3.0's adaptive_trace_model: the whole benchmark suite, one command.

    python benchmarks/run_benchmarks.py            # full (about 45 min on 2 cores)
    python benchmarks/run_benchmarks.py --quick    # a few minutes

Writes ``docs/performance.md`` (or ``--out``; a ``--quick`` run writes
``<workdir>/performance_quick.md`` unless given ``--out``), with
``perf_fitted_slices.png`` beside it, and prints the headline ratios. It refuses to run on a git tree with uncommitted changes
(``--allow-dirty`` overrides, and the report says so); every report records the
commit, the command line and the machine. Every figure is measured in this run: each
implementation runs in its own worker process (``benchmarks/workers.py``) on the same
saved input, back to back; ours is the best of several repeats after a warm-up call,
jwst's is measured once (its runs take minutes). See the "Method" section of the
report for what is extrapolated. The core on 1 thread is also measured against an
earlier commit's core (``--baseline``, default the commit before issue 12; its
``atm_step`` is extracted with ``git archive`` into the work dir). Results are
checkpointed to ``<workdir>/results_partial.json`` after each section;
``--report-from`` renders a report from such a file (sections not measured are left
out and named).
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
    "first_run_extra": 8.0,
    "jit_warm": 2.0,
    "core_speedup_baseline": 1.5,
}

#: The commit the core-speed goal compares against ("today" when issue 12 was filed).
BASELINE_REV = "30e6aa3"

#: `FitParameters` fields switched on in the NIRSpec IFU preset (or by default) after
#: ``BASELINE_REV``, with the value that switches each off (the paper's method):
#: the GCV roughness penalty, finer knots, the offset column scale, the extended-emission
#: background and the Wiener-weighted band residual. Applied only where the measured
#: code has the field.
ACCURACY_ADDITIONS_OFF = {
    "penalty": 0.0,
    "knot_factor": 1.0,
    "scale_offset": False,
    "background_rows": 0.0,
    "residual_shrinkage": 0.0,
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


def step_config(label, path, N, workdir, repeats, max_fit=None, hows=("pipeline", "call")):
    """Both steps on one file: in a pipeline (no copy) and by ``Step.call``."""
    row = {"label": label, "N": N}
    for how in hows:
        log(f"  [{label} N={N:g}] jwst step ({how}) ...")
        j = worker("step_run", impl="jwst", path=path, oversample=N, workdir=workdir,
                   max_fit=max_fit, how=how)
        log(f"    jwst {fmt_s(j['wall'])} s{' (extrapolated)' if j['extrapolated'] else ''}, "
            f"{j['n_fitted']} slices fitted ({j['n_fitted_really']} really)")
        o = worker("step_run", impl="ours", path=path, oversample=N, workdir=workdir,
                   repeats=repeats, how=how)
        log(f"    ours {fmt_s(o['wall'])} s -> {j['wall'] / o['wall']:.0f}x")
        row[how] = {"jwst": j, "ours": o, "ratio": j["wall"] / o["wall"],
                    "same_shape": j["shape"] == o["shape"]}
    main = row.get("call") or row[hows[0]]
    row.update(jwst=main["jwst"], ours=main["ours"], ratio=main["ratio"],
               same_shape=main["same_shape"])
    row["core"] = worker("ours_step_core", path=path, oversample=N, repeats=repeats)
    log(f"    our core alone {fmt_s(row['core']['wall'])} s")
    return row


def strun_config(label, path, N, workdir):
    """``strun`` end to end, file in and file out, both steps; floors of each."""
    row = {"label": label, "N": N}
    for impl in ("jwst", "ours"):
        log(f"  [{label} N={N:g}] strun {impl} ...")
        row[impl] = worker("strun_run", impl=impl, path=path, oversample=N, workdir=workdir)
        log(f"    {fmt_s(row[impl]['wall'])} s")
    row["ratio"] = row["jwst"]["wall"] / row["ours"]["wall"]
    return row


def jit_suite(scene, cold=True, miri=None, workdir=None):
    """Cold: a fresh process on an empty NUMBA_CACHE_DIR; warm: a second one on it.

    Core level (``jit_start`` on a small scene, every kernel) and, given ``miri``, a
    user's first ``strun`` of the MIRI MRS file at N = 3 against a second one, and a
    first one with the compile helper off (``ATM_STEP_COMPILE_HELPER=0``). The
    quick mode measures the core's warm start only, on the package's own cache.
    """
    if not cold:
        return {"warm": worker("jit_start", scenes=[scene])}
    out = {}
    with tempfile.TemporaryDirectory(prefix="atm_numba_cache_") as cache:
        env = {"NUMBA_CACHE_DIR": cache}
        out["cold"] = worker("jit_start", env_extra=env, scenes=[scene])
        out["warm"] = worker("jit_start", env_extra=env, scenes=[scene])
    if miri is not None:
        with tempfile.TemporaryDirectory(prefix="atm_numba_cache_") as cache:
            env = {"NUMBA_CACHE_DIR": cache}
            out["strun_cold"] = worker("strun_run", env_extra=env, impl="ours", path=miri,
                                       oversample=3.0, workdir=workdir)
            out["strun_warm"] = worker("strun_run", env_extra=env, impl="ours", path=miri,
                                       oversample=3.0, workdir=workdir)
        with tempfile.TemporaryDirectory(prefix="atm_numba_cache_") as cache:
            env = {"NUMBA_CACHE_DIR": cache, "ATM_STEP_COMPILE_HELPER": "0"}
            out["strun_cold_no_helper"] = worker("strun_run", env_extra=env, impl="ours",
                                                 path=miri, oversample=3.0, workdir=workdir)
    return out


def extract_baseline(rev, workdir):
    """
    Extract commit ``rev``'s ``atm_step`` package under ``workdir`` (``git archive``).

    The repository's checkout and worktrees are not touched. Returns ``(commit, path)``:
    the abbreviated commit id and the folder to put on ``PYTHONPATH``. An extraction
    already present for the same commit is reused (it is written to a temporary folder
    first and renamed, so a stopped run leaves no half-extracted package).

    Raises
    ------
    RuntimeError
        If git is missing or ``rev`` does not name a commit of this repository.
    """
    import io
    import shutil
    import tarfile

    git = ["git", "-C", str(REPO)]
    try:
        res = subprocess.run(git + ["rev-parse", "--short=10", f"{rev}^{{commit}}"],
                             capture_output=True, text=True, check=False)
    except OSError as exc:
        raise RuntimeError(f"git is not available ({exc})") from exc
    if res.returncode:
        raise RuntimeError(f"git does not know the commit {rev!r}: {res.stderr.strip()}")
    commit = res.stdout.strip()
    dest = Path(workdir) / f"baseline_{commit}"
    if (dest / "atm_step" / "core" / "__init__.py").is_file():
        return commit, dest
    res = subprocess.run(git + ["archive", "--format=tar", commit, "atm_step"],
                         capture_output=True, check=False)
    if res.returncode:
        raise RuntimeError(f"git archive {commit} atm_step failed: "
                           f"{res.stderr.decode(errors='replace').strip()}")
    tmp = Path(tempfile.mkdtemp(prefix=f"baseline_{commit}_", dir=workdir))
    try:
        with tarfile.open(fileobj=io.BytesIO(res.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return commit, dest


def baseline_suite(rev, scene, N, workdir, repeats, rounds):
    """
    Our core on 1 thread at commit ``rev`` against the current tree, same scene.

    Three codes, each in a fresh ``ours_core`` worker with ``NUMBA_NUM_THREADS=1``:
    ``baseline`` (commit ``rev``'s ``atm_step``, extracted by `extract_baseline`, on
    ``PYTHONPATH`` with its own ``NUMBA_CACHE_DIR``), ``head`` (this tree) and
    ``head_off`` (this tree with `ACCURACY_ADDITIONS_OFF`). Each code runs with its own
    ``FitParameters.nirspec_ifu('NRS1')``. They alternate, ``rounds`` times
    (baseline, head, head_off, baseline, ...), so load drift on the shared machine hits
    all three alike; each figure is the best run over the rounds (each run itself the
    best of ``repeats`` after a warm-up call). Failures are recorded, not raised.
    """
    out = {"rev": rev, "N": N, "rounds": rounds, "repeats": repeats,
           "off_tuning": dict(ACCURACY_ADDITIONS_OFF)}
    try:
        commit, path = extract_baseline(rev, workdir)
    except (RuntimeError, OSError) as exc:
        out["error"] = str(exc)
        log(f"  baseline {rev}: not measured ({exc})")
        return out
    out["commit"] = commit
    cache = path / "numba_cache"
    cache.mkdir(exist_ok=True)
    inherited = os.environ.get("PYTHONPATH")

    def pythonpath(first):
        return os.pathsep.join([str(first)] + ([inherited] if inherited else []))

    common = dict(scenes=[scene], oversample=N, fit_threshold=0.0, slope_limit=0.0,
                  repeats=repeats, cores=1)
    codes = {
        "baseline": dict(env_extra={"PYTHONPATH": pythonpath(path),
                                    "NUMBA_CACHE_DIR": str(cache)}),
        "head": dict(env_extra={"PYTHONPATH": pythonpath(REPO)}),
        "head_off": dict(env_extra={"PYTHONPATH": pythonpath(REPO)},
                         tuning_if_present=dict(ACCURACY_ADDITIONS_OFF)),
        # this tree with NumPy's huge-page advice kept on, as the baseline has it
        # (a user's NUMPY_MADVISE_HUGEPAGE disables atm_step.core.memory's switch)
        "head_advice": dict(env_extra={"PYTHONPATH": pythonpath(REPO),
                                       "NUMPY_MADVISE_HUGEPAGE": "1"}),
    }
    out["worker_spec"] = {"kind": "ours_core", **common}
    runs = out["runs"] = {k: [] for k in codes}
    for i in range(rounds):
        for name, extra in codes.items():
            try:
                r = worker("ours_core", threads=1, **extra, **common)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                out["error"] = f"{name}, round {i + 1}: {str(exc)[-600:]}"
                log(f"  baseline {commit}: {name} failed, not measured: {exc}")
                return out
            runs[name].append(r)
            log(f"    round {i + 1}: {name} {fmt_s(r['wall'])} s ({r['module']})")
    best = out["best"] = {k: min(v, key=lambda r: r["wall"]) for k, v in runs.items()}
    expect = {"baseline": path / "atm_step", "head": REPO / "atm_step",
              "head_off": REPO / "atm_step", "head_advice": REPO / "atm_step"}
    wrong = [f"{k} measured {best[k]['module']}" for k in best
             if Path(best[k]["module"]) != expect[k].resolve()]
    if wrong:
        out["error"] = "wrong package measured: " + "; ".join(wrong)
        log(f"  baseline: {out['error']}")
        return out
    out["ratio"] = best["baseline"]["wall"] / best["head"]["wall"]
    out["ratio_off"] = best["baseline"]["wall"] / best["head_off"]["wall"]
    out["ratio_advice"] = best["baseline"]["wall"] / best["head_advice"]["wall"]
    log(f"    core on 1 thread, N={N:g}: {commit} {fmt_s(best['baseline']['wall'])} s, "
        f"now {fmt_s(best['head']['wall'])} s ({out['ratio']:.2f}x), additions off "
        f"{fmt_s(best['head_off']['wall'])} s ({out['ratio_off']:.2f}x)")
    return out


def provenance(argv, allow_dirty):
    """Commit, tree state, command line and machine; refuses a dirty tree."""
    git = ["git", "-C", str(REPO)]
    info = {"command": "python benchmarks/run_benchmarks.py " + " ".join(argv)}
    try:
        info["commit"] = subprocess.run(git + ["rev-parse", "--short=10", "HEAD"],
                                        capture_output=True, text=True).stdout.strip()
        status = subprocess.run(
            git + ["status", "--porcelain", "--untracked-files=no", "--", ".",
                   ":!docs/performance.md", ":!docs/perf_fitted_slices.png"],
            capture_output=True, text=True).stdout.strip()
    except OSError:
        info["commit"], status = "unknown (no git)", ""
    info["dirty"] = bool(status)
    if status and not allow_dirty:
        sys.exit("run_benchmarks: the git tree has uncommitted changes; commit them (the "
                 "report names the commit it measured) or pass --allow-dirty:\n" + status)
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = next(int(line.split()[1]) for line in
                   Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")) / 1024**2
    except (OSError, StopIteration):
        mem = float("nan")
    versions = {}
    for mod in ("numpy", "numba", "jwst", "stdatamodels", "stpipe", "gwcs", "astropy"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - report what is there
            versions[mod] = "?"
    info["machine"] = (f"{platform.node()}: {cpu}, {os.cpu_count()} cores, {mem:.1f} GB RAM, "
                       f"{platform.system()} {platform.release()}, Python "
                       f"{platform.python_version()}; "
                       + ", ".join(f"{k} {v}" for k, v in versions.items()))
    # memory settings that move the system time of the runs (see docs/batch.md)
    thp = []
    for name in ("enabled", "defrag"):
        try:
            text = Path(f"/sys/kernel/mm/transparent_hugepage/{name}").read_text().split()
            thp.append(f"{name} " + next((w.strip("[]") for w in text if w.startswith("[")),
                                         "?"))
        except OSError:
            pass
    info["machine"] += ("; transparent huge pages: " + (", ".join(thp) or "unknown")
                        + "; NUMPY_MADVISE_HUGEPAGE "
                        + os.environ.get("NUMPY_MADVISE_HUGEPAGE", "not set"))
    try:
        info["load_start"] = os.getloadavg()
    except OSError:
        info["load_start"] = None
    return info


def run(args, argv):
    quick = args.quick
    cfg = {
        "nx": 256 if quick else 2048,
        "ny": 2048,
        "repeats": 2 if quick else 3,
        "jwst_max_fit": 1 if quick else args.jwst_slices,
        "sweep_nx": 256 if quick else 1024,
        "sweep_repeats": 1 if quick else 2,
        "jwst_full": [] if quick else ["crowded N=3", "MIRI MRS N=3"],
        "baseline_rounds": args.baseline_rounds or (2 if quick else 3),
    }
    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        workdir = Path(tempfile.gettempdir()) / "atm_step_bench"
        workdir.mkdir(exist_ok=True)
    results = {"config": cfg, "quick": quick, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
               **provenance(argv, args.allow_dirty)}
    results["host"] = results["machine"]
    checkpoint = workdir / "results_partial.json"
    t_all = time.perf_counter()

    def save(section):
        results["elapsed"] = time.perf_counter() - t_all
        results["done"] = results.get("done", []) + [section]
        checkpoint.write_text(json.dumps(results, indent=1, default=float))
        log(f"  (checkpoint: {section} done, {results['elapsed'] / 60:.1f} min)")

    log(f"atm-step benchmarks ({'quick' if quick else 'full'}) at {results['commit']}"
        f"{' (DIRTY TREE)' if results['dirty'] else ''}, work dir {workdir}")
    Ns = (3.0,) if quick else tuple(float(n) for n in args.oversample)
    jwst_max = cfg["jwst_max_fit"]

    log("scenes ...")
    sc = {name: save_scene(name, cfg["nx"], cfg["ny"], workdir / f"{name}_{cfg['nx']}.npz")
          for name in ("point_source", "crowded")}
    small = save_scene("crowded", 256, 2048, workdir / "crowded_small.npz")
    miri = worker("make_miri", workdir=str(workdir))["path"]

    # the headline figures first (jwst in full takes long; a stopped run keeps them)
    results["steps"] = []
    results["ifu"] = []
    ifu = results["ifu"]
    N0 = max(Ns)
    log(f"MIRI MRS N={N0:g}, Step.call (jwst in full) ...")
    full = f"MIRI MRS N={N0:g}" in cfg["jwst_full"]
    miri_row = step_config("MIRI MRS point source", miri, N0, str(workdir), cfg["repeats"],
                           max_fit=None if full else jwst_max, hows=("call",))
    results["steps"].append(miri_row)
    save(f"MIRI MRS N={N0:g} Step.call")

    def crowded(N):
        full = f"crowded N={N:g}" in cfg["jwst_full"]
        ifu.append(ifu_config("crowded, 30 slices", sc["crowded"], N, 0.0, 0.0,
                              {**cfg, "jwst_max_fit": None if full else jwst_max},
                              cfg["repeats"]))
        save(f"crowded N={N:g}")

    log("NIRSpec-IFU-like scenes (array level) ...")
    crowded(N0)
    if args.baseline.lower() != "none":
        log(f"core on 1 thread, crowded N=3: {args.baseline} against this tree "
            f"({cfg['baseline_rounds']} alternating rounds) ...")
        results["baseline"] = baseline_suite(args.baseline, sc["crowded"], 3.0, workdir,
                                             cfg["repeats"], cfg["baseline_rounds"])
        save("baseline")
    log(f"MIRI MRS N={N0:g}, in a pipeline ...")
    miri_row["pipeline"] = step_config("MIRI MRS point source", miri, N0, str(workdir),
                                       cfg["repeats"], max_fit=None if full else jwst_max,
                                       hows=("pipeline",))["pipeline"]
    save(f"MIRI MRS N={N0:g} in a pipeline")
    for N in sorted(Ns, reverse=True):
        if N != N0:
            crowded(N)
        ifu.append(ifu_config("point source, default", sc["point_source"], N, 10.0, 0.1,
                              cfg, cfg["repeats"]))
        save(f"point source N={N:g}")
    for N in sorted(Ns, reverse=True)[1:]:
        full = f"MIRI MRS N={N:g}" in cfg["jwst_full"]
        results["steps"].append(step_config("MIRI MRS point source", miri, N, str(workdir),
                                            cfg["repeats"],
                                            max_fit=None if full else jwst_max))
        save(f"MIRI MRS N={N:g}")

    log("NIRSpec IFU (mock WCS) and MOS steps ...")
    ifu_file = worker("make_ifu", workdir=str(workdir), scene=sc["point_source"],
                      name="point_source", nx=cfg["nx"], ny=cfg["ny"])["path"]
    results["steps"].append(step_config("NIRSpec IFU point source (mock WCS)", ifu_file, 3.0,
                                        str(workdir), cfg["repeats"], max_fit=jwst_max))
    save("NIRSpec IFU step")
    mos_dir = Path(os.environ.get("ATM_STEP_TEST_DATA", REPO.parent / "shared" / "data"))
    mos = sorted((mos_dir / "nirspec_mos").glob("*.fits"))
    for N in sorted(Ns, reverse=True):
        for path in mos[: 1 if quick else args.mos_files]:
            results["steps"].append(step_config(f"NIRSpec MOS nod {path.name[24]}", str(path),
                                                N, str(workdir), cfg["repeats"]))
    save("MOS steps")

    log("strun end to end (file in, file out), with the import and I/O floor ...")
    # (quick mode: MOS only; jwst's strun of the MIRI file always runs in full)
    results["strun"] = [] if quick else [strun_config("MIRI MRS point source", miri, 3.0,
                                                      str(workdir))]
    if mos:
        results["strun"].append(strun_config(f"NIRSpec MOS nod {mos[0].name[24]}",
                                             str(mos[0]), 3.0, str(workdir)))
    save("strun")

    log("JIT (cold and warm cache, fresh processes) ...")
    results["jit"] = jit_suite(small, cold=not quick, miri=None if quick else miri,
                               workdir=str(workdir))
    save("JIT")

    for key in ("sweep_slices", "sweep_oversample", "sweep_window", "sweep_cores",
                "sweep_batch"):
        results[key] = []
    results["sweep_nx"] = cfg["sweep_nx"]
    try:
        sweeps(results, cfg, sc, workdir, quick)
        save("sweeps")
    except Exception as exc:  # noqa: BLE001 - keep the measured figures
        results["sweep_error"] = repr(exc)
        log(f"scaling sweeps failed: {exc!r}")
    bench_batch = HERE / "bench_batch.py"
    results["bench_batch_present"] = bench_batch.is_file()
    results["elapsed"] = time.perf_counter() - t_all
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
    # all 30 slices fitted, then one fitted slice (one bright slice, or a single slit):
    # the fit's column chunks are shared out between threads in both (issue 12, goal 4)
    results["sweep_cores"] = []
    one = {**common, "force_fitted": 1, "fit_threshold": 10.0, "slope_limit": 0.1}
    for c in (1, 2):
        r = worker("ours_core", threads=c, cores=c, **common)
        r1 = worker("ours_core", threads=c, cores=c, **one)
        results["sweep_cores"].append({
            "cores": c, "ours": r["wall"], "fit": r["stages"].get("spline fits"),
            "one": r1["wall"], "one_fit": r1["stages"].get("spline fits")})
    batch_scenes = [save_scene("point_source", sw, cfg["ny"],
                               workdir / f"point_source_{sw}_{i}.npz", seed=i + 1)
                    for i in range(4)]
    runs = worker("ours_sweep", common=dict(oversample=3.0, fit_threshold=10.0,
                                            slope_limit=0.1, repeats=cfg["sweep_repeats"]),
                  jobs=[dict(scenes=batch_scenes[:n]) for n in (1, 2, 4)])["runs"]
    results["sweep_batch"] = [{"n": len(r["scenes"]), "ours": r["wall"],
                               "peak_delta_mb": r["peak_delta_mb"]} for r in runs]


# ----------------------------------------------------------------------------- report
def _row(rows, label, N):
    for r in rows or []:
        if r["label"].startswith(label) and r["N"] == N:
            return r
    return None


def first_run_extra(jit):
    """Extra wall time of a user's first ``strun`` (empty Numba cache) over a second."""
    if "strun_cold" in jit and "strun_warm" in jit:
        return jit["strun_cold"]["wall"] - jit["strun_warm"]["wall"]
    return np.nan


def headline(results):
    ifu = results.get("ifu", [])
    steps = results.get("steps", [])
    crowd3 = _row(ifu, "crowded", 3.0)
    point3 = _row(ifu, "point source", 3.0)
    miri3 = _row(steps, "MIRI MRS", 3.0)
    nrs3 = _row(steps, "NIRSpec IFU", 3.0)
    mos3 = _row(steps, "NIRSpec MOS", 3.0)
    strun_miri = _row(results.get("strun"), "MIRI MRS", 3.0)
    jit = results.get("jit", {})
    base = results.get("baseline")
    base_name = (base or {}).get("commit") or (base or {}).get("rev") or BASELINE_REV
    nan = np.nan

    def get(row, *keys):
        for k in keys:
            if row is None or k not in row:
                return nan
            row = row[k]
        return row

    warm_start = get(jit, "warm", "import") + get(jit, "warm", "compile")
    over = [f"{r['label']} N={r['N']:g}: {r['ours']['peak_delta_mb']:.0f} vs "
            f"{r['jwst']['peak_delta_mb']:.0f} MB"
            for r in ifu + steps
            if r["ours"]["peak_delta_mb"] > r["jwst"]["peak_delta_mb"]]
    over += [f"strun {r['label']}: {r['ours']['peak_mb']:.0f} vs {r['jwst']['peak_mb']:.0f} MB"
             + (f" (Numba's import and JIT engine: {r['ours']['floor']['numba_mb']:.0f} MB of "
                "ours)" if "numba_mb" in r["ours"].get("floor", {}) else "")
             for r in results.get("strun", []) if r["ours"]["peak_mb"] > r["jwst"]["peak_mb"]]
    rows = [
        ("MIRI MRS point source, N=3: Step.call speed-up", get(miri3, "call", "ratio"),
         GOALS["miri_ratio"], ">=", fmt_x),
        ("MIRI MRS point source, N=3: in a pipeline (no copy), speed-up",
         get(miri3, "pipeline", "ratio"), None, None, fmt_x),
        ("MIRI MRS point source, N=3: strun end to end, speed-up", get(strun_miri, "ratio"),
         None, None, fmt_x),
        ("NIRSpec IFU (mock WCS) point source, N=3: Step.call speed-up",
         get(nrs3, "call", "ratio"), None, None, fmt_x),
        ("NIRSpec MOS nod 1, N=3: Step.call speed-up", get(mos3, "call", "ratio"), None, None,
         fmt_x),
        ("crowded 30-slice NIRSpec-IFU-like, N=3 (arrays): speed-up", get(crowd3, "ratio"),
         GOALS["crowded_ratio"], ">=", fmt_x),
        ("crowded 30-slice, N=3: our wall on 1 core (s)", get(crowd3, "ours", "wall"),
         GOALS["crowded_wall_1core"], "<", fmt_s),
        (f"core on 1 thread, crowded N=3: speed-up over {base_name}", get(base, "ratio"),
         GOALS["core_speedup_baseline"], ">=", fmt_x),
        (f"core on 1 thread, crowded N=3, accuracy additions off: speed-up over "
         f"{base_name}", get(base, "ratio_off"), None, None, fmt_x),
        (f"core on 1 thread, crowded N=3, NumPy's huge-page advice on (as {base_name}): "
         f"speed-up over {base_name}", get(base, "ratio_advice"), None, None, fmt_x),
        ("point source default, N=3 (arrays): speed-up", get(point3, "ratio"),
         GOALS["point_ratio"], ">=", fmt_x),
        ("first strun with an empty Numba cache: extra over a second run (s)",
         first_run_extra(jit), GOALS["first_run_extra"], "<=", fmt_s),
        ("JIT compile of the core, cold cache (s)", get(jit, "cold", "compile"), None, None,
         fmt_s),
        ("warm start: import + residual compile/load (s)", warm_start, GOALS["jit_warm"], "<",
         fmt_s),
    ]
    out = []
    for name, value, goal, op, f in rows:
        goal_txt = "-" if goal is None else f"{op} {f(goal)}"
        if value is None or not np.isfinite(value):
            out.append((name, "not measured", goal_txt, "-"))
            continue
        if goal is None:
            out.append((name, f(value), goal_txt, "-"))
            continue
        met = value >= goal if op == ">=" else value <= goal if op == "<=" else value < goal
        by = value / goal if op == ">=" else goal / value
        out.append((name, f(value), goal_txt, "met" if met else
                    f"MISSED ({by:.2f} of the goal)"))
    measured_mem = bool(ifu or steps or results.get("strun"))
    out.append(("peak memory no more than jwst's (every scene)",
                ("not measured" if not measured_mem else "yes" if not over
                 else "no; ours higher in " + "; ".join(over)),
                "yes", "-" if not measured_mem else "met" if not over else "MISSED"))
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


def _steps_section(results):
    rows = []
    for r in results.get("steps", []):
        cells = [r["label"], f"{r['N']:g}"]
        for how in ("pipeline", "call"):
            m = r.get(how)
            if m is None:
                cells += ["-", "-", "-"]
                continue
            extr = " *" if m["jwst"].get("extrapolated") else ""
            cells += [fmt_s(m["jwst"]["wall"]) + extr, fmt_s(m["ours"]["wall"]),
                      f"**{fmt_x(m['ratio'])}**"]
        m = r.get("call") or r.get("pipeline")
        cells += [fmt_s(r["core"]["wall"]) if "core" in r else "-",
                  f"{m['jwst']['peak_delta_mb']:.0f} / {m['ours']['peak_delta_mb']:.0f}",
                  "yes" if m["same_shape"] else "NO"]
        rows.append(cells)
    return table(["scene", "N", "jwst in pipeline (s)", "ours in pipeline (s)", "speed-up",
                  "jwst Step.call (s)", "ours Step.call (s)", "speed-up", "our core (s)",
                  "peak MB jwst / ours (Step.call)", "same output shape"], rows)


def _strun_section(results):
    rows = []
    for r in results.get("strun", []):
        j, o = r["jwst"], r["ours"]
        fo, fj = o.get("floor", {}), j.get("floor", {})
        floor_o = fo.get("process_wall", np.nan)
        rows.append([
            r["label"], f"{r['N']:g}", fmt_s(j["wall"]), fmt_s(o["wall"]),
            f"**{fmt_x(r['ratio'])}**",
            fmt_s(fo.get("import", np.nan)),
            fmt_s(fo.get("open", np.nan) + fo.get("save", np.nan)),
            fmt_s(floor_o), fmt_s(o["wall"] - floor_o),
            fmt_s(j["wall"] - fj.get("process_wall", np.nan)),
            f"{j['peak_mb']:.0f} / {o['peak_mb']:.0f}",
            f"{fj.get('peak_mb', np.nan):.0f} / {fo.get('peak_mb', np.nan):.0f}",
            f"{fo.get('numba_mb', np.nan):.0f}",
        ])
    return table(["file", "N", "jwst strun (s)", "ours strun (s)", "speed-up",
                  "import floor (s)", "I/O floor: open + save (s)",
                  "floor process wall (s)", "ours above floor (s)", "jwst above floor (s)",
                  "peak RSS MB jwst / ours", "floor peak RSS MB jwst / ours",
                  "Numba's fixed MB"], rows)


def _baseline_section(results):
    """Report lines of the core-speed comparison against the baseline commit."""
    b = results.get("baseline")
    if not b:
        return []
    name = b.get("commit") or b.get("rev")
    lines = [f"## Core on 1 thread against commit {name}", ""]
    if "ratio" not in b:
        return lines + [f"Not measured: {b.get('error', 'no result')}.", ""]
    off = ", ".join(f"`{k}={v}`" for k, v in b["best"]["head_off"]["tuning_applied"].items())
    absent = b["best"]["head_off"].get("tuning_absent") or []
    unwrapped = b["best"]["baseline"].get("stages_unwrapped") or []
    cfg = results["config"]
    labels = {"baseline": f"{name} (before issue 12), its preset",
              "head": f"{results.get('commit', 'this tree')}, its preset",
              "head_off": f"{results.get('commit', 'this tree')}, accuracy additions off",
              "head_advice": f"{results.get('commit', 'this tree')}, its preset, with "
                             "NumPy's huge-page advice (`NUMPY_MADVISE_HUGEPAGE=1`)"}
    rows = []
    for key in [k for k in ("baseline", "head", "head_off", "head_advice") if k in b["best"]]:
        best = b["best"][key]
        rows.append([labels[key], fmt_s(best["wall"]),
                     fmt_x(b["best"]["baseline"]["wall"] / best["wall"]),
                     ", ".join(fmt_s(r["wall"]) for r in b["runs"][key]),
                     fmt_s(best.get("user_cpu")), fmt_s(best.get("system_cpu")),
                     *stage_cells(best["stages"]), best["n_fitted"]])
    spec = json.dumps(b["worker_spec"])
    lines += [
        f"Issue 12, goal 3: our core at commit `{name}` (\"today\" when the issue was "
        f"filed) against this tree, on the crowded {cfg['ny']}x{cfg['nx']} scene, "
        f"N = {b['N']:g}, all 30 slices fitted, 1 thread (`NUMBA_NUM_THREADS=1`). Each "
        "code runs with its own `FitParameters.nirspec_ifu('NRS1')` (what a user gets); "
        "the third row is this tree with the accuracy work added since switched off "
        f"({off}), so it separates the cost of that work from the speed of the code. "
        "The fourth row is this tree with NumPy's huge-page advice left on, as the "
        f"baseline has it: since {name} the step and the core switch it off while they "
        "run (`atm_step.core.memory`), which changes system time (page faults), not the "
        "computation; user and system CPU are those of the best run. "
        f"The {b['rounds']} rounds alternate the codes (each round: {name}, this "
        "tree, additions off, advice on) in fresh processes, so load drift hits all alike; each "
        f"figure is the best over the rounds, each run the best of {b['repeats']} after "
        f"a warm-up call. `{name}`'s `atm_step` is extracted by "
        f"`git archive {name} atm_step` into the work dir and put first on `PYTHONPATH`, "
        "with its own `NUMBA_CACHE_DIR`.",
        "",
        table(["code", "best (s)", f"speed-up over {name}", "per round (s)",
               "user CPU (s)", "system CPU (s)", *STAGES, "fitted slices"], rows),
        "",
    ]
    notes = []
    if absent:
        notes.append("switches absent from this tree: " + ", ".join(absent))
    if unwrapped:
        notes.append(f"stage functions absent at {name} (their time is in other): "
                     + ", ".join(unwrapped))
    if notes:
        lines += ["Notes: " + "; ".join(notes) + ".", ""]
    lines += [f"Command: `{results.get('command', 'python benchmarks/run_benchmarks.py')}` "
              f"(`--baseline {b['rev']}`); one worker: `PYTHONPATH=<work dir>/baseline_"
              f"{name} NUMBA_NUM_THREADS=1 python benchmarks/workers.py '{spec}'`.", ""]
    return lines


def _cores_section(rows):
    """The cores table: the whole core and its spline fits, all slices and one slice."""
    first = rows[0]

    def cell(r, key):
        if r.get(key) is None:
            return "-"
        return f"{fmt_s(r[key])} ({fmt_x(first[key] / r[key])})"

    header = ["cores (`maximum_cores`, `NUMBA_NUM_THREADS`)", "all slices: core (s)",
              "all slices: spline fits (s)", "one fitted slice: core (s)",
              "one fitted slice: spline fits (s)"]
    return [table(header, [[r["cores"], cell(r, "ours"), cell(r, "fit"), cell(r, "one"),
                            cell(r, "one_fit")] for r in rows]), "",
            "(speed-up over 1 core in brackets) The spline fits share out column chunks "
            "of 129 columns, not only slices, between threads (`trace_fit._run_regions`): "
            "one fitted slice also runs on every core, and the output is the same bit for "
            "bit on any number of threads. A slice's column norms, pixel table and GCV "
            "penalty (before its chunks) and the columns reusing an earlier chunk's fit "
            "(after them) stay serial within that slice, about a fifth of a slice's fit "
            "on the crowded scene; the stages after the fits work on whole images. With "
            "one fitted slice the spline-fit stage is mostly `fit_regions`' set-up of "
            "full-detector arrays (its output images), which does not scale with threads: "
            "the chunks of one slice are a few tens of ms of it.", ""]


def report(results, out_md, png):
    cfg = results["config"]
    done = results.get("done")
    lines = ["# Performance: atm-step vs jwst 3.0's adaptive_trace_model", ""]
    load = results.get("load") or []
    lines += [
        f"Generated by `{results.get('command', 'python benchmarks/run_benchmarks.py')}` "
        f"at commit `{results.get('commit', '?')}`"
        f"{' **with uncommitted changes (--allow-dirty)**' if results.get('dirty') else ''}"
        f", started {results['started']}; whole run {results['elapsed'] / 60:.1f} min.",
        "",
        f"Machine: {results.get('machine', results.get('host', '?'))}. Load average at the "
        f"start {', '.join(f'{x:.1f}' for x in results.get('load_start') or [])}, at the "
        f"end {', '.join(f'{x:.1f}' for x in load)} (the machine is shared: absolute times "
        "are noisy; ratios measured back to back in one run are what count)."
        + (" **Quick mode**: 256-column detector, fewer repeats; figures are indicative."
           if results["quick"] else ""),
        "",
    ]
    if done is not None and "sweeps" not in done:
        lines += [f"**Partial run**: measured sections: {', '.join(done)}. Sections not "
                  "listed were not measured (the run was stopped or failed).", ""]
    lines += [
        "Every ratio is jwst's time over ours, both measured in this run on the very same "
        "input, each in its own fresh process, back to back. Ours: best of "
        f"{cfg['repeats']} repeats after one warm-up call (the JIT cache is warm; "
        "first-run costs are reported apart below). jwst: measured once. Rows marked `*` "
        "extrapolate jwst's time from the slices it really fitted (see Method); "
        f"jwst runs in full for: {', '.join(cfg.get('jwst_full') or ['none'])}, and for "
        "every `strun` row.",
        "",
        "## Headline",
        "",
        table(["figure", "measured", "goal", "status"], headline(results)),
        "",
    ]
    miri = _row(results.get("steps"), "MIRI MRS", 3.0)
    if miri is not None and "call" in miri:
        m = miri["call"]
        st = m["ours"]["stages"]
        lines += [f"MIRI MRS N=3, our `Step.call` ({fmt_s(m['ours']['wall'])} s) against our "
                  f"core alone on the same arrays ({fmt_s(miri['core']['wall'])} s): the "
                  f"rest is the step's work around the core (WCS evaluation of the "
                  f"oversampled pixels, write-back, output model; "
                  f"{fmt_s(st.get('errors/DQ/WCS', 0))} s in errors/DQ/WCS of the "
                  "breakdown below) and stpipe's own overhead. "
                  f"At {GOALS['miri_ratio']:.0f}x our step would need <= "
                  f"{fmt_s(m['jwst']['wall'] / GOALS['miri_ratio'])} s.", ""]
    lines += _baseline_section(results)
    if results.get("steps"):
        lines += ["## Steps on files: in a pipeline and by Step.call", "",
                  "MIRI MRS: real ch3+4 LONG geometry (`atm_step.validation.miri` builder) "
                  "with a point source. NIRSpec IFU: the point-source scene below on the "
                  "mock NIRSpec IFU WCS (`atm_step.simulate.to_datamodel`). NIRSpec MOS: "
                  "flight cutouts. Both steps run on the same opened model (`skip=False`): "
                  "*in a pipeline* the step's parent is a pipeline, so stpipe makes no copy "
                  "of the input (as in `calwebb_spec2`); *Step.call* is the standalone call, "
                  "where jwst's step deep-copies the input and ours builds its output "
                  "model anew without copying the input. File I/O is not in these times "
                  "(see strun below). Our core: the core alone on the arrays our adapter "
                  "hands it.", "", _steps_section(results), ""]
    if results.get("strun"):
        lines += ["## strun end to end (file in, file out)", "",
                  "`strun <step class> FILE --oversample=3 --skip=False` in a fresh "
                  "process, timed from start to exit (warm Numba cache). Floor: a fresh "
                  "process that only imports stpipe, jwst's Step machinery and the step's "
                  "module (import floor), opens the input reading every array and saves "
                  "the product strun wrote (I/O floor). Peak RSS: the strun process's "
                  "maximum resident size; floor peak RSS: the floor process's (jwst's "
                  "step module imports much of scipy; ours imports its core only when "
                  "the step runs). Numba's fixed MB: in our floor process, the resident "
                  "size after `import numba` and one of our cached kernels has run, "
                  "minus before: the import and the JIT engine that every process "
                  "running a kernel pays, whatever the size of the data, so it weighs "
                  "most on small files.", "", _strun_section(results), ""]
    if results.get("ifu"):
        lines += ["## NIRSpec-IFU-like scenes at array level", "",
                  f"Simulated {cfg['ny']}x{cfg['nx']} detector "
                  "(`atm_step.simulate.make_scene`), 30 slices: jwst's `fit_all_regions` + "
                  "`oversample_flux` (or `_trace_image` at N=1) + "
                  "`linear_oversample`/`_inflate_error` of the errors, with jwst's "
                  "NRS_IFU/NRS1 fit parameters and thresholds, against "
                  "`atm_step.core.adaptive_trace_model` with "
                  "`FitParameters.nirspec_ifu('NRS1')`, on 1 core (`NUMBA_NUM_THREADS=1`).",
                  ""]
        rows = []
        for r in results["ifu"]:
            j, o = r["jwst"], r["ours"]
            extr = " *" if j.get("extrapolated") else ""
            per_j = j["wall"] / j["n_fitted"] if j.get("n_fitted") else None
            per_o = o["wall"] / o["n_fitted"] if o.get("n_fitted") else None
            rows.append([
                r["label"], f"{r['N']:g}", f"{j.get('n_fitted', '-')}",
                fmt_s(j["wall"]) + extr, fmt_s(o["wall"]), f"**{fmt_x(r['ratio'])}**",
                (fmt_s(per_j) if per_j else "-") + " / " + (fmt_s(per_o) if per_o else "-"),
                f"{j['peak_delta_mb']:.0f} / {o['peak_delta_mb']:.0f}",
                "yes" if r["same_shape"] else f"NO {j['shape']} vs {o['shape']}",
            ])
        lines += [table(["scene", "N", "fitted slices", "jwst (s)", "ours (s)", "speed-up",
                         "s per fitted slice jwst / ours", "peak MB jwst / ours",
                         "same output shape"], rows), ""]
    lines += ["`*` extrapolated: jwst fitted only the first "
              f"{cfg['jwst_max_fit']} of the slices passing its threshold; the other "
              "slices' fit and oversampling cost is their measured per-slice cost "
              "(see Method). Peak MB: rise of resident memory over the process's size "
              "before the run (inputs loaded), measured in separate processes.", ""]
    # breakdown
    rows = []
    for r in results.get("ifu", []) + results.get("steps", []):
        for impl in ("jwst", "ours"):
            st = r[impl]["stages"]
            rows.append([r["label"], f"{r['N']:g}", impl, *stage_cells(st),
                         f"{r[impl]['peak_mb']:.0f}"])
    if rows:
        lines += ["## Per-stage breakdown (s)", "",
                  table(["scene", "N", "impl", *STAGES, "peak RSS (MB)"], rows), "",
                  "Stages: statistics = image statistics and fit threshold; spline fits = "
                  "the per-column B-spline fits; oversampling = linear, spline and residual "
                  "models and their combination (`_trace_image` at N=1 for jwst), in ours "
                  "also the errors and variances (one pass); errors/DQ/WCS = jwst's error "
                  "oversampling, and in both the DQ, along-slice coordinates from the WCS, "
                  "write-back and the WCS update; I/O = opening the file and saving the "
                  "result (steps: `Step.call` rows); other = the rest (stpipe, copies).", ""]
    # scaling
    sk = results.get("sweep_slices") or []
    crowd = _row(results.get("ifu"), "crowded", 3.0)
    if sk and crowd is not None:
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
                        [[r["k"], fmt_s(r["ours"]), fmt_s(r["fit"]),
                          fmt_s(base + per * r["k"]),
                          fmt_x((base + per * r["k"]) / r["ours"])] for r in sk]), ""]
        if len(sk) > 1:
            slope = np.polyfit([r["k"] for r in sk], [r["ours"] for r in sk], 1)
            lines += [f"Ours: {slope[1]:.2f} s fixed + {slope[0] * 1000:.0f} ms per fitted "
                      f"slice (least-squares line).", ""]
        lines += [table(["oversample N", "ours (s)"],
                        [[r["N"], fmt_s(r["ours"])] for r in results["sweep_oversample"]]),
                  "", "(all 30 slices fitted, `slope_limit=0`)", "",
                  table(["column window (+-)", "ours (s)"],
                        [[r["window"], fmt_s(r["ours"])] for r in results["sweep_window"]]),
                  "",
                  *_cores_section(results["sweep_cores"]),
                  table(["exposures in one process (point source, N=3)", "ours total (s)",
                         "per exposure (s)", "peak MB"],
                        [[r["n"], fmt_s(r["ours"]), fmt_s(r["ours"] / r["n"]),
                          f"{r['peak_delta_mb']:.0f}"] for r in results["sweep_batch"]]), "",
                  "jwst processes exposures independently, so its batch time is n times "
                  "its single-exposure time." +
                  (" Throughput of the batch runner: `benchmarks/bench_batch.py`."
                   if results.get("bench_batch_present") else ""), ""]
    jit = results.get("jit")
    if jit:
        core_rows = [[k, fmt_s(v["import"]), fmt_s(v["first"]), fmt_s(v["steady"]),
                      fmt_s(v["compile"]), fmt_s(v["process_wall"])]
                     for k, v in jit.items() if not k.startswith("strun")]
        lines += ["## First run: Numba compilation (apart from the steady-state figures)", "",
                  "Core: a fresh process with an empty `NUMBA_CACHE_DIR` (cold), then a "
                  "second fresh process with the same cache (warm), each running the core "
                  "on a small crowded scene (all code paths: fits, oversampling, errors, "
                  "variances). compile = first call - steady call. With the empty cache "
                  "the core starts its compile helper process (`atm_step.core.precompile`).",
                  "",
                  table(["cache", "import atm_step.core (s)", "first call (s)",
                         "steady call (s)", "compile/load (s)", "process wall (s)"],
                        core_rows), ""]
        if "strun_cold" in jit:
            lines += ["A user's first `strun atm_step.AdaptiveTraceModelStep` of the MIRI MRS "
                      "file at N = 3 with an empty Numba cache, then a second one on the "
                      f"filled cache: {fmt_s(jit['strun_cold']['wall'])} s and "
                      f"{fmt_s(jit['strun_warm']['wall'])} s, so the first run costs "
                      f"**{fmt_s(first_run_extra(jit))} s** more."
                      + (" Without the helper process that compiles the image-stage kernels "
                         "in parallel on a first run (`atm_step.core.precompile`, "
                         "`ATM_STEP_COMPILE_HELPER=0`), the first `strun` took "
                         f"{fmt_s(jit['strun_cold_no_helper']['wall'])} s, "
                         f"{fmt_s(jit['strun_cold_no_helper']['wall'] - jit['strun_warm']['wall'])}"
                         " s more than the warm one."
                         if "strun_cold_no_helper" in jit else ""), ""]
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
              "- Rows marked `*`: jwst runs `fit_all_regions` over every slice (its "
              "threshold test runs for all), but `fit_2d_spline_trace` really fits only "
              f"the first {cfg['jwst_max_fit']} passing slices. Missing slices are "
              "added at the measured mean fit time per slice, and at the measured extra "
              "`oversample_flux` cost of a fitted slice over a linear-only slice. Rows "
              "without `*` ran jwst in full.",
              "- jwst gets the oversampled along-slice coordinate precomputed at array "
              "level (jwst's step takes it from the WCS); it is created inside jwst's "
              "memory measurement but outside its timing, while our core computes its "
              "own inside the timed call.",
              "- Warm start = `import atm_step.core` + (first call - steady call) in a "
              "fresh process whose Numba cache is already filled.",
              f"- Code measured: atm-step commit `{results.get('commit', '?')}`"
              f"{' (with uncommitted changes)' if results.get('dirty') else ''}; "
              f"command `{results.get('command', '?')}`.", ""]
    out_md.write_text("\n".join(lines) + "\n")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="256-column detector, fewer repeats")
    ap.add_argument("--jwst-slices", type=int, default=3,
                    help="slices jwst really fits in the extrapolated rows (full mode)")
    ap.add_argument("--oversample", nargs="+", default=["1", "3"],
                    help="oversampling factors of the scene comparisons (full mode)")
    ap.add_argument("--mos-files", type=int, default=3,
                    help="NIRSpec MOS nods to run (full mode)")
    ap.add_argument("--baseline", default=BASELINE_REV,
                    help="commit whose core the 1-thread crowded N=3 speed-up is measured "
                         "against (its atm_step is extracted by git archive into the work "
                         "dir); 'none' skips it")
    ap.add_argument("--baseline-rounds", type=int, default=None,
                    help="alternating rounds of the baseline comparison (default 3, "
                         "quick 2)")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="measure a git tree with uncommitted changes (the report says so)")
    ap.add_argument("--out", default=None,
                    help="report file; default docs/performance.md, or "
                         "<workdir>/performance_quick.md with --quick (a quick run never "
                         "replaces the committed report unless told to)")
    ap.add_argument("--json", default=None, help="also write the raw results here")
    ap.add_argument("--workdir", default=None,
                    help="folder for the inputs (reused when present), outputs and the "
                         "checkpoint results_partial.json; default <tmp>/atm_step_bench")
    ap.add_argument("--report-from", default=None,
                    help="render the report from a --json or checkpoint file instead of "
                         "measuring")
    args = ap.parse_args(argv)
    if args.report_from:
        results = json.loads(Path(args.report_from).read_text())
    else:
        results = run(args, argv)
    if args.out is None:
        quick = args.quick or results.get("quick")
        args.out = str(Path(args.workdir or Path(tempfile.gettempdir()) / "atm_step_bench")
                       / "performance_quick.md" if quick else REPO / "docs" / "performance.md")
    out_md = Path(args.out)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    png = out_md.parent / "perf_fitted_slices.png"
    if results.get("sweep_slices") and _row(results.get("ifu"), "crowded", 3.0):
        plot_slices(results, png)
    report(results, out_md, png)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    print()
    print(table(["headline", "measured", "goal", "status"], headline(results)))
    print(f"\nwrote {out_md} ({results['elapsed'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
