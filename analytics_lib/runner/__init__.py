"""Report runs: parameters validated against each notebook's parameters cell, papermill
execution with cell and overall timeouts, immutable run folders, renders, the report portal and
reruns on the recorded warehouse versions."""

from analytics_lib.runner.startup import defer_iri_grammar

defer_iri_grammar()  # before anything imports nbformat: see analytics_lib.runner.startup

from analytics_lib.runner.parameters import Parameter, ParameterError, read_parameters, validate  # noqa: E402
from analytics_lib.runner.reports import (  # noqa: E402
    DEFAULT_FORMATS,
    FORMATS,
    Report,
    catalogue,
    get_report,
    rerun,
    run_report,
)
from analytics_lib.runner.runs import RunError, RunRecord, all_runs, find_run, latest  # noqa: E402

__all__ = ["DEFAULT_FORMATS", "FORMATS", "Parameter", "ParameterError", "Report", "RunError", "RunRecord",
           "all_runs", "catalogue", "find_run", "get_report", "latest", "read_parameters", "rerun",
           "run_report", "validate"]
