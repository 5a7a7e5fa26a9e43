"""Suite-wide: say what the skips are, so "606 skipped" is not a mystery."""

from __future__ import annotations

from collections import Counter
from typing import Any


def pytest_terminal_summary(terminalreporter: Any) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons = Counter(_reason(r) for r in skipped)
    cuda = sum(n for reason, n in reasons.items() if "CUDA" in reason)
    other = {reason: n for reason, n in reasons.items() if "CUDA" not in reason}
    line = f"{cuda} of the {len(skipped)} skipped tests are the CUDA variants (this machine has no CUDA device)"
    if other:
        line += "; the others: " + "; ".join(f"{n} x {reason}" for reason, n in other.items())
    terminalreporter.write_line(line)


def _reason(report: Any) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")
