"""Whether each third-party stack can run on this machine, and what it takes to make it run.

Every function returns None when the stack is ready, else the reason it is not, which the
corpus items skip with (a stack that cannot be installed here must never make a test pass).
The stacks install from the project's own files: the `test` extra (python-opcua, modbus-tk),
tests/third_party/node/package-lock.json (node-opcua, `npm ci`), and .ci/run's Debian packages
(libmodbus-dev, stunnel4).
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).parent
NODE_DIR = HERE / "node"
NPM_CI_BOUND_S = 300
GCC_BOUND_S = 60


def python_module(name: str, package: str) -> str | None:
    if importlib.util.find_spec(name) is None:
        return f"{package} is not installed (pip install -e '.[test]')"
    return None


def _node_opcua_installed() -> bool:
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    wanted = lock["packages"]["node_modules/node-opcua"]["version"]
    installed = NODE_DIR / "node_modules" / "node-opcua" / "package.json"
    return installed.is_file() and json.loads(installed.read_text()).get("version") == wanted


def node_opcua() -> str | None:
    """node-opcua from package-lock.json: `npm ci --prefix tests/third_party/node` when missing.

    Under a file lock, so that parallel test processes do not install over each other.
    """
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node or npm is not installed"
    with (NODE_DIR / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _node_opcua_installed():
            return None
        command = ["npm", "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--loglevel=error"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=NPM_CI_BOUND_S)
        except subprocess.TimeoutExpired:
            return f"npm ci did not finish within {NPM_CI_BOUND_S} s"
        if done.returncode != 0 or not _node_opcua_installed():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return f"npm ci --prefix {NODE_DIR} failed: {tail[0]}"
    return None


def _libmodbus_flags() -> list[str] | str:
    if shutil.which("gcc") is None or shutil.which("pkg-config") is None:
        return "gcc or pkg-config is not installed"
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libmodbus"], capture_output=True, text=True)
    if flags.returncode != 0:
        return "libmodbus-dev is not installed (pkg-config finds no libmodbus)"
    return flags.stdout.split()


def libmodbus() -> str | None:
    flags = _libmodbus_flags()
    return flags if isinstance(flags, str) else None


def libmodbus_server(out_dir: Path, source: str = "libmodbus_server.c") -> Path:
    """A C server of tests/third_party/ (libmodbus_server.c, libmodbus_planted.c) built against
    Debian's libmodbus (libmodbus-dev)."""
    flags = _libmodbus_flags()
    if isinstance(flags, str):
        raise RuntimeError(flags)
    binary = out_dir / Path(source).stem
    command = ["gcc", "-O2", "-Wall", "-o", str(binary), str(HERE / source), *flags]
    built = subprocess.run(command, capture_output=True, text=True, timeout=GCC_BOUND_S)
    if built.returncode != 0:  # libmodbus-dev is there: a build failure is a defect, not a skip
        raise RuntimeError(f"gcc could not build {source}: {built.stderr.strip()[-300:]}")
    return binary


def stunnel() -> str | None:
    if shutil.which("stunnel4") is None and shutil.which("stunnel") is None:
        return "stunnel is not installed (Debian package stunnel4)"
    if shutil.which("openssl") is None:
        return "the openssl command is not installed (the TLS truth is probed with openssl s_client)"
    return None
