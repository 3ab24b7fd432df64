"""Transitional: ``lomix_core.runtime`` still imports these three names from here. Their owners are
:mod:`lomix_core.runs` (``keyed``) and :mod:`lomix_core.executors` (``default_jobs``,
``is_finished``); this module goes once runtime imports them from there."""
from .executors import default_jobs, is_finished  # noqa: F401
from .runs import keyed  # noqa: F401
