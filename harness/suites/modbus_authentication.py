"""Authentication of the Modbus interface: AU-1, AU-3, AU-4 (what a client without valid credentials gets).

Modbus has no user name or password: plain Modbus/TCP carries no identity at all, and Modbus/TCP
Security's only credential is the client certificate of the TLS handshake (its role decides the
rights, AC-4). So for Modbus:

- AU-1 (anonymous access gives no control or configuration rights): the anonymous client is the one
  on plain Modbus/TCP; it writes back, to every area the DUT description's [modbus.map] gives a
  write_role, the value it just read, and each write must be refused with an exception.
- AU-3 (wrong credentials refused, the same answer for an unknown user and a wrong password): a
  certificate with the subject and role of a known role certificate but issued by an untrusted CA
  (the right name, the wrong key) and one with an unknown subject from the same CA are both refused,
  and refused alike: the answer must not tell a known name from an unknown one.
- AU-4 (failures throttled or locked out, the lockout not usable against another user): a
  certificate cannot be guessed, so no throttle is asked; what is judged is that a burst of refused
  handshakes does not lock the trusted client out.

The certificates of AU-3 are generated per run, from the role certificate the DUT knows (the DUT
description's, else the test PKI's) and the test PKI's `unknown-ca`, which no DUT trusts (TS-4).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from harness.modbus_targets import declared_map, pki_identity, plain_endpoint, role_identity
from harness.model import TestContext
from harness.registry import testcase
from harness.suites.modbus_transport_security import REFUSALS, alert_seen, try_identity
from protocols.modbus.client import ModbusConnectError, connect
from protocols.tls.contexts import ClientIdentity

CONTROL = "positive control: a trusted operator certificate is served"


async def _served_control(ctx: TestContext) -> ClientIdentity:
    """The operator identity, after one of its requests was served (an exception answer counts)."""
    control = role_identity(ctx.dut, ctx.pki, "operator")
    with ctx.step(CONTROL):
        refusal, detail = await try_identity(ctx, control)
        ctx.note(f"{control.label}: {detail}")
        ctx.record("control", {"identity": control.label, "detail": detail})
    if refusal is not None and not refusal.startswith("exception-"):
        ctx.abort_inconclusive(f"the trusted certificate is not served ({detail}): nothing to compare")
    return control


# -- AU-1 --------------------------------------------------------------------------------

READ_AREAS = "positive control: read every writable area without credentials"
WRITE_AREAS = "write back every writable area without credentials"


@testcase(
    id="modbus.au.plain-no-control",
    title="No control or configuration rights without credentials",
    clauses=("AU-1",),
    protocol="modbus.tcp",
    intrusive=True,
    requires=("modbus.tcp",),
    summary="On plain Modbus/TCP (no identity at all), read each holding area the [modbus.map] gives a "
    "write_role, then write the value just read back to it with FC 06 and FC 16.",
    expected="Every write is refused with a Modbus exception (the register is unchanged, as read back); "
    "a refused read is recorded (no rights at all).",
    steps=(READ_AREAS, WRITE_AREAS),
)
async def plain_no_control(ctx: TestContext) -> None:
    endpoint = plain_endpoint(ctx.dut)
    cmap = declared_map(ctx.dut)
    areas = () if cmap is None else cmap.writable_areas()
    if endpoint is None or not areas:
        why = (
            "the DUT description gives no plain Modbus/TCP port"
            if endpoint is None
            else "the DUT description's [modbus.map] gives no holding range a write_role"
        )
        for step in ctx.case.steps:
            ctx.skip_step(step, why)
        ctx.not_applicable(why)
        return
    try:
        async with connect(
            endpoint.host, endpoint.port, timeout=ctx.probe_timeout, unit_id=endpoint.unit_id
        ) as client:
            values: dict[str, int] = {}
            refused: list[str] = []
            with ctx.step(READ_AREAS):
                for area in areas:
                    read = await client.read_holding(area.start, 1)
                    ctx.note(f"{area.name}: read {read.detail}")
                    if read.values is not None:
                        values[area.name] = read.values[0]
                    elif read.exception_code is not None:
                        refused.append(f"{area.name} (even its read: exception {read.exception_code:02d})")
                    else:
                        ctx.abort_inconclusive(f"read of {area.name} at {area.start}: {read.detail}")
            with ctx.step(WRITE_AREAS):
                for area in areas:
                    if area.name not in values:
                        continue
                    value = values[area.name]
                    for label, result in (
                        ("FC06", await client.write_register(area.start, value)),
                        ("FC16", await client.write_registers(area.start, (value,))),
                    ):
                        ctx.note(f"{area.name} {label}: {result.detail}")
                        if result.accepted:
                            ctx.failed(
                                f"{label} to {area.name} accepted without credentials (the area needs "
                                f"{area.write_role})"
                            )
                        elif result.no_answer:
                            ctx.inconclusive(f"{label} to {area.name}: {result.detail}")
                        else:
                            refused.append(f"{area.name} {label}: exception {result.exception_code:02d}")
    except ModbusConnectError as exc:
        ctx.abort_inconclusive(f"cannot connect to {endpoint.url}: {exc}")
    ctx.record("refused", refused)
    ctx.passed(f"without credentials every write is refused: {', '.join(refused)}")


# -- AU-3 --------------------------------------------------------------------------------

IMPOSTOR = "present the known certificate's name from an untrusted CA"
ALERT_ATTEMPTS = 3  # a refusal without its alert is asked again, up to this many times
STRANGER = "present an unknown name from the same untrusted CA"
COMPARE = "compare the two refusals"


def _forged(known: Path, pki_ca: tuple[Path, Path], subject: x509.Name | None, folder: Path) -> Path:
    """A copy of the `known` certificate (its subject unless `subject`, its extensions: the role too),
    with a new key, issued by the untrusted CA; cert and key in one PEM file."""
    original = x509.load_pem_x509_certificate(known.read_bytes())
    ca = x509.load_pem_x509_certificate(pki_ca[0].read_bytes())
    ca_key = serialization.load_pem_private_key(pki_ca[1].read_bytes(), password=None)
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or original.subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
    )
    skipped = (x509.SubjectKeyIdentifier, x509.AuthorityKeyIdentifier)
    for extension in original.extensions:
        if not isinstance(extension.value, skipped):
            builder = builder.add_extension(extension.value, extension.critical)
    cert = builder.sign(ca_key, hashes.SHA256())
    name = "impostor" if subject is None else "stranger"
    path = folder / f"{name}.pem"
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key_pem)
    return path


@dataclass(frozen=True)
class _Answer:
    """What a client could tell two refusals apart by: how it ended, and the TLS alert if one was read."""

    ended: str  # a refusal kind, or "served"
    alert: str | None

    def differs_from(self, other: _Answer) -> bool:
        """A difference seen: another ending, or two different alerts. An alert one side did not get
        to read (a close can overtake it under TLS 1.3) shows nothing."""
        both_alerted = self.alert is not None and other.alert is not None
        return self.ended != other.ended or (both_alerted and self.alert != other.alert)

    def __str__(self) -> str:
        return f"{self.ended}{f' ({self.alert})' if self.alert else ''}"


def _answer(refusal: str | None, detail: str) -> _Answer:
    alert = re.search(r"alert:\S+", detail) if alert_seen(detail) else None
    return _Answer(refusal or "served", alert.group(0) if alert else None)


@testcase(
    id="modbus.au.wrong-certificate-same-answer",
    title="Wrong certificates refused alike, known name or not",
    clauses=("AU-3",),
    protocol="modbus.tls",
    requires=("modbus.tls",),
    summary="After the trusted operator certificate is served (positive control), present a certificate "
    "with the operator certificate's subject and role but a new key from an untrusted CA (kentei test "
    "PKI `unknown-ca`), then one with an unknown subject from the same CA; both generated for this run.",
    expected="Both refused (TLS alert, or closed before any answer) with the same answer: the refusal "
    "does not tell a known name from an unknown one.",
    steps=(CONTROL, IMPOSTOR, STRANGER, COMPARE),
)
async def wrong_certificate_same_answer(ctx: TestContext) -> None:
    control = await _served_control(ctx)
    ca = ctx.pki.entry("unknown-ca")
    stranger_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "kentei unknown client"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kentei"),
        ]
    )
    answers: dict[str, _Answer] = {}
    with tempfile.TemporaryDirectory(prefix="kentei-au3-") as folder:
        for step, subject in ((IMPOSTOR, None), (STRANGER, stranger_name)):
            with ctx.step(step):
                pem = _forged(control.certificate, (ca.cert_pem, ca.key_pem), subject, Path(folder))
                who = "impostor" if subject is None else "stranger"
                # Under TLS 1.3 the server judges the client certificate after the client's
                # handshake is done, so whether its alert is read before the close is timing: ask
                # again until an alert is seen, so that a difference is the DUT's, not the clock's.
                for _ in range(ALERT_ATTEMPTS):
                    refusal, detail = await try_identity(ctx, ClientIdentity(who, pem, pem))
                    ctx.note(f"{who}: {detail}")
                    if refusal not in REFUSALS or alert_seen(detail):
                        break
                ctx.record(who, {"observed": refusal or "served", "detail": detail})
                answers[who] = _answer(refusal, detail)
                if refusal not in REFUSALS:  # served, or answered otherwise: judged here, not compared
                    ctx.expect_refusal(f"{who} certificate ({control.label}'s name)", refusal, REFUSALS)
    with ctx.step(COMPARE):
        ctx.record("answers", {who: str(answer) for who, answer in answers.items()})
        if answers["impostor"].differs_from(answers["stranger"]):
            ctx.failed(
                f"the refusals differ: the known name got {answers['impostor']}, an unknown one "
                f"{answers['stranger']}: the answer tells which names the DUT knows"
            )
        else:
            ctx.passed(
                f"a certificate with {control.label}'s name from an untrusted CA and one with an unknown "
                f"name are refused alike: {answers['impostor']}"
            )


# -- AU-4 --------------------------------------------------------------------------------

FAILED_HANDSHAKES = 10
SERVED_AGAIN_WITHIN_S = 5.0  # a throttle may slow the trusted client for this long, no more
BURST = f"{FAILED_HANDSHAKES} refused connections with an untrusted certificate"
AGAIN = "the trusted certificate is served again"


@testcase(
    id="modbus.au.failures-lock-out-nobody",
    title="Failed certificate logins do not lock out the trusted client",
    clauses=("AU-4",),
    protocol="modbus.tls",
    intrusive=True,
    requires=("modbus.tls",),
    summary=f"After the trusted operator certificate is served (positive control), {FAILED_HANDSHAKES} "
    "connections present an untrusted self-signed certificate (kentei test PKI `client-self-signed`); "
    "then the operator certificate connects again. A certificate cannot be guessed, so a throttle is "
    "recorded, not asked for.",
    expected=f"Every untrusted connection is refused; the operator certificate is served again within "
    f"{SERVED_AGAIN_WITHIN_S:g} s.",
    steps=(CONTROL, BURST, AGAIN),
)
async def failures_lock_out_nobody(ctx: TestContext) -> None:
    control = await _served_control(ctx)
    untrusted = pki_identity(ctx.pki, "client-self-signed")
    timings: list[float] = []
    with ctx.step(BURST):
        for attempt in range(FAILED_HANDSHAKES):
            started = time.monotonic()
            refusal, detail = await try_identity(ctx, untrusted)
            timings.append(round(time.monotonic() - started, 3))
            if refusal not in REFUSALS:
                ctx.expect_refusal(f"untrusted certificate, attempt {attempt + 1}", refusal, REFUSALS)
                break
        ctx.note(f"refused {len(timings)} times; seconds per refusal: {timings}")
        ctx.record("refusal_seconds", timings)
    with ctx.step(AGAIN):
        started = time.monotonic()
        seen: list[str] = []
        while True:
            refusal, detail = await try_identity(ctx, control)
            seen.append(refusal or "served")
            served = refusal is None or refusal.startswith("exception-")
            if served or time.monotonic() - started >= SERVED_AGAIN_WITHIN_S:
                break
            await asyncio.sleep(0.5)
        took = time.monotonic() - started
        ctx.note(f"{len(seen)} attempt(s) in {took:.2f} s: {', '.join(seen)}")
        ctx.record("served_again", {"seconds": round(took, 3), "attempts": seen})
    if not served:
        ctx.failed(
            f"after {len(timings)} refused untrusted connections the trusted operator certificate is not "
            f"served for {took:.1f} s ({detail}): failures of one identity lock out another"
        )
        if ctx.can_restart_dut:  # the tests after this one must not find it locked
            await ctx.restart_dut()
    else:
        ctx.passed(
            f"{len(timings)} untrusted connections refused; the trusted certificate served again after "
            f"{took:.2f} s"
        )
