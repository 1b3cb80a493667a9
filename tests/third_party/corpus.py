"""The third-party corpus: truth tables, and one evaluation per server shared by its test items.

A truth table (tests/third_party/truth/<server>.toml) states, per kentei test id, the verdict a
correct kentei gives on that server and the facts that make it so. The facts are established by
independent probes (the stack's own client, openssl, raw sockets: never kentei's code) that run
in the tests too, so the truth is re-checked on every run. Where kentei's verdict is known to be
wrong today, the row says so (`known_wrong`): the test item is then xfail(strict=True), and a
fix shows up as XPASS (which fails, so the mark is taken away with the fix).

An evaluation starts the server once per test run, runs its probes, then kentei's selected cases
through the real runner, and stops it; every test item of that server, in whichever pytest-xdist
process it runs, reads the same evaluation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import json
import os
import pickle
import time
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.dut import DutDescription
from harness.registry import load_suites
from harness.results import TestResult
from harness.verdicts import Verdict
from protocols.pki import load_pki
from tests.helpers import run_cases

TRUTH_DIR = Path(__file__).parent / "truth"
EVALUATION_BOUND_S = 240.0  # one server: start, probes, kentei's cases, stop
CONCURRENT_SERVERS = 3  # servers evaluated at once: they mostly wait, but six at once starved 2 cores

Facts = dict[str, Any]
Launcher = Callable[[Path, Path], contextlib.AbstractAsyncContextManager[str]]  # (pki, workdir) -> url
Prober = Callable[[str, Path, Path], Awaitable[Facts]]  # (url, pki, workdir) -> facts
DutFor = Callable[[str, Path], DutDescription]  # (url, pki) -> the DUT description a lab would write


@dataclass(frozen=True)
class TruthRow:
    server: str
    test_id: str
    verdict: Verdict
    facts: Mapping[str, Any]  # what the probes must have found for this verdict to be the truth
    how: str  # which independent probe established it
    reason: str | None = None  # a piece kentei's reason must contain (where it matters)
    known_wrong: str | None = None  # what kentei gets wrong today (issue 11); the item is xfail


@dataclass(frozen=True)
class Truth:
    server: str
    stack: str
    rows: tuple[TruthRow, ...]

    def row(self, test_id: str) -> TruthRow:
        return next(r for r in self.rows if r.test_id == test_id)


def load_truth(server: str) -> Truth:
    path = TRUTH_DIR / f"{server}.toml"
    data = tomllib.loads(path.read_text())
    rows = []
    for test_id, row in data["tests"].items():
        unknown = set(row) - {"verdict", "facts", "how", "reason", "known_wrong"}
        if unknown:
            raise ValueError(f"{path}: [tests.{test_id!r}]: unknown keys {sorted(unknown)}")
        rows.append(
            TruthRow(
                server=server,
                test_id=test_id,
                verdict=Verdict(row["verdict"]),
                facts=row["facts"],
                how=row["how"],
                reason=row.get("reason"),
                known_wrong=row.get("known_wrong"),
            )
        )
    return Truth(server=data["server"], stack=data["stack"], rows=tuple(rows))


@dataclass(frozen=True)
class CorpusServer:
    """How to start one third-party server, probe it independently, and describe it to kentei."""

    name: str  # the truth file's stem
    launch: Launcher
    probe: Prober
    dut: DutFor
    available: Callable[[], str | None] = lambda: None  # why the stack cannot run here, else None


@dataclass(frozen=True)
class Evaluation:
    url: str
    facts: Facts
    results: Mapping[str, TestResult]
    skipped: str | None = None  # the stack cannot be installed or run here: every item skips
    probe_error: str | None = None
    error: str | None = None  # the server did not start, or the evaluation broke off
    duration_s: float = 0.0  # start, probes, kentei's cases and stop


@dataclass
class EvaluationCache:
    """One evaluation per server and test run, shared by the test processes (pytest-xdist).

    The first process that needs any server of a test module evaluates all of them at once (they
    mostly wait on handshakes and process starts, so together they take about as long as the
    slowest) under a file lock, and leaves the results in `shared_dir`; the other processes wait
    on the lock and read them. A failed evaluation is kept too, so that the server's other items
    fail with it instead of starting it again.
    """

    name: str
    servers: Mapping[str, CorpusServer]
    pki_dir: Path
    workdir: Path
    shared_dir: Path
    _loaded: dict[str, Evaluation] | None = None

    def get(self, server: str) -> Evaluation:
        if self._loaded is None:
            stored = self.shared_dir / f"{self.name}.pickle"
            with (self.shared_dir / f"{self.name}.lock").open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not stored.exists():
                    stored.write_bytes(pickle.dumps(self._evaluate_all()))
                self._loaded = pickle.loads(stored.read_bytes())
        evaluation = self._loaded[server]
        if evaluation.error is not None:
            pytest.fail(f"{server} could not be evaluated: {evaluation.error}", pytrace=False)
        return evaluation

    def _evaluate_all(self) -> dict[str, Evaluation]:
        async def all_servers() -> list[Evaluation]:
            slots = asyncio.Semaphore(CONCURRENT_SERVERS)

            async def one(server: CorpusServer) -> Evaluation:
                async with slots:
                    why = await asyncio.to_thread(server.available)
                    if why is not None:
                        return Evaluation("", {}, {}, skipped=why)
                    workdir = self.workdir / server.name
                    workdir.mkdir(parents=True, exist_ok=True)
                    try:
                        return await _evaluate(server, self.pki_dir, workdir)
                    except Exception as exc:
                        return Evaluation("", {}, {}, error=f"{type(exc).__name__}: {exc}")

            return await asyncio.gather(*(one(s) for s in self.servers.values()))

        # A thread of its own: pytest-asyncio may own the main thread's event loop.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            results = pool.submit(asyncio.run, all_servers()).result()
        return dict(zip(self.servers, results, strict=True))


def evaluation_cache(
    name: str, servers: Mapping[str, CorpusServer], pki_dir: Path, factory: pytest.TempPathFactory
) -> EvaluationCache:
    """The cache for one test module; its shared folder is this run's, common to every xdist worker."""
    base = factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return EvaluationCache(name, servers, pki_dir, factory.mktemp(name), shared)


async def _evaluate(server: CorpusServer, pki_dir: Path, workdir: Path) -> Evaluation:
    started = time.monotonic()
    truth = load_truth(server.name)
    cases = {c.id: c for c in load_suites()}
    async with asyncio.timeout(EVALUATION_BOUND_S), server.launch(pki_dir, workdir) as url:
        try:
            facts = await server.probe(url, pki_dir, workdir)
            error = None
        except Exception as exc:  # the truth cannot be re-checked: every item says why
            facts, error = {}, f"{type(exc).__name__}: {exc}"
        results = await run_cases(
            [cases[r.test_id] for r in truth.rows], server.dut(url, pki_dir), load_pki(pki_dir)
        )
    return Evaluation(url, facts, results, probe_error=error, duration_s=time.monotonic() - started)


# Every corpus item on one xdist worker (`--dist loadgroup`): the first evaluates its module's
# servers and the rest read the evaluation; spread out, the other workers would wait on its lock
# idle, and the two modules' evaluations (a dozen servers) would load 2 cores at once.
ONE_WORKER = pytest.mark.xdist_group("corpus")


def params(servers: Mapping[str, CorpusServer]) -> list[Any]:
    """One pytest param per (server, test id); known-wrong rows are xfail(strict=True)."""
    out = []
    for name in servers:
        for row in load_truth(name).rows:
            marks = [ONE_WORKER]
            if row.known_wrong:
                marks.append(pytest.mark.xfail(strict=True, reason=f"issue 11: {row.known_wrong}"))
            out.append(pytest.param(name, row.test_id, id=f"{name}:{row.test_id}", marks=marks))
    return out


def truth_params(servers: Mapping[str, CorpusServer]) -> list[Any]:
    """One pytest param per (server, test id) for re-checking the truth (never xfail)."""
    return [
        pytest.param(name, row.test_id, id=f"{name}:{row.test_id}", marks=ONE_WORKER)
        for name in servers
        for row in load_truth(name).rows
    ]


def check_truth(evaluation: Evaluation, row: TruthRow) -> None:
    """The independent probes found what the truth row is built on."""
    if evaluation.skipped:
        pytest.skip(evaluation.skipped)
    assert evaluation.probe_error is None, f"the probes of {row.server} failed: {evaluation.probe_error}"
    found = {name: evaluation.facts.get(name, "<not established>") for name in row.facts}
    details = {
        name: evaluation.facts[f"{name}_detail"] for name in row.facts if f"{name}_detail" in evaluation.facts
    }
    assert found == dict(row.facts), (
        f"{row.server}: the truth for {row.test_id} ({row.how}) no longer holds: "
        f"expected {dict(row.facts)}, probed {found} {details}"
    )


def check_verdict(evaluation: Evaluation, row: TruthRow) -> None:
    """kentei's verdict (and, where it matters, its reason) equals the truth."""
    if evaluation.skipped:
        pytest.skip(evaluation.skipped)
    result = evaluation.results[row.test_id]
    said = f"kentei said {result.verdict.value}: {result.reason} (notes: {list(result.notes)})"
    assert result.verdict == row.verdict, f"{row.server} {row.test_id}: truth is {row.verdict.value}; {said}"
    if row.reason is not None:
        assert row.reason in result.reason, f"{row.server} {row.test_id}: reason lacks {row.reason!r}; {said}"


# -- process helpers shared by the launchers and probes ------------------------------------------


async def run_json(command: list[str], bound_s: float, cwd: Path | None = None) -> Facts:
    """Run a probe script that prints one JSON object as its last line; bounded in time."""
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), bound_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise RuntimeError(f"{Path(command[1]).name} did not finish within {bound_s:g} s") from None
    lines = out.decode(errors="replace").strip().splitlines()
    if process.returncode != 0 or not lines:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{Path(command[1]).name} exited with {process.returncode}: {tail}")
    facts: Facts = json.loads(lines[-1])
    return facts
