"""How a run's output is written: whole or not at all (a killed run never leaves half a
report.json), and readable by its owner only. Reports, pcaps and evidence describe a device's
security (and a capture may hold what the device sent), so files are 0600 in 0700 folders."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700


def write_atomically(path: Path, data: str | bytes) -> None:
    """Write beside `path`, fsync, then rename over it (atomic on one file system)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def private_folder(path: Path) -> None:
    """Create `path` (0700), or make an existing one 0700 where we may (a folder someone else owns
    keeps its mode: it is theirs)."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_FOLDER)
    with contextlib.suppress(PermissionError):
        os.chmod(path, PRIVATE_FOLDER)


def seal(root: Path) -> None:
    """Every folder under `root` 0700 and every file 0600, `root` included; links are left alone,
    and so is what someone else owns (their files in a folder they gave as --out)."""
    for folder, folders, files in os.walk(root):
        for name in folders + files:
            entry = Path(folder) / name
            if not entry.is_symlink():
                with contextlib.suppress(PermissionError):
                    os.chmod(entry, PRIVATE_FOLDER if entry.is_dir() else PRIVATE_FILE)
    with contextlib.suppress(PermissionError):
        os.chmod(root, PRIVATE_FOLDER)
