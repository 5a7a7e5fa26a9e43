"""Fault-injection trials, shared by ``tests/faults/`` (few trials, part of ``make test``) and
``benchmarks/faults.py`` (many trials, ``make faults``).

Every trial function takes a work directory, a trial count and a seed, runs real
faults against real files and processes, and returns a :class:`Row`: what was tried,
how many times, and how many times prebake got it wrong (with the first few failures
spelled out). The tests assert 0 failures; the benchmark prints the rows as a table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    what: str
    trials: int = 0
    failures: int = 0
    examples: list[str] = field(default_factory=list)  # the first failures, spelled out
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. how the disk was filled

    def ok(self) -> None:
        self.trials += 1

    def fail(self, message: str) -> None:
        self.trials += 1
        self.failures += 1
        if len(self.examples) < 5:
            self.examples.append(message)

    def check(self, passed: bool, message: str) -> None:
        self.ok() if passed else self.fail(message)

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "trials": self.trials, "failures": self.failures,
                "examples": self.examples, "notes": self.notes}
