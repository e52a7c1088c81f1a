"""What a validation found: one outcome per check and the problems, each naming its check and place."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ERROR, WARNING = "error", "warning"
#: Problems kept per check and severity; the rest are counted (a broken dataset can have millions).
MAX_PROBLEMS = 1000


@dataclass
class Problem:
    check: str
    severity: str  # error | warning
    message: str
    where: str | None = None  # the patch id, LMDB key or file the problem is in


@dataclass
class CheckOutcome:
    name: str
    status: str = "ok"  # ok | errors | warnings | skipped
    checked: int = 0  # items examined (rows, keys, files, patches)
    errors: int = 0
    warnings: int = 0
    seconds: float = 0.0
    note: str | None = None  # what was sampled, or why the check was skipped


class Recorder:
    """What a check reports through: ``error`` / ``warning`` with the place, and how much it looked at."""

    def __init__(self, outcome: CheckOutcome, problems: list[Problem]) -> None:
        self.outcome, self._problems = outcome, problems

    def error(self, message: str, where: str | None = None) -> None:
        self._add(ERROR, message, where)

    def warning(self, message: str, where: str | None = None) -> None:
        self._add(WARNING, message, where)

    def checked(self, n: int = 1) -> None:
        self.outcome.checked += n

    def skip(self, why: str) -> None:
        """This check does not apply to the dataset (no such output, nothing recorded to compare with)."""
        self.outcome.status = "skipped"
        self.note(why)

    def note(self, text: str) -> None:
        self.outcome.note = text if not self.outcome.note else f"{self.outcome.note}; {text}"

    def _add(self, severity: str, message: str, where: str | None) -> None:
        attr = "errors" if severity == ERROR else "warnings"
        count = getattr(self.outcome, attr) + 1
        setattr(self.outcome, attr, count)
        if count <= MAX_PROBLEMS:
            self._problems.append(Problem(self.outcome.name, severity, message, where))


@dataclass
class Report:
    dataset: str
    kind: str  # "rsprep" (built by rsprep) | "official" (a reBEN download)
    outputs: list[str]  # which of lmdb, zarr, tiff exist
    checks: list[CheckOutcome] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    sample: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def error_count(self) -> int:
        return sum(c.errors for c in self.checks)

    @property
    def warning_count(self) -> int:
        return sum(c.warnings for c in self.checks)

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def passed(self, *, strict: bool = False) -> bool:
        """No errors (and, with ``strict``, no warnings)."""
        return self.ok and not (strict and self.warning_count)

    def outcome(self, name: str) -> CheckOutcome:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(ok=self.ok, errors=self.error_count, warnings=self.warning_count)
        return d
