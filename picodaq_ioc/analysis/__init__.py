"""In-IOC analysis modules (no EPICS): pulse filter with coincidences, double pulses and a live
muon-lifetime fit, voltmeter, histograms, rate history, and the runner that attaches them to
the buffer manager as obligatory consumers. See docs/analysis.md."""

from .base import AnalysisConfigError, AnalysisModule, ResultSpec, RunInfo
from .lifetime import LifetimeFit, fit_lifetime
from .registry import BUILTINS, create_module
from .runner import AnalysisRunner

__all__ = ["BUILTINS", "AnalysisConfigError", "AnalysisModule", "AnalysisRunner", "LifetimeFit", "ResultSpec",
           "RunInfo", "create_module", "fit_lifetime"]
