"""``rsprep validate``: a dataset proves its own integrity (docs/validate.md).

:func:`validate` runs the checks of :mod:`rsprep.validation.checks` over a dataset folder built by
rsprep or an official reBEN folder and returns a :class:`Report`; it never prints or exits.
"""

from rsprep.validation.report import Problem, Report
from rsprep.validation.run import CHECKS, validate

__all__ = ["CHECKS", "Problem", "Report", "validate"]
