"""Scale-out: batch jobs over many files, locally or on Ray (``run_batch``), with resume and
per-file failure reports, and the check of where a command writes (``check_output``).
Distributed training lives in :mod:`affectlens.training.engine`; the CLI options of both live in
:mod:`affectlens.cli_options`."""
from affectlens.scale.batch import BACKENDS, BatchResult, run_batch, run_one
from affectlens.scale.outputs import OutputError, check_output

__all__ = ["BACKENDS", "BatchResult", "OutputError", "check_output", "run_batch", "run_one"]
