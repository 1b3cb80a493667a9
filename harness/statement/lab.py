"""lab.toml: who tested and who approves, for the statement's first page and signature block.

    [lab]
    name = "Example Test Laboratory"
    address = "1-2-3 Example, Chiyoda-ku, Tokyo"
    accreditation = "JAB RTL01234"   # accreditation or registration number
    tester = "Hanako Yamada"
    approver = "Taro Suzuki"

    [supplier]                       # optional: who signs for the product
    name = "Example CNC Co., Ltd."
    address = "..."

A field left out is a blank line on the statement, to fill in by hand.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

LAB_FIELDS = ("name", "address", "accreditation", "tester", "approver")
SUPPLIER_FIELDS = ("name", "address")


class LabError(ValueError):
    """A lab.toml that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Lab:
    name: str = ""
    address: str = ""
    accreditation: str = ""
    tester: str = ""
    approver: str = ""
    supplier_name: str = ""
    supplier_address: str = ""


def _table(path: Path, data: dict[str, object], name: str, fields: tuple[str, ...]) -> dict[str, str]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise LabError(f"{path}: [{name}] must be a table")
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise LabError(f"{path}: [{name}] unknown key(s) {', '.join(unknown)} (known: {', '.join(fields)})")
    for key, value in table.items():
        if not isinstance(value, str):
            raise LabError(f"{path}: [{name}] {key} must be a string")
    return {str(k): str(v) for k, v in table.items()}


def load_lab(path: Path | None) -> Lab:
    if path is None:
        return Lab()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise LabError(f"{path}: not readable TOML ({exc})") from None
    unknown = sorted(set(data) - {"lab", "supplier"})
    if unknown:
        raise LabError(f"{path}: unknown table(s) {', '.join(unknown)} (known: lab, supplier)")
    lab = _table(path, data, "lab", LAB_FIELDS)
    supplier = _table(path, data, "supplier", SUPPLIER_FIELDS)
    return Lab(
        **lab,
        supplier_name=supplier.get("name", ""),
        supplier_address=supplier.get("address", ""),
    )
