"""Developer and CI sessions. `nox -s tests` is the README's test command and CI's."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

TEST_RESULTS = "build/test-results.xml"


def install(session: nox.Session, *extras: str) -> None:
    """The one install step every session shares: kentei itself with the extras it needs."""
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


@nox.session
def tests(session: nox.Session) -> None:
    """kentei's own tests, including the simulator defect matrix (127.0.0.1 only)."""
    install(session, "test")
    # 4 workers on 2 cores: the matrix spends most of its time waiting on simulators. loadgroup:
    # the items that share one expensive run (a corpus module, a hostile device) share a worker.
    args = session.posargs or ["-n", "4", "--dist", "loadgroup"]
    session.run("pytest", f"--junitxml={TEST_RESULTS}", *args)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    install(session, "lint")
    session.run("mypy")


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: `kentei run` against the bundled simulators."""
    install(session)
    session.run("kentei", "run", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Fuzz throughput (beside its ceiling and boofuzz), time to find the libmodbus unit's planted bugs
    (beside boofuzz), and start-up time (beside a bare python); ratios."""
    install(session)
    session.install("boofuzz")  # the comparison only: never a kentei dependency
    session.run("python", "-m", "bench.fuzz_throughput", *session.posargs)
    session.run("python", "-m", "bench.time_to_find")
    session.run("python", "-m", "bench.startup")


@nox.session(name="matrix_full")
def matrix_full(session: nox.Session) -> None:
    """Nightly: the whole defect matrix, every test case against every simulator defect (not sampled)."""
    install(session, "test")
    args = session.posargs or ["-n", "4"]
    session.run("pytest", "tests/test_defect_matrix.py", *args, env={"KENTEI_MATRIX_FULL": "1"})


@nox.session
def fuzz(session: nox.Session) -> None:
    """Long fuzz campaigns of every framing area against the bundled simulators (findings in build/fuzz-*)."""
    install(session)
    for protocol in ("modbus", "opcua", "tls"):
        out = f"build/fuzz-{protocol}"
        options = ["--protocol", protocol, "--examples", "20000", "--seconds", "600", "--out", out]
        session.run("kentei", "fuzz", *options, *session.posargs, success_codes=[0, 1])


@nox.session(name="bench_fleet")
def bench_fleet(session: nox.Session) -> None:
    """Site acceptance against N = 1, 10, 50, 100 simulators (plus one stalled): wall time, peak memory."""
    install(session, "test")
    session.run("python", "bench/fleet_scaling.py", *session.posargs)


@nox.session(name="fuzz_planted")
def fuzz_planted(session: nox.Session) -> None:
    """The libmodbus target's planted bugs (tests/third_party/libmodbus_planted.c), each from four seeds:
    found within 60 s, shrunk and replayed (CI runs each from one seed)."""
    install(session, "test")
    session.run("pytest", "tests/test_fuzz_libmodbus.py", *session.posargs, env={"KENTEI_FUZZ_FULL": "1"})
