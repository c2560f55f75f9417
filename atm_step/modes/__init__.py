"""Observing-mode adapters: datamodel <-> arrays for the ATM core.

:func:`adapters_for` picks the adapter(s) for a datamodel:

==========================  ===================================  ==========================
datamodel                   exposure                              adapter
==========================  ===================================  ==========================
IFUImageModel               NIRSpec (detector NRS1/NRS2)          `NIRSpecIFUAdapter`
IFUImageModel               MIRI (MIR_MRS)                        `MIRIMRSAdapter`
SlitModel                   NIRSpec FS, BOTS, MOS                 `NIRSpecSlitAdapter`
SlitModel                   MIRI LRS fixed slit, slitless         `MIRILRSAdapter`
MultiSlitModel              NIRSpec FS, MOS                       one `NIRSpecSlitAdapter`
                                                                  per slit
==========================  ===================================  ==========================

Everything else raises `UnsupportedModelError` with the reason.
"""

import numpy as np

from atm_step.modes.base import VARIANCE_NAMES, CoreInputs, ModeAdapter, UnsupportedModelError
from atm_step.modes.miri_lrs import LRS_EXP_TYPES

__all__ = ["CoreInputs", "ModeAdapter", "UnsupportedModelError", "adapters_for", "check_model"]


def _has_wcs(model):
    try:
        return model.meta.wcs is not None
    except AttributeError:
        return False


def check_model(model, oversample):
    """
    Raise `UnsupportedModelError` if ATM cannot process ``model``.

    Parameters
    ----------
    model : JwstDataModel
        The input datamodel.
    oversample : float
        The requested oversampling factor.

    Raises
    ------
    UnsupportedModelError
        For a model type other than IFUImageModel, SlitModel or MultiSlitModel, an
        instrument or mode other than NIRSpec, MIRI MRS or MIRI LRS (fixed slit,
        slitless), a model (or slit) without a WCS,
        a multi-integration (TSO) model with ``oversample != 1``, a DQ, ERR or VAR_*
        array whose shape is not the SCI array's, or a slit model
        where the installed jwst (2.0) has no ``trace_model`` for slits.
    """
    from stdatamodels.jwst import datamodels

    name = model.meta.filename
    exp_type = str(model.meta.exposure.type)
    detector = str(model.meta.instrument.detector).upper()
    if not isinstance(
        model, (datamodels.IFUImageModel, datamodels.SlitModel, datamodels.MultiSlitModel)
    ):
        msg = (
            f"{name}: adaptive trace modelling needs a spectral IFUImageModel, SlitModel or "
            f"MultiSlitModel; got {type(model).__name__} (EXP_TYPE={exp_type})"
        )
        if "MIR_LRS" in exp_type:
            msg += "; MIRI LRS needs cal files in SlitModel form (jwst >= 2.0)"
        raise UnsupportedModelError(msg)
    if detector.startswith("NRS"):
        pass
    elif detector.startswith("MIR") and isinstance(model, datamodels.IFUImageModel):
        pass
    elif (
        detector.startswith("MIR")
        and isinstance(model, datamodels.SlitModel)
        and exp_type.upper() in LRS_EXP_TYPES
    ):
        pass
    else:
        raise UnsupportedModelError(
            f"{name}: no ATM adapter for {type(model).__name__} with detector {detector} "
            f"(EXP_TYPE={exp_type}); supported: NIRSpec IFU, FS, BOTS, MOS, MIRI MRS and "
            "MIRI LRS (fixed slit, slitless)"
        )
    if isinstance(model, (datamodels.SlitModel, datamodels.MultiSlitModel)) and (
        "trace_model" not in datamodels.SlitModel().schema.get("properties", {})
    ):
        raise UnsupportedModelError(
            f"{name}: slit modes need jwst >= 3.0 (stdatamodels >= 6), whose SlitModel "
            "holds a trace_model image; this jwst supports ATM for IFU data only"
        )
    if isinstance(model, datamodels.MultiSlitModel):
        if len(model.slits) == 0:
            raise UnsupportedModelError(f"{name}: MultiSlitModel holds no slits")
        units = list(model.slits)
    else:
        units = [model]
    for unit in units:
        label = getattr(unit, "name", None) or name
        if unit.data is not None and np.size(unit.data) == 0:
            raise UnsupportedModelError(
                f"{name}: {'slit ' + str(label) if unit is not model else 'the model'} holds "
                f"no pixels (data shape {np.shape(unit.data)}); nothing to model"
            )
        if not _has_wcs(unit):
            raise UnsupportedModelError(
                f"{name}: {'slit ' + str(label) + ' has' if unit is not model else 'model has'}"
                " no WCS (meta.wcs); run assign_wcs first"
            )
        if unit.data is None or unit.data.ndim not in (2, 3):
            raise UnsupportedModelError(f"{name}: data must be a 2-D image or a 3-D stack")
        if unit.data.ndim == 3 and float(oversample) != 1.0:
            raise UnsupportedModelError(
                f"{name}: oversampling (oversample={oversample}) is not supported for "
                f"multi-integration (TSO) data of shape {unit.data.shape}; use oversample=1 "
                "to attach a trace model only"
            )
        _check_array_shapes(unit, name, None if unit is model else label)


#: Arrays that must have the science array's shape where present (the NIRSpec IFU
#: ``regions`` slice map is checked by its adapter).
PIXEL_ARRAYS = ("dq", "err", *VARIANCE_NAMES)


def _check_array_shapes(unit, name, slit):
    """Raise `UnsupportedModelError` if a DQ, ERR or VAR_* array of ``unit`` (the
    model or one slit, ``slit`` its name) does not have the SCI array's shape."""
    shape = np.shape(unit.data)
    for attr in PIXEL_ARRAYS:
        if not unit.hasattr(attr):
            continue
        arr = getattr(unit, attr)
        # a 3-D stack may carry one 2-D DQ plane for every integration
        if arr is None or np.shape(arr) == shape or (
            attr == "dq" and len(shape) == 3 and np.shape(arr) == shape[1:]
        ):
            continue
        where = f"slit {slit}'s" if slit is not None else "its"
        raise UnsupportedModelError(
            f"{name}: {where} {attr.upper()} array has shape {np.shape(arr)}, but SCI has "
            f"{shape}; the arrays of one image must match pixel for pixel (a damaged or "
            "hand-edited file?)"
        )


def adapters_for(model):
    """
    Adapters for every image in ``model`` (one, or one per slit).

    Parameters
    ----------
    model : IFUImageModel, SlitModel or MultiSlitModel
        A model that passed :func:`check_model`.

    Returns
    -------
    list of ModeAdapter
    """
    from stdatamodels.jwst import datamodels

    detector = str(model.meta.instrument.detector).upper()
    if isinstance(model, datamodels.IFUImageModel):
        if detector.startswith("NRS"):
            from atm_step.modes.nirspec_ifu import NIRSpecIFUAdapter

            return [NIRSpecIFUAdapter(model)]
        from atm_step.modes.miri_mrs import MIRIMRSAdapter

        return [MIRIMRSAdapter(model)]
    if detector.startswith("MIR"):
        from atm_step.modes.miri_lrs import MIRILRSAdapter

        return [MIRILRSAdapter(model)]
    from atm_step.modes.nirspec_slit import NIRSpecSlitAdapter

    if isinstance(model, datamodels.MultiSlitModel):
        return [NIRSpecSlitAdapter(slit, meta_model=model) for slit in model.slits]
    return [NIRSpecSlitAdapter(model)]
