"""The result of a contract check: one line per check, and a verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

CheckStatus = Literal["PASS", "WARN", "FAIL"]


@dataclass
class CheckResult:
    """The outcome of one check.

    ``message`` is one line; on WARN or FAIL it says what is wrong and what to fix.
    """

    name: str
    status: CheckStatus
    message: str


@dataclass
class ContractReport:
    """All check results for one pooling spec. ``ok`` means no check failed (warnings allowed)."""

    spec: str
    results: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures()

    def failures(self) -> list[CheckResult]:
        """The failed checks, in check order."""
        return [r for r in self.results if r.status == "FAIL"]

    def warnings(self) -> list[CheckResult]:
        """The checks that passed with a warning."""
        return [r for r in self.results if r.status == "WARN"]

    def result(self, name: str) -> CheckResult | None:
        """The result of the check called ``name``, if it ran."""
        return next((r for r in self.results if r.name == name), None)

    def to_dict(self) -> dict:
        """Plain, JSON-serialisable data (for ``poolbench check --json``)."""
        return {
            "spec": self.spec,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "results": [asdict(r) for r in self.results],
        }

    def format(self) -> str:
        """One line per check (``PASS shape ...``), then a summary line."""
        width = max((len(r.name) for r in self.results), default=0)
        lines = [f"{r.status} {r.name:<{width}}  {r.message}" for r in self.results]
        counts = {s: sum(r.status == s for r in self.results) for s in ("PASS", "WARN", "FAIL")}
        verdict = "OK" if self.ok else "REFUSED: fix the FAIL lines before training"
        warnings = f"{counts['WARN']} warning" + ("" if counts["WARN"] == 1 else "s")
        lines.append(
            f"{self.spec}: {counts['PASS']} passed, {warnings}, {counts['FAIL']} failed "
            f"in {self.seconds:.1f} s -> {verdict}"
        )
        return "\n".join(lines)
