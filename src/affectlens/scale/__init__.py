"""Scale-out: batch jobs over many files, locally or on Ray (``run_batch``), with resume and
per-file failure reports. Distributed training lives in :mod:`affectlens.training.engine`."""
from affectlens.scale.batch import (
    ADDRESS_OPTION,
    BACKEND_OPTION,
    BACKENDS,
    RESUME_OPTION,
    WORKERS_OPTION,
    BatchResult,
    run_batch,
    run_one,
)
from affectlens.scale.options import choice, choice_option, real, real_option
from affectlens.scale.outputs import OutputError, check_output

__all__ = ["ADDRESS_OPTION", "BACKENDS", "BACKEND_OPTION", "RESUME_OPTION", "WORKERS_OPTION", "BatchResult",
           "OutputError", "check_output", "choice", "choice_option", "real", "real_option", "run_batch", "run_one"]
