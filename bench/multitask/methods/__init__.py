"""Multi-task weighting methods (Table 4 rows): one file each, registered in MULTITASK_METHODS."""
from bench.multitask.methods.base import MULTITASK_METHODS, MultiTaskMethod
from bench.multitask.methods import equal, equal_normalized, uncertainty, gradnorm, great  # noqa: F401  (register)

__all__ = ["MULTITASK_METHODS", "MultiTaskMethod"]
