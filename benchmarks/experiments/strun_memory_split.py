"""Experiment, not part of the package: where the resident memory of an ``strun`` of
each step goes (docs/performance.md, "peak RSS MB jwst / ours" of the strun table).

Usage::

    python benchmarks/experiments/strun_memory_split.py [FILE] [--oversample 3]

FILE defaults to the first NIRSpec MOS file under ``$ATM_STEP_TEST_DATA/nirspec_mos``.
Each implementation runs in its own fresh process, which imports in stages and then
runs stpipe's ``strun`` entry point in-process on FILE (output to a temporary
folder); ``VmRSS`` is read after each stage and around the step's work, ``VmHWM``
(the process's peak, what the benchmark reports) at the end. Ours gets two extra
processes: one that imports LLVM's library (``llvmlite.binding``) and Numba apart,
refreshes Numba's target context as a first dispatch does (it imports every
lowering implementation of Numba's, whether the function is then compiled or loaded
from the cache) and compiles a trivial ``numba.njit`` function (the rest of starting
Numba's LLVM JIT); together, what the first compiled or cache-loaded function of any
Numba code costs; and one with ``NUMBA_DISABLE_JIT=1``
importing only (the Python side of our modules, no compiled code).
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import sys
impl, path, outdir, N, llvm = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
run = sys.argv[6] == "run"


def status():
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS", "VmHWM")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


marks = [("python", status())]
import jwst.stpipe  # noqa: E402
import stpipe  # noqa: E402, F401
from stdatamodels.jwst import datamodels  # noqa: E402, F401
from stpipe._cli.strun import main  # noqa: E402

marks.append(("stpipe, jwst.stpipe, datamodels, strun", status()))


def mark(owner, name, label):
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        marks.append((f"  before {label}", status()))
        out = original(*args, **kwargs)
        marks.append((f"  after {label}", status()))
        return out

    setattr(owner, name, wrapper)


if impl == "ours":
    if llvm == "llvm":
        import llvmlite.binding  # noqa: F401

        marks.append(("import llvmlite.binding (LLVM's library)", status()))
    import numba

    marks.append(("import numba", status()))
    if llvm == "llvm":
        from numba.core.registry import cpu_target

        # what a first dispatch does before it compiles or loads from the cache: import
        # every lowering implementation of Numba's (numba.np, numba.cpython, ...)
        cpu_target.target_context.refresh()
        marks.append((f"target context refresh ({len(sys.modules)} modules)", status()))

        @numba.njit
        def _one(x):
            return x + 1

        _one(1)
        marks.append(("first trivial njit compile (LLVM JIT start)", status()))
    import astropy.stats  # noqa: F401

    marks.append(("astropy.stats (the core's other import)", status()))
    import atm_step.core as core

    marks.append(("import atm_step.core", status()))
    import atm_step.modes  # noqa: F401
    import atm_step.step as step

    marks.append(("import atm_step.step, atm_step.modes", status()))
    mark(step.AdaptiveTraceModelStep, "_process_model", "the step's work")
    mark(core, "adaptive_trace_model", "core call")  # the step imports it at call time
    cls = "atm_step.AdaptiveTraceModelStep"
else:
    import jwst.adaptive_trace_model.adaptive_trace_model_step as jstep

    marks.append(("import jwst's step module", status()))
    mark(jstep.AdaptiveTraceModelStep, "process", "the step's work")
    mark(jstep, "fit_and_oversample", "fit_and_oversample")
    cls = "jwst.adaptive_trace_model.AdaptiveTraceModelStep"
if run:
    sys.argv = ["strun", cls, path, f"--oversample={N}", "--skip=False",
                f"--output_dir={outdir}"]
    try:
        main()
    except SystemExit:
        pass
    marks.append(("after strun", status()))
prev = 0.0
for label, st in marks:
    print(f"{label:46s} {st['VmRSS']:7.1f}  {st['VmRSS'] - prev:+7.1f}")
    prev = st["VmRSS"]
print(f"{'peak RSS (VmHWM)':46s} {marks[-1][1]['VmHWM']:7.1f}")
"""


def main():
    data = Path(os.environ.get("ATM_STEP_TEST_DATA", "/work/shared/data"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", nargs="?", default=None)
    ap.add_argument("--oversample", default="3")
    args = ap.parse_args()
    path = args.file or str(min((data / "nirspec_mos").glob("*.fits")))
    env = dict(os.environ, STPIPE_DISABLE_CRDS_STEPPARS="True",
               CRDS_SERVER_URL="https://jwst-crds.invalid")
    runs = [("jwst", "-", "run", {}), ("ours", "-", "run", {}), ("ours", "llvm", "run", {}),
            ("ours", "-", "import", {"NUMBA_DISABLE_JIT": "1"})]
    print(f"{Path(path).name}, N = {args.oversample}; VmRSS in MB after each stage, change\n")
    for impl, llvm, run, extra in runs:
        with tempfile.TemporaryDirectory(prefix="atm_strun_mem_") as out:
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, impl, path, out, args.oversample, llvm, run],
                capture_output=True, text=True, env={**env, **extra}, check=False,
            )
        title = {"llvm": ", LLVM JIT started first", "-": ""}[llvm]
        if extra:
            title += ", NUMBA_DISABLE_JIT=1, imports only"
        print(f"== {impl}{title}")
        if proc.returncode:
            print(proc.stderr[-2000:])
        print(proc.stdout)


if __name__ == "__main__":
    main()
