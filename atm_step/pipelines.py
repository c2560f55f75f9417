"""jwst's Spec2 and Spec3 pipelines with atm-step in the ``adaptive_trace_model`` slot.

Registered as ``calwebb_spec2_atm`` and ``calwebb_spec3_atm``. As in jwst, the slot
is skipped by default inside the pipelines; switch it on with
``--steps.adaptive_trace_model.skip=false``::

    strun calwebb_spec3_atm asn.json --steps.adaptive_trace_model.skip=false \\
        --steps.adaptive_trace_model.oversample=3
"""

from jwst.pipeline import Spec2Pipeline, Spec3Pipeline

from atm_step.step import AdaptiveTraceModelStep, accept_jwst_parameter_class

# Output names inside the pipelines are jwst's: with
# ``--steps.adaptive_trace_model.save_results=true`` the step's product is
# ``<root>_adaptive_trace_model.fits`` (Spec2) or ``<root>_<asn id>_adaptive_trace_model.fits``
# (Spec3; stpipe's naming for a step of a pipeline run on an association).

__all__ = ["PipelineAdaptiveTraceModelStep", "Spec2PipelineATM", "Spec3PipelineATM"]


class PipelineAdaptiveTraceModelStep(AdaptiveTraceModelStep):
    """`AdaptiveTraceModelStep` skipped by default, as jwst's step is inside pipelines."""

    spec = AdaptiveTraceModelStep.spec.replace(
        "skip = boolean(default=False)", "skip = boolean(default=True)"
    )


class Spec2PipelineATM(Spec2Pipeline):
    """jwst's `~jwst.pipeline.Spec2Pipeline` using atm-step for adaptive trace modelling."""

    class_alias = "calwebb_spec2_atm"
    #: atm-step's loggers are configured too, so the step's per-exposure summary shows
    get_stpipe_loggers = staticmethod(AdaptiveTraceModelStep.get_stpipe_loggers)
    step_defs = {**Spec2Pipeline.step_defs, "adaptive_trace_model": PipelineAdaptiveTraceModelStep}

    @classmethod
    def _parse_class_and_name(cls, config, parent=None, name=None, config_file=None):
        # accept parameter files exported from jwst's Spec2Pipeline (stpipe hook)
        accept_jwst_parameter_class(
            cls,
            config,
            ("jwst.pipeline.calwebb_spec2.Spec2Pipeline", "jwst.pipeline.Spec2Pipeline",
             "calwebb_spec2"),
        )
        return super()._parse_class_and_name(
            config, parent=parent, name=name, config_file=config_file
        )


class Spec3PipelineATM(Spec3Pipeline):
    """jwst's `~jwst.pipeline.Spec3Pipeline` using atm-step for adaptive trace modelling."""

    class_alias = "calwebb_spec3_atm"
    #: atm-step's loggers are configured too, so the step's per-exposure summary shows
    get_stpipe_loggers = staticmethod(AdaptiveTraceModelStep.get_stpipe_loggers)
    step_defs = {**Spec3Pipeline.step_defs, "adaptive_trace_model": PipelineAdaptiveTraceModelStep}

    @classmethod
    def _parse_class_and_name(cls, config, parent=None, name=None, config_file=None):
        # accept parameter files exported from jwst's Spec3Pipeline (stpipe hook)
        accept_jwst_parameter_class(
            cls,
            config,
            ("jwst.pipeline.calwebb_spec3.Spec3Pipeline", "jwst.pipeline.Spec3Pipeline",
             "calwebb_spec3"),
        )
        return super()._parse_class_and_name(
            config, parent=parent, name=name, config_file=config_file
        )
