"""The lab's test PKI: where it lives, what a lab installs on a DUT, what a run may hand out.

One PKI per lab, kept outside every output folder (it holds the private keys): by default
`$KENTEI_HOME/pki`, else `$XDG_DATA_HOME/kentei/pki`, else `~/.local/share/kentei/pki`.
`export_install_set` writes what the DUT must trust (never a key); `copy_public_certificates`
writes the certificates a run used into its evidence (never a key); `private_key_files` finds
anything that looks like a private key, for the tests that prove both.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization

from protocols.modbus.roles import ROLES
from protocols.pki import TestPki, intermediate_crls

__all__ = [
    "EXPORT_KINDS",
    "CertificateFacts",
    "copy_public_certificates",
    "default_pki_dir",
    "entry_purpose",
    "export_install_set",
    "facts",
    "is_inside",
    "private_key_files",
]

EXPORT_KINDS = ("opcua", "modbus-tls")
CERTIFICATES_INDEX = "certificates.json"

# The client certificates a DUT must trust besides the CA, per protocol.
_INSTALLED_CLIENTS: Mapping[str, tuple[str, ...]] = {
    "opcua": ("client",),
    # The Modbus/TCP Security suites present the role certificates (operator is the control).
    "modbus-tls": (*(f"client-role-{r}" for r in ROLES), "client-no-role"),
}


def default_pki_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the lab PKI lives when nothing says otherwise."""
    env = os.environ if environ is None else environ
    if home := env.get("KENTEI_HOME"):
        return Path(home).expanduser() / "pki"
    data = env.get("XDG_DATA_HOME", "")
    if data and Path(data).is_absolute():  # the XDG spec: a relative value is to be ignored
        return Path(data) / "kentei" / "pki"
    return Path.home() / ".local" / "share" / "kentei" / "pki"


def is_inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies under it (both resolved: symlinks do not hide it)."""
    return path.resolve().is_relative_to(folder.resolve())


_SENT_INTERMEDIATE = (
    "intermediate CA kentei sends with its TS-4 negative leaf: never install it as a trust anchor"
)
# `kentei pki show`'s word for the entries that are not TS-4 negatives, by name.
_PURPOSES = {
    "ca": "trust anchor: install it on the DUT (`kentei pki export`)",
    "unknown-ca": "issuer of client-unknown-issuer: never install it",
    "intermediate-ca": "issuer of client-chain-incomplete: never install it",
    **dict.fromkeys(
        ("revoked-ca", "no-crl-ca", "stale-crl-ca", "pathlen0-ca", "pathlen-sub-ca"), _SENT_INTERMEDIATE
    ),
    **dict.fromkeys(
        ("expired-ca", "not-yet-valid-ca", "not-ca-issuer", "no-cert-sign-ca", "weak-key-ca"),
        _SENT_INTERMEDIATE,
    ),
    "issuer-only-ca": "issuer of client-issuer-untrusted: install it in the DUT's issuer list only, "
    "never as trusted",
    "client-rsa4096": "TS-4 positive: a DUT must accept it (RSA-4096, issued by ca)",
    "server": "the bundled simulators' server certificate",
    "client": "kentei's OPC UA application certificate and X.509 user token; install it on an OPC UA DUT",
    "client-no-role": "Modbus/TCP Security client for the AC tests (role extension)",
}


def entry_purpose(name: str) -> str:
    """What an entry is for, in the words of `kentei pki show`."""
    if name in _PURPOSES:
        return _PURPOSES[name]
    if name.startswith("loop-"):
        return "CA of the looping chain kentei sends with client-looping-chain: never install it"
    if name.startswith("client-role-"):
        return _PURPOSES["client-no-role"]
    if name.startswith("server-"):
        return "TS-3 defect of the bundled simulators (`--simulator-defect`)"
    return "TS-4 negative: a DUT must refuse it"


@dataclass(frozen=True)
class CertificateFacts:
    subject: str
    sha256: str  # colon-separated upper-case hex, as certificate dialogs show it
    sha1: str  # what many OPC UA servers name their rejected/ and trusted/ files by
    not_before: str
    not_after: str


def _colons(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)


def facts(cert: x509.Certificate) -> CertificateFacts:
    return CertificateFacts(
        subject=cert.subject.rfc4514_string(),
        sha256=_colons(cert.fingerprint(hashes.SHA256())),
        sha1=_colons(cert.fingerprint(hashes.SHA1())),  # a thumbprint, not a signature
        not_before=cert.not_valid_before_utc.isoformat(timespec="seconds"),
        not_after=cert.not_valid_after_utc.isoformat(timespec="seconds"),
    )


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def _public_files(pki: TestPki, names: Iterable[str]) -> list[tuple[str, Path]]:
    """(file name, source) of the certificates named, and the CRL: certificate files only."""
    files: list[tuple[str, Path]] = []
    for name in names:
        entry = pki.entry(name)
        files += [(entry.cert_der.name, entry.cert_der), (entry.cert_pem.name, entry.cert_pem)]
    return [*files, (pki.crl_der.name, pki.crl_der), (pki.crl_pem.name, pki.crl_pem)]


def copy_public_certificates(pki: TestPki, target: Path) -> list[Path]:
    """Replace `target` with every certificate of `pki` and its CRL (DER and PEM), no key, and a
    certificates.json of what each one is (purpose, thumbprints, validity)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    written = [_copy(source, target / name) for name, source in _public_files(pki, pki.entries)]
    index = {
        "pki": str(pki.root),
        "note": "public certificates of the kentei test PKI this run used; their private keys stay in the "
        "lab PKI and are never part of the evidence",
        "entries": {
            name: {
                "description": entry.description,
                "purpose": entry_purpose(name),
                "certificate": entry.cert_pem.name,
                **vars(facts(pki.certificate(name))),
            }
            for name, entry in pki.entries.items()
        },
        "crl": pki.crl_pem.name,
    }
    path = target / CERTIFICATES_INDEX
    path.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return [*written, path]


def _readme(pki: TestPki, kind: str, clients: tuple[str, ...]) -> str:
    ca = facts(pki.certificate("ca"))
    lines = [
        f"kentei test PKI: what to install on a DUT ({kind})",
        "",
        f"Made by `kentei pki export --for {kind}` from the lab PKI in {pki.root}.",
        "No private key is in this folder: they stay in the lab PKI.",
        "",
        f"CA: {ca.subject}",
        f"    SHA-256 {ca.sha256}",
        f"    SHA-1   {ca.sha1}",
        f"    valid {ca.not_before} to {ca.not_after}",
        "",
        "Files",
        "  ca.der, ca.pem            the kentei test CA (the same certificate, DER and PEM)",
        "  ca.crl.der, ca.crl.pem    its CRL (it revokes client-revoked, a TS-4 negative)",
    ]
    for name in clients:
        files = f"{name}.der, .pem"
        what = (
            "kentei's application instance certificate" if name == "client" else pki.entry(name).description
        )
        lines.append(f"  {files:<26}{what}" if len(files) < 26 else f"  {files}\n  {'':<26}{what}")
    if kind == "opcua":
        client = facts(pki.certificate("client"))
        lines += [
            "  pki/                      the same, in the OPC UA Part 12 folder layout",
            "",
            "Steps (OPC UA server)",
            "  1. Trust the CA: copy pki/trusted/certs/ca.der into the server's trusted certificates and",
            "     pki/trusted/crl/ca.crl.der into its trusted CRLs. A server that keeps issuers apart",
            "     also takes pki/issuers/certs and pki/issuers/crl. A server without such folders",
            "     imports ca.der as a trusted CA certificate and ca.crl.der as its CRL.",
            "  2. Trust kentei's application certificate: copy pki/trusted/certs/client.der into the",
            f"     trusted certificates too (ApplicationUri {pki.client_application_uri}, SHA-1",
            f"     {client.sha1}).",
            "     kentei also sends it as its X.509 user token: a server with a separate",
            "     user-certificate trust list needs ca.der, ca.crl.der and client.der there too, and a",
            "     user mapped to it.",
            "  3. A server that parks unknown certificates in rejected/ (often rejected/certs) must be",
            "     told to trust them: after a first run, move kentei's client certificate from rejected/",
            "     to trusted/certs, or trust it in the server's tool. Never trust any other kentei",
            "     certificate found there: the others are the bad certificates the tests present.",
            "  4. Restart the server, or have it reload its trust list, then run kentei again.",
            "  The CRL must be installed: a server that cannot find the CA's CRL refuses every",
            "  certificate the CA issued (BadCertificateRevocationUnknown).",
            "  pki/issuers also holds intermediate CAs kentei sends with some TS-4 negatives and their",
            "  CRLs (stale-crl-ca's is out of date on purpose): install them as issuers, never as",
            "  trusted certificates.",
        ]
    else:
        lines += [
            "",
            "Steps (Modbus/TCP Security device)",
            "  1. Put ca.pem (or ca.der) into the device's TLS trust store: the CA that client",
            "     certificates must chain to. Load ca.crl.pem as its CRL if the device checks revocation.",
            "  2. The role certificates (client-role-observer, -operator, -engineer, -admin, and",
            "     client-no-role without a role) are for the access-control (AC) tests: each carries the",
            "     Modbus/TCP Security role extension (OID 1.3.6.1.4.1.50316.802.1). Map those role names",
            "     to the device's rights (operator is the positive control of the TLS tests); a device",
            "     that trusts single certificates instead of a CA takes these files.",
            "  3. Run kentei again.",
        ]
    lines += [
        "",
        "A new CA (`kentei pki rotate`) means installing it again; `kentei pki show` prints the",
        "CA's thumbprint to compare with what the DUT holds.",
        "",
    ]
    return "\n".join(lines)


def export_install_set(pki: TestPki, kind: str, target: Path) -> list[Path]:
    """Write what a lab installs on a DUT of `kind` into `target`: plain files, the Part 12 layout
    (OPC UA) and README.txt. Never a private key. Returns the files written."""
    if kind not in _INSTALLED_CLIENTS:
        raise ValueError(f"unknown export {kind!r}: choose {' or '.join(EXPORT_KINDS)}")
    clients = _INSTALLED_CLIENTS[kind]
    target.mkdir(parents=True, exist_ok=True)
    written = [_copy(source, target / name) for name, source in _public_files(pki, ("ca", *clients))]
    if kind == "opcua":
        ca, crl = pki.entry("ca").cert_der, pki.crl_der
        layout = target / "pki"
        written += [
            _copy(ca, layout / "trusted" / "certs" / ca.name),
            _copy(pki.entry("client").cert_der, layout / "trusted" / "certs" / "client.der"),
            _copy(crl, layout / "trusted" / "crl" / crl.name),
            _copy(ca, layout / "issuers" / "certs" / ca.name),
            _copy(crl, layout / "issuers" / "crl" / crl.name),
        ]
        # The CRLs of the intermediates kentei sends with its negatives, beside their certificates:
        # without them a DUT refuses those leaves as of unknown revocation, whatever else is wrong.
        for name, issued in intermediate_crls(pki).items():
            written.append(_copy(pki.entry(name).cert_der, layout / "issuers" / "certs" / f"{name}.der"))
            path = layout / "issuers" / "crl" / f"{name}.crl.der"
            path.write_bytes(issued.public_bytes(serialization.Encoding.DER))
            written.append(path)
    readme = target / "README.txt"
    readme.write_text(_readme(pki, kind, clients), encoding="utf-8")
    return [*written, readme]


def _is_private_key(data: bytes) -> bool:
    if b"PRIVATE KEY-----" in data:
        return True
    for loader in (serialization.load_der_private_key, serialization.load_pem_private_key):
        try:
            loader(data, password=None)
        except TypeError:  # an encrypted key: still a key
            return True
        except (ValueError, UnsupportedAlgorithm):
            continue
        return True
    return False


def private_key_files(root: Path) -> list[Path]:
    """Every file under `root` that is, or holds, a private key (PEM of any kind, DER PKCS#8/PKCS#1)."""
    return [p for p in sorted(root.rglob("*")) if p.is_file() and _is_private_key(p.read_bytes())]
