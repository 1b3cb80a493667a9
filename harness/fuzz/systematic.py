"""The systematic phase of a campaign: what it tried, per field and anomaly class, and what it found.

The list comes from the area (`FuzzArea.anomalies`, protocols/anomalies.py); the campaign sends each
anomaly as one example (harness/fuzz/campaign.py `Campaign.run_area`), before Hypothesis draws
anything. This module holds the tally the reports show: fields x classes, tried and found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocols.anomalies import Anomaly

PHASES = ("systematic", "random")


@dataclass
class Cell:
    tried: int = 0
    found: int = 0


@dataclass
class SystematicResult:
    listed: int  # anomalies in the area's list
    tried: int = 0
    elapsed_s: float = 0.0
    stopped: str = ""  # why the list was not run to its end, if it was not
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    found: list[str] = field(default_factory=list)  # anomaly names that found something, in order

    def count(self, anomaly: Anomaly, *, failed: bool) -> None:
        self.tried += 1
        cell = self.cells.setdefault(anomaly.coverage_key, Cell())
        cell.tried += 1
        if failed:
            cell.found += 1
            self.found.append(anomaly.name)

    @property
    def fields(self) -> dict[str, dict[str, Cell]]:
        """{field: {class: cell}} in the order the list tried them."""
        table: dict[str, dict[str, Cell]] = {}
        for (name, kind), cell in self.cells.items():
            table.setdefault(name, {})[kind] = cell
        return table

    @property
    def classes(self) -> dict[str, Cell]:
        """{class: cell} summed over fields."""
        total: dict[str, Cell] = {}
        for (_, kind), cell in self.cells.items():
            summed = total.setdefault(kind, Cell())
            summed.tried += cell.tried
            summed.found += cell.found
        return total

    def as_json(self) -> dict[str, Any]:
        return {
            "listed": self.listed,
            "tried": self.tried,
            "elapsed_s": round(self.elapsed_s, 3),
            "stopped": self.stopped,
            "found": list(self.found),
            "fields": {
                name: {kind: {"tried": c.tried, "found": c.found} for kind, c in kinds.items()}
                for name, kinds in self.fields.items()
            },
            "classes": {kind: {"tried": c.tried, "found": c.found} for kind, c in self.classes.items()},
        }

    def summary_lines(self) -> list[str]:
        """One line per field: the classes tried, those that found something marked with `!`."""
        lines = []
        for name, kinds in self.fields.items():
            shown = " ".join(f"{kind}!" if c.found else kind for kind, c in kinds.items())
            lines.append(f"{name}: {shown}")
        return lines
