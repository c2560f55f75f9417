"""Write an `ATMResult` back into a datamodel, the same way for every mode.

With ``N == 1`` only the ``trace_model`` image is attached; the science arrays are
left as they were (jwst's contract). With ``N > 1``:

- SCI, ERR and the variances are replaced by the core's oversampled images; for
  flux-density units (e.g. MJy) they are divided by ``N`` (variances by ``N**2``) so
  that flux is conserved; surface brightness (MJy/sr) is left as it is;
- DQ is taken from the nearest native pixel; where the model filled a missing (NaN)
  pixel, DO_NOT_USE is cleared and FLUX_ESTIMATED set. A finite pixel flagged
  DO_NOT_USE (never in jwst's products; e.g. a DQ array all DO_NOT_USE) keeps its flag
  and becomes NaN, with a warning; jwst's step re-flags it FLUX_ESTIMATED;
- WAVELENGTH is evaluated from the WCS at the oversampled pixels; the region map
  (IFU models) is carried from the nearest native pixel;
- the WCS gains a leading ``coordinates`` frame mapping oversampled pixels back to
  native detector pixels;
- PIXAR_SR and PIXAR_A2 are divided by ``N``;
- per-pixel correction arrays that no longer match (area, bar shadow, flat, path
  loss, photom, zero frame) are dropped;
- NaN and DO_NOT_USE are made consistent across SCI, ERR, variances and DQ, except
  that an ERR or variance array with no finite value where SCI is finite (errors
  unknown) is left out, with a warning: SCI is kept, not blanked (jwst blanks it).
"""

import logging

import numpy as np
from stcal.resample.utils import is_flux_density
from stdatamodels.jwst.datamodels import dqflags

__all__ = ["apply_result", "finish_output_model", "intermediate_images", "new_output_model",
           "DROPPED_ARRAYS", "REPLACED_ARRAYS"]

log = logging.getLogger(__name__)

#: Per-pixel arrays removed from an oversampled model (their pixels no longer exist).
DROPPED_ARRAYS = (
    "area",
    "barshadow",
    "flatfield_point",
    "flatfield_uniform",
    "pathloss_point",
    "pathloss_uniform",
    "photom_point",
    "photom_uniform",
    "zeroframe",
)

#: Per-pixel arrays an oversampled model gets anew (the native ones are not copied).
REPLACED_ARRAYS = (
    "data", "dq", "err", "var_poisson", "var_rnoise", "var_flat", "wavelength", "regions",
    "trace_model",
)  # fmt: skip

_DNU = dqflags.pixel["DO_NOT_USE"]
_EST = dqflags.pixel["FLUX_ESTIMATED"]


def _f32(adapter, arr, scale):
    """
    A core-oriented float64 image as the file's float32 image in detector orientation,
    times ``scale``: the product is formed in float64 and rounded once to float32, as
    ``(arr * scale).astype(np.float32)``, but without that expression's two
    full-size temporaries (a 2048 x 6144 float64 image is 100 MB of fresh memory).
    Values beyond float32's range (e.g. the huge placeholder variances of unflattened
    pixels, times the inflation X**2) become inf, as they do in jwst's step; numpy's
    overflow warning for that is silenced.
    """
    arr = np.asarray(arr)
    out = np.empty(adapter.from_core(arr, contiguous=False).shape, dtype=np.float32)
    # Iterate in the source's memory order and write through the output's view in
    # core orientation: for a transposed mode this is 5-10x faster than reading the
    # transposed source in the output's order (same values).
    with np.errstate(over="ignore"):
        np.multiply(arr, scale, out=adapter.to_core(out), casting="same_kind")
    return out


def flux_scale(adapter, oversample):
    """
    Factor applied to flux-like images: ``1/N`` for flux densities (e.g. MJy), else 1.

    The unit is the image's own (`ModeAdapter.data_unit`): per slit for a
    MultiSlitModel, as jwst's ``photom`` writes it and jwst's step reads it.
    """
    if oversample != 1 and is_flux_density(adapter.data_unit()):
        return 1.0 / float(oversample)
    return 1.0


def intermediate_images(adapter, result):
    """
    The four intermediate images in detector orientation and output units.

    Parameters
    ----------
    adapter : ModeAdapter
        The adapter that produced the core inputs.
    result : ATMResult
        The core's result.

    Returns
    -------
    dict of str to ndarray or None
        ``spline_full``, ``spline_used``, ``linear_interp`` and ``spline_residual``;
        the last two are None when ``oversample == 1`` (as in jwst).
    """
    scale = flux_scale(adapter, result.oversample)
    out = {
        "spline_full": adapter.from_core(result.spline) * scale,
        "spline_used": adapter.from_core(result.trace) * scale,
        "linear_interp": None,
        "spline_residual": None,
    }
    if result.oversample != 1:
        out["linear_interp"] = adapter.from_core(result.linear) * scale
        out["spline_residual"] = adapter.from_core(result.residual) * scale
    return out


def new_output_model(model, leave_out=()):
    """
    A new datamodel of the same class holding a copy of ``model``, built without
    validating each assignment and without copying the WCS.

    Metadata and arrays are copied, except the arrays named in ``leave_out``
    (at any depth, e.g. in every slit), which are left out so that the caller can
    assign new ones without copying the old ones first. WCS objects are not copied:
    the new model refers to the same `gwcs.WCS` objects, which this package never
    modifies in place (an oversampled model gets a new WCS, see
    `ModeAdapter.update_wcs`). ``model`` itself is not modified.

    The new model validates assignments as ``model`` does once the caller calls
    `finish_output_model`; saving it validates it against its schema.

    Parameters
    ----------
    model : JwstDataModel
        Source model (IFUImageModel, SlitModel, MultiSlitModel, ...).
    leave_out : sequence of str
        Names of arrays not to copy.

    Returns
    -------
    JwstDataModel
        The new model; left-out arrays are absent.
    """
    from gwcs import WCS
    from stdatamodels import DataModel

    memo = {}
    left_out = []

    def visit(node, parent):
        if isinstance(node, WCS):
            memo[id(node)] = node  # shared, not copied
        elif isinstance(node, dict):
            for key, val in node.items():
                if key in leave_out and isinstance(val, np.ndarray):
                    memo[id(val)] = None
                    left_out.append((parent, key))
                else:
                    visit(val, parent + (key,))
        elif isinstance(node, list):
            for i, val in enumerate(node):
                visit(val, parent + (i,))

    # the model's tree, read directly: reading it through attribute access would
    # create schema defaults for missing nodes
    visit(model._instance, ())  # noqa: SLF001
    out = type(model)(init=None, validate_on_assignment=False)
    DataModel.clone(out, model, deepcopy=True, memo=memo)
    for path, key in left_out:
        node = out._instance  # noqa: SLF001
        for p in path:
            node = node[p]
        node.pop(key, None)
    return out


def finish_output_model(out, like):
    """Let ``out`` (from `new_output_model`) validate assignments as ``like`` does."""
    out._validate_on_assignment = getattr(like, "_validate_on_assignment", True)  # noqa: SLF001
    return out


def apply_result(adapter, result, target=None):
    """
    Write the core's result for ``adapter.model`` into ``target``.

    Parameters
    ----------
    adapter : ModeAdapter
        Adapter wrapping the source model (or slit); read, not modified.
    result : ATMResult
        Result of `atm_step.core.adaptive_trace_model` on ``adapter.core_inputs``.
    target : DataModel or slit node, optional
        The output model (or its slit) to write into: a copy of ``adapter.model`` (see
        `new_output_model`), whose native arrays may be absent when ``N > 1``.
        Default: ``adapter.model`` itself, updated in place.

    Returns
    -------
    int
        Number of oversampled pixels newly flagged FLUX_ESTIMATED.
    """
    from jwst.lib.pipe_utils import match_nans_and_flags

    source = adapter.model
    model = source if target is None else target
    n = float(result.oversample)
    scale = flux_scale(adapter, n)
    if n != 1 and adapter.data_unit() is None:
        log.warning("%s: SCI has no unit (BUNIT); treated as surface brightness, so the "
                    "oversampled flux is not divided by N=%g", adapter.name, n)
    model.trace_model = _f32(adapter, result.trace, scale)
    if n == 1:
        return 0

    absent = _unknown_uncertainties(adapter)
    _warn_finite_do_not_use(adapter)
    near = result.near_row
    dq = adapter.nearest_native(source.dq, near).astype(np.uint32, copy=False)
    dq_c = adapter.to_core(dq)  # a view: flags set through it land in dq
    flux_c = result.flux
    # FLUX_ESTIMATED only where the model filled a missing (NaN) input pixel; a finite
    # pixel flagged DO_NOT_USE stays DO_NOT_USE (jwst re-flags it FLUX_ESTIMATED)
    estimated = result.estimated
    dq_c[estimated] &= ~np.uint32(_DNU)
    dq_c[estimated] |= np.uint32(_EST)

    model.data = _f32(adapter, flux_c, scale)
    model.dq = dq
    if result.err is not None:
        model.err = _f32(adapter, result.err, scale)
    for name, var in result.variances.items():
        setattr(model, name, _f32(adapter, var, scale**2))
    model.wavelength = np.asarray(adapter.oversampled_wavelength(n), dtype=np.float32)
    regions = adapter.output_regions()
    if regions is not None:
        model.regions = adapter.nearest_native(regions, near).astype(np.int32, copy=False)

    adapter.update_wcs(n, target=model)

    phot = model.meta.photometry
    if phot.pixelarea_steradians is not None:
        phot.pixelarea_steradians = phot.pixelarea_steradians / n
    if phot.pixelarea_arcsecsq is not None:
        phot.pixelarea_arcsecsq = phot.pixelarea_arcsecsq / n

    for name in DROPPED_ARRAYS:
        if model.hasattr(name):
            setattr(model, name, None)

    # NaN and DO_NOT_USE consistent across the arrays (jwst's convention), leaving out
    # uncertainty arrays that hold no value at all: they would blank every pixel
    saved = {name: getattr(model, name) for name in absent}
    for name in absent:
        setattr(model, name, None)
    match_nans_and_flags(model)
    for name, arr in saved.items():
        setattr(model, name, arr)
    return int(np.count_nonzero(estimated))


def _unknown_uncertainties(adapter):
    """
    Names of ERR / VAR_* arrays with no usable value where SCI is finite: none finite,
    or (variances) none finite and non-negative.

    Such an array carries no information (a file made without errors); NaN matching
    would turn all of SCI into NaN. It is left out of the matching, with a warning:
    SCI is kept, the array stays NaN.
    """
    model = adapter.model
    data = np.asarray(model.data)
    good = np.isfinite(data)
    if not good.any():
        return []
    absent = []
    for name in ("err", "var_poisson", "var_rnoise", "var_flat"):
        arr = getattr(model, name, None) if model.hasattr(name) else None
        if arr is None or np.shape(arr) != data.shape:
            continue
        values = np.asarray(arr)[good]
        usable = np.isfinite(values)
        if name.startswith("var_"):
            # a negative variance has no standard deviation: NaN once oversampled
            with np.errstate(invalid="ignore"):
                negative = usable & (values < 0)
            usable &= ~negative
            n_negative = int(np.count_nonzero(negative))
            if n_negative and usable.any():
                log.warning(
                    "%s: %s holds %d negative values where SCI is finite; those pixels "
                    "become NaN in every array (NaN matching)", adapter.where,
                    name.upper(), n_negative,
                )
        if not usable.any():
            absent.append(name)
    if absent:
        log.warning(
            "%s: %s %s no usable value where SCI is finite (NaN, or negative "
            "variances: uncertainties unknown); SCI is kept and %s stay NaN, instead of "
            "NaN-matching blanking every pixel",
            adapter.where, "/".join(n.upper() for n in absent),
            "holds" if len(absent) == 1 else "hold", "/".join(absent),
        )
    return absent


def _warn_finite_do_not_use(adapter):
    """Warn about finite SCI pixels flagged DO_NOT_USE (jwst products have none)."""
    model = adapter.model
    dq = getattr(model, "dq", None)
    if dq is None or np.shape(dq) != np.shape(model.data):
        return
    n = int(np.count_nonzero(np.isfinite(model.data) & ((np.asarray(dq) & _DNU) > 0)))
    if n:
        log.warning(
            "%s: %d pixels flagged DO_NOT_USE hold finite SCI values; they stay DO_NOT_USE "
            "(not FLUX_ESTIMATED) and become NaN in the oversampled image, as the flags say",
            adapter.name, n,
        )
