"""The stpipe Step: a drop-in replacement for jwst's ``adaptive_trace_model`` step."""

import copy
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np
from stdatamodels.jwst import datamodels

from jwst.datamodels import ModelContainer, SourceModelContainer
from jwst.stpipe import Step

from atm_step.atomic import atomic_save, check_writable
from atm_step.input_files import check_step_input, opening

__all__ = ["AdaptiveTraceModelStep"]

log = logging.getLogger(__name__)

#: Suffixes of the intermediate products, as jwst writes them.
INTERMEDIATE_SUFFIXES = {
    "spline_full": "full spline model",
    "spline_used": "spline model used for compact sources",
    "linear_interp": "linearly interpolated data",
    "spline_residual": "spline residuals",
}


#: Class names in parameter files written for jwst's step, read as ours.
JWST_STEP_CLASSES = (
    "jwst.adaptive_trace_model.adaptive_trace_model_step.AdaptiveTraceModelStep",
    "jwst.adaptive_trace_model.AdaptiveTraceModelStep",
    "jwst.step.AdaptiveTraceModelStep",
    "adaptive_trace_model",
)


def accept_jwst_parameter_class(cls, config, jwst_classes):
    """
    Let a parameter file written for a jwst class configure ``cls``.

    stpipe refuses a parameter file whose ``class`` is not a subclass of the class
    being configured; a file exported from jwst's step (or pipeline) names jwst's
    class. When it names one of ``jwst_classes``, the entry is replaced by ``cls``,
    so the file's parameters apply unchanged.

    Parameters
    ----------
    cls : type
        The atm-step Step or Pipeline class being configured.
    config : dict-like
        The parameter-file section; updated in place.
    jwst_classes : sequence of str
        jwst class names (or aliases) accepted in place of ``cls``.
    """
    if "class" in config and str(config["class"]) in jwst_classes:
        log.debug("Reading parameters written for %s as %s", config["class"], cls.__name__)
        config["class"] = f"{cls.__module__}.{cls.__name__}"


class AdaptiveTraceModelStep(Step):
    """
    Fit adaptive trace models to spectral images and optionally oversample them.

    Accepts the same parameters as jwst 3.0's ``adaptive_trace_model`` step, with the
    same meanings and defaults, except that ``skip`` defaults to False. The extra
    tuning parameters (``nknots``, ``window``, ``pad``, ``sigma_reject``,
    ``max_iter``, ``gap_ratio``, ``residual_shrinkage``, ``two_profiles``) default to
    None, meaning the observing mode's preset (`atm_step.core.FitParameters`).

    Supported inputs: NIRSpec IFU and MIRI MRS ``IFUImageModel``; NIRSpec fixed-slit,
    BOTS and MOS ``SlitModel`` and ``MultiSlitModel``; MIRI LRS fixed-slit and slitless
    ``SlitModel``; a file name of any of these, an
    association, or a ``ModelContainer`` (each model is processed separately). Any
    other model (imaging, a model without a WCS, a multi-integration cube with
    ``oversample != 1``) is returned unchanged with ``S_TRCMOD = 'FAILED'`` and an
    error message naming the file and the reason.

    Output names: run on its own (``strun atm``, ``Step.call`` with
    ``save_results``), the step writes ``<root>_atm.fits``, as ``atm-step run`` and
    the shipped parameter files do; inside jwst's pipelines it follows the pipeline's
    naming (``<root>_adaptive_trace_model.fits`` when saved).

    Source: D. R. Law et al., "Mitigating Resampling Artifacts for the JWST IFU
    Spectrometers with Adaptive Trace Modeling". The datamodel contract (extensions,
    keywords, WCS frames, DQ flags) is that of jwst 3.0's step; see
    ``docs/modes.md``.
    """

    # No numpydoc section headings above: ``strun atm --help`` prints this docstring
    # as one paragraph, where an underlined heading would read as "Notes -----".

    class_alias = "adaptive_trace_model"

    #: Resolved paths of the files the last `process` read (never saved over).
    _input_paths = frozenset()

    spec = """
    fit_threshold = float(default=10.0) # Limiting sigma for fitting splines; <= 0 fits every region
    oversample = float(default=1.0) # Oversample the data along the slice by this factor (>= 1)
    slope_limit = float(default=0.1) # Normalised-slope limit for using splines when oversampling
    psf_optimal = boolean(default=False) # Isolated point source: fit and use splines everywhere, no residual
    save_intermediate_results = boolean(default=False) # Save spline, used spline, linear and residual images
    skip = boolean(default=False) # Skip the step (False: runs by default, unlike jwst's step)
    output_use_model = boolean(default=True) # Use input filenames in the output models
    maximum_cores = string(default='none') # Cores for fitting: an integer, 'none', 'quarter', 'half' or 'all'
    nknots = integer(default=None) # Spline knot intervals across a slice (None: mode preset)
    window = integer(default=None) # Half-width of the column window of each fit (None: preset)
    pad = integer(default=None) # Padding of the compact-source band, native pixels (None: preset)
    sigma_reject = float(default=None) # Rejection threshold of the spline fit, in rms (None: preset)
    max_iter = integer(default=None) # Fit-and-reject passes per column (None: preset)
    gap_ratio = float(default=None) # Largest sampling gap, in knot intervals, before reusing a fit
    residual_shrinkage = float(default=None) # Wiener weight of the band's residual model, in errors (0: off; None: mode preset, 1 for NIRSpec IFU and MIRI MRS)
    two_profiles = boolean(default=None) # Two profiles for two sources with different spectra in a slice (None: mode preset, on for NIRSpec IFU)
    """  # noqa: E501

    @classmethod
    def _parse_class_and_name(cls, config, parent=None, name=None, config_file=None):
        # accept parameter files exported from jwst's own step (stpipe hook)
        accept_jwst_parameter_class(cls, config, JWST_STEP_CLASSES)
        return super()._parse_class_and_name(
            config, parent=parent, name=name, config_file=config_file
        )

    def default_suffix(self):
        """
        Output suffix when none is given: ``atm`` for a standalone run.

        Inside a pipeline the step keeps stpipe's default (its name,
        ``adaptive_trace_model``), as jwst's step does there.

        Returns
        -------
        str
        """
        if self.parent is None:
            return "atm"
        return super().default_suffix()

    @classmethod
    def _get_crds_parameters(cls, dataset):
        # stpipe reads a file's metadata here, before the step runs, whatever the CRDS
        # setting: check the file (or the association and its members, or each file of
        # a list) first, so that a bad one gets one clear message
        check_step_input(dataset)
        # stpipe warns about an OSError and goes on; process() then opens the file
        with opening(dataset, passthrough=(OSError,)):
            return super()._get_crds_parameters(dataset)

    @staticmethod
    def get_stpipe_loggers():
        """
        Names of the loggers stpipe configures: jwst's, plus ``atm_step``.

        Returns
        -------
        tuple of str
        """
        return ("atm_step", *Step.get_stpipe_loggers())

    def process(self, input_data):
        """
        Fit trace models to every model of the input and oversample if asked.

        Parameters
        ----------
        input_data : str, IFUImageModel, SlitModel, MultiSlitModel or ModelContainer
            File name, association file name, datamodel or container (a
            ``SourceModelContainer``, as calwebb_spec3 passes for slits, included).

        Returns
        -------
        IFUImageModel, SlitModel, MultiSlitModel or ModelContainer
            A new model for each input model (in a new container of the input's kind;
            the input is never modified) with a ``trace_model`` image and, for
            ``oversample > 1``, oversampled arrays and WCS.
            ``meta.cal_step.adaptive_trace_model`` is 'COMPLETE' or 'FAILED'.

        Raises
        ------
        ValueError
            If a parameter is outside its allowed range (see `check_parameters`).
        OSError
            Run standalone with ``save_results`` (``strun``), if no file can be created
            in the output folder (checked before any work; see
            `atm_step.atomic.check_writable`).
        atm_step.input_files.InputFileError
            (a ValueError) If the input file, or a file of the list, is missing, empty,
            corrupt, truncated (a gzip-compressed file included), not a JWST datamodel,
            or a step parameter file; if an association cannot be read, lists no
            members, or a member has one of those problems (the message names the
            association and the member); if a list of files is empty; or if stdatamodels
            cannot open a file that passed these checks (a corrupt embedded ASDF tree,
            no SCI extension, arrays of the wrong dimensions): the message names the
            file and quotes the error on one line.
        """
        self.check_parameters()
        check_step_input(input_data)  # one clear message for a bad file or member
        if self.save_results and self.parent is None:
            # strun: a folder where the output cannot be written fails now, not after the fit
            # the folder stpipe's own naming puts the output in
            folder = os.path.dirname(self.make_output_path(basepath="output.fits")) or "."
            if os.path.isdir(folder):
                check_writable(folder)
        # no copy of the input: each output model is built anew from it (see
        # `atm_step.modes.writeback.new_output_model`), so the caller's model is
        # never modified
        with opening(input_data):
            source = self.prepare_output(input_data, make_copy=False)
        self._input_paths = _files_read(input_data, source)
        #: one dict per processed model: file, mode, oversample, regions, fitted,
        #: from_model, estimated, seconds (read by the batch runner's report)
        self.summaries = []
        self.add_asn_id_to_output_name(source)
        if not isinstance(source, ModelContainer):
            return self._process_model(source)
        if isinstance(source, SourceModelContainer):
            # calwebb_spec3's container of one source's slits: the same kind comes back,
            # saved as one MultiExposureModel under the source's product name
            output = _source_container(source, [self._process_model(m) for m in source])
        else:
            output = ModelContainer()
            for model in source:
                output.append(self._process_model(model))
        for attr in ("asn_exptypes", "asn_table"):
            setattr(output, attr, copy.deepcopy(getattr(source, attr, None)))
        for attr in ("asn_n_members", "asn_table_name", "asn_pool_name", "asn_file_path"):
            setattr(output, attr, getattr(source, attr, None))
        return output

    #: Step parameters checked against `atm_step.core.parameters.LIMITS` (None: preset).
    CHECKED_PARAMETERS = ("oversample", "fit_threshold", "slope_limit", "pad", "nknots",
                          "window", "sigma_reject", "max_iter", "gap_ratio", "residual_shrinkage")

    def check_parameters(self):
        """
        Check every parameter once, before any data are read.

        Numeric parameters must lie in their ranges of
        `atm_step.core.parameters.LIMITS` (NaN is refused); ``maximum_cores`` must be
        'none', 'one', 'quarter', 'half', 'all' or a whole number >= 1. A number above
        the machine's cores is capped to them, with a warning.

        Raises
        ------
        ValueError
            Naming the parameter, its value and the allowed range.
        """
        from atm_step.core.parameters import LIMITS, check_parameter

        for name in self.CHECKED_PARAMETERS:
            value = getattr(self, name, None)
            if value is None and name in ("oversample", "fit_threshold", "slope_limit"):
                raise ValueError(f"{type(self).__name__}: parameter {name} must be "
                                 f"{LIMITS[name].describe()}; got None")
            if value is not None:
                try:
                    check_parameter(name, value)
                except ValueError as exc:
                    raise ValueError(f"{type(self).__name__}: {exc}") from None
        self._cores = requested_cores(self.maximum_cores, os.cpu_count() or 1)

    def save_model(self, model, suffix=None, idx=None, output_file=None, force=False,
                   **components):
        """
        Save a model under the step's naming scheme, atomically (stpipe hook).

        As `stpipe.Step.save_model`, but a single model is written through a
        temporary name and renamed into place (`atm_step.atomic.atomic_save`): a kill
        or crash during the write leaves the previous file (or none), never a
        truncated one under the final name. Containers and libraries are handed to
        stpipe, which calls back here for each model.

        Parameters
        ----------
        model : DataModel, ModelContainer or ModelLibrary
            What to save.
        suffix, idx, output_file, force, **components
            As for `stpipe.Step.save_model`.

        Returns
        -------
        str or list or None
            The output path(s); None if nothing was to be saved.

        Raises
        ------
        OSError
            If the output cannot be written (a read-only folder, a full disk): the
            message names the output; the previous file is left as it was (see
            `atm_step.atomic.atomic_save`). `FileExistsError` if the output path is
            one of the input files (the input is never overwritten).
        """
        from collections.abc import Sequence

        from stpipe.library import AbstractModelLibrary

        if isinstance(model, (AbstractModelLibrary, Sequence)):
            return super().save_model(model, suffix=suffix, idx=idx, output_file=output_file,
                                      force=force, **components)
        if output_file is None or output_file == "":
            output_file = self.output_file
        if not force and not self.save_results and not output_file:
            return None
        if self.output_use_model or (output_file is None and not self.search_output_file):
            output_file = model.meta.filename
            idx = None
        path = self.make_output_path(basepath=output_file, suffix=suffix, idx=idx,
                                     **components)
        if Path(path).resolve() in self._input_paths:
            # e.g. --suffix=cal on a *_cal.fits file in the output folder
            raise FileExistsError(
                f"{path}: cannot save the output: it would overwrite the input file; give "
                "another suffix or output folder (--suffix, --output_dir)"
            )
        atomic_save(model, path)
        log.info("Saved model in %s", path)
        return path

    # ------------------------------------------------------------------
    def _tuning(self):
        names = ("nknots", "window", "sigma_reject", "max_iter", "gap_ratio", "residual_shrinkage",
                 "two_profiles")
        return {k: getattr(self, k) for k in names if getattr(self, k, None) is not None}

    def _n_cores(self, n_regions):
        cores = getattr(self, "_cores", None)
        if cores is None:
            cores = requested_cores(self.maximum_cores, os.cpu_count() or 1)
        return max(1, min(cores, n_regions))

    def _process_model(self, model):
        """Process one datamodel; returns the new output model, with S_TRCMOD set."""
        from atm_step.core.memory import no_huge_page_advice

        # the oversampled images are gigabytes of fresh memory: see atm_step.core.memory
        with no_huge_page_advice():
            return self._process_model_body(model)

    def _process_model_body(self, model):
        """The work of `_process_model`."""
        from atm_step.modes import UnsupportedModelError, adapters_for, check_model
        from atm_step.modes.writeback import (
            DROPPED_ARRAYS,
            REPLACED_ARRAYS,
            finish_output_model,
            new_output_model,
        )

        name = model.meta.filename
        log.info("Fitting trace model for %s", name)
        if model.meta.cal_step.adaptive_trace_model == "COMPLETE":
            log.warning(
                "%s already went through adaptive_trace_model (S_TRCMOD = COMPLETE): it is "
                "modelled again%s", name,
                ", and its pixels, oversampled before, are oversampled again"
                if self.oversample != 1 else "",
            )

        def failed(exc):
            # the input as it is, marked FAILED: the reason is logged, not raised
            log.error("%s", exc)
            log.warning("No trace model will be attempted.")
            output = new_output_model(model)
            _mark_failed(output)
            return finish_output_model(output, model)

        try:
            check_model(model, self.oversample)
            adapters = adapters_for(model)
        except UnsupportedModelError as exc:
            return failed(exc)

        t0 = time.perf_counter()
        # an oversampled model gets new science arrays: the native ones are not copied
        leave_out = REPLACED_ARRAYS + DROPPED_ARRAYS if self.oversample != 1 else ()
        output = new_output_model(model, leave_out)
        targets = output.slits if isinstance(output, datamodels.MultiSlitModel) else [output]
        intermediates = []
        totals = {"regions": 0, "fitted": 0, "from_model": 0, "estimated": 0}
        for adapter, target in zip(adapters, targets, strict=True):
            try:
                # what the adapters find only on reading the WCS (a slice map that
                # does not fit the image, no pixel in any slice) fails the model too
                result, images = self._process_one(adapter, target, single=len(adapters) == 1)
            except UnsupportedModelError as exc:
                return failed(exc)
            intermediates.append((target, images))
            totals["regions"] += int(result.region_ids.size)
            totals["fitted"] += result.n_fitted
            totals["from_model"] += result.n_from_model
            totals["estimated"] += result.n_estimated
        if self.save_intermediate_results:
            # written before S_TRCMOD is set, as jwst's intermediate products are
            self._save_intermediate(output, intermediates)
        output.meta.cal_step.adaptive_trace_model = "COMPLETE"
        seconds = time.perf_counter() - t0
        self.summaries.append(
            {"file": name, "mode": adapters[0].mode, "oversample": float(self.oversample),
             **totals, "seconds": seconds}
        )  # fmt: skip
        log.info(
            "%s: %s, N=%g: %d/%d regions fitted, %d pixels from the model, "
            "%d bad pixels filled, %.2f s",
            name,
            adapters[0].mode,
            self.oversample,
            totals["fitted"],
            totals["regions"],
            totals["from_model"],
            totals["estimated"],
            seconds,
        )
        return finish_output_model(output, model)

    def _process_one(self, adapter, target, single=True):
        """Run the core on one image (IFU exposure or one slit); write into ``target``.

        Raises `UnsupportedModelError` if the adapter cannot read the image's WCS, or if
        no pixel of a ``single`` image (not one slit of several) lies in a region; a
        slit of several with none is modelled (all NaN) with a warning."""
        from atm_step.core import adaptive_trace_model
        from atm_step.core.stats import region_ids
        from atm_step.modes import UnsupportedModelError
        from atm_step.modes.writeback import apply_result, intermediate_images

        label = adapter.name
        if getattr(adapter.model, "name", None):
            log.info("Working on slit %s", adapter.model.name)
        inputs = adapter.core_inputs(self.oversample)
        n_regions = int(region_ids(inputs.regions).size)
        if n_regions == 0:
            msg = (
                f"{adapter.where}: no pixel lies in a {adapter.mode} region (the WCS gives "
                "no along-slice coordinate on the detector, or the region map is empty)"
            )
            if single:
                raise UnsupportedModelError(msg + "; nothing to model")
            log.warning("%s; its oversampled image is all NaN", msg)
        result = adaptive_trace_model(
            inputs.flux,
            inputs.alpha,
            inputs.regions,
            # at N = 1 the data, errors and variances are left as they are
            err=inputs.err if self.oversample > 1 else None,
            variances=inputs.variances if self.oversample > 1 else None,
            oversample=self.oversample,
            fit_threshold=self.fit_threshold,
            slope_limit=self.slope_limit,
            pad=self.pad if self.pad is not None else inputs.pad,
            psf_optimal=self.psf_optimal,
            alpha_os=inputs.alpha_os,
            channel_groups=inputs.channel_groups,
            parameters=inputs.parameters,
            maximum_cores=self._n_cores(n_regions),
            # the full spline, linear and residual images only for the intermediate products
            intermediates=bool(self.save_intermediate_results),
            **self._tuning(),
        )
        for i, rid in enumerate(result.region_ids):
            log.debug(
                "  %s region %d: %s, %d columns fitted, %d reused, band %.1f rows",
                label,
                rid,
                "fitted" if result.fitted[i] else "below threshold",
                result.n_columns_fitted[i],
                result.n_columns_reused[i],
                result.n_band_rows[i],
            )
        images = intermediate_images(adapter, result) if self.save_intermediate_results else None
        apply_result(adapter, result, target)
        if n_regions and np.isfinite(inputs.flux).any() and not np.isfinite(target.data).any():
            log.warning(
                "%s: every pixel of the output SCI array is NaN although the input has "
                "finite pixels in %d regions: check the input's uncertainties and DQ",
                adapter.where, n_regions,
            )
        return result, images

    def _save_intermediate(self, model, intermediates):
        """Write the intermediate images with jwst's suffixes."""
        basepath = model.meta.filename
        for suffix, what in INTERMEDIATE_SUFFIXES.items():
            if intermediates[0][1][suffix] is None:
                log.info("No %s to save for oversample=%g", what, self.oversample)
                continue
            if isinstance(model, datamodels.MultiSlitModel):
                out = datamodels.MultiSlitModel()
                out.update(model, only="PRIMARY")
                for target, images in intermediates:
                    slit = datamodels.SlitModel(data=images[suffix].astype(np.float32))
                    slit.update(target)
                    slit.meta.wcs = target.meta.wcs
                    slit.meta.bunit_err = None
                    slit.dq = None
                    slit.err = None
                    out.slits.append(slit)
            else:
                cls = type(model)
                out = cls(data=intermediates[0][1][suffix].astype(np.float32))
                out.update(model)
                out.meta.wcs = model.meta.wcs
                out.dq = None
                out.err = None
                out.meta.bunit_err = None
            path = self.make_output_path(basepath=basepath, suffix=suffix)
            atomic_save(out, path)
            out.close()
            log.info("Saved %s in %s", what, path)


#: Words ``maximum_cores`` accepts, as fractions of the machine's cores (jwst's set).
CORE_WORDS = {"none": None, "one": None, "quarter": 4, "half": 2, "all": 1}


def requested_cores(maximum_cores, available):
    """
    Threads asked for by the ``maximum_cores`` parameter.

    Parameters
    ----------
    maximum_cores : str or int
        'none' or 'one' (1), 'quarter', 'half', 'all' (that fraction of ``available``,
        at least 1), or a whole number >= 1 (capped to ``available``, with a warning).
    available : int
        Cores of this machine.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        For any other value (e.g. 'lots', '0', '-2', '1.5'), naming the accepted ones.

    Notes
    -----
    Convention: jwst's ``maximum_cores`` (`stcal.multiprocessing.compute_num_cores`),
    which silently uses one core for values it does not understand.
    """
    text = str(maximum_cores).strip().lower()
    if text in CORE_WORDS:
        div = CORE_WORDS[text]
        return 1 if div is None else max(1, available // div)
    if text.isdigit() and int(text) >= 1:
        n = int(text)
        if n > available:
            log.warning("maximum_cores=%s is more than the %d cores of this machine; using %d",
                        text, available, available)
            return available
        return n
    raise ValueError(
        f"parameter maximum_cores={maximum_cores!r} is not allowed: it must be one of "
        f"{', '.join(repr(w) for w in CORE_WORDS)} or a whole number >= 1"
    )


def _source_container(source, models):
    """
    A new `SourceModelContainer` of ``models``, the outputs for the exposures of
    ``source`` (in order), with its MultiExposureModel's metadata.

    The input's MultiExposureModel keeps its own exposures: the new one gets the
    metadata only, copied, and one exposure per output model (jwst's step returns the
    input container, changed in place; this step never changes its input).
    """
    wrapped = source._multiexposure  # where jwst's container keeps it
    multi = datamodels.MultiExposureModel()
    multi.meta.instance.update(copy.deepcopy(wrapped.meta.instance))
    for model in models:
        multi.exposures.append(model)
    return SourceModelContainer(multi)


def _files_read(input_data, source):
    """
    Resolved paths of the input files: the file given, or an association's members.

    Parameters
    ----------
    input_data : str, os.PathLike or datamodel
        What the step was given.
    source : datamodel or ModelContainer
        What it opened.

    Returns
    -------
    set of Path
        Empty for a model or container given in memory.
    """
    if not isinstance(input_data, (str, os.PathLike)):
        return set()
    given = Path(input_data)
    paths = {given.resolve()}
    if isinstance(source, ModelContainer):
        for m in source:
            if m.meta.filename:
                paths.add((given.parent / m.meta.filename).resolve())
    return paths


def _mark_failed(model):
    """
    Set ``S_TRCMOD`` to FAILED, as jwst 3.0 does for input it cannot process.

    The datamodel schemas of jwst 2.0 (stdatamodels 5) allow only SKIPPED and COMPLETE
    for this keyword; there the step records SKIPPED, as jwst 2.0's own step does.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stdatamodels warns, and drops, a value off the enum
        model.meta.cal_step.adaptive_trace_model = "FAILED"
    if model.meta.cal_step.adaptive_trace_model != "FAILED":
        model.meta.cal_step.adaptive_trace_model = "SKIPPED"
