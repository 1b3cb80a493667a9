"""An independent OPC UA probe: a stack's own client (asyncua or python-opcua), not kentei's code.

Establishes the facts the corpus truth tables are built on and prints them as one JSON object:

    python tests/third_party/opcua_probe.py --stack asyncua|opcua --url URL --pki DIR [--user NAME:PASSWORD]

Both stacks share the synchronous client API (asyncua.sync.Client, opcua.Client), so each fact is
established the same way with either. A session attempt is `activated` only when ActivateSession
succeeded and ServerStatus.State (i=2259) was read; everything else is what the client raised.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from protocols.pki import load_pki  # the test PKI's files only: no kentei client code

DEPRECATED = ("#Basic128Rsa15", "#Basic256")  # Basic256Sha256 ends differently
SECURE = ("Basic256Sha256", "SignAndEncrypt")
DEFAULT_PAIR = ("admin", "admin")
WRONG_PASSWORD = "corpus-wrong-password"
UNKNOWN_USER = "corpus-no-such-user"
TIMEOUT_S = 4
# The user certificate facts and the PKI entries they present (kentei: opcua_user_certificates.py).
USER_CERT_ENTRIES = {
    "user_cert_control_session": "client",
    "user_cert_self_signed_session": "client-self-signed",
    "user_cert_unknown_issuer_session": "client-unknown-issuer",
    "user_cert_expired_session": "client-expired",
    "user_cert_not_yet_valid_session": "client-not-yet-valid",
    "user_cert_revoked_session": "client-revoked",
    "user_cert_bad_signature_session": "client-bad-signature",
    "user_cert_ca_as_leaf_session": "client-ca-as-leaf",
    "user_cert_weak_key_session": "client-rsa1024",
    "user_cert_sha1_session": "client-sha1",
    "user_cert_no_digital_signature_session": "client-no-digital-signature",
    "user_cert_chain_incomplete_session": "client-chain-incomplete",
    "user_cert_issuer_revoked_session": "client-issuer-revoked",
    "user_cert_sha1_rsa1024_session": "client-sha1-rsa1024",
    "user_cert_sha1_rsa4096_session": "client-sha1-rsa4096",
    "user_cert_issuer_crl_missing_session": "client-issuer-crl-missing",
    "user_cert_issuer_crl_expired_session": "client-issuer-crl-expired",
    "user_cert_pathlen_violated_session": "client-pathlen-violated",
    "user_cert_unknown_critical_extension_session": "client-unknown-critical-extension",
    "user_cert_issuer_untrusted_session": "client-issuer-untrusted",
}


def client_class(stack: str) -> Any:
    if stack == "asyncua":
        from asyncua.sync import Client

        return Client
    from opcua import Client

    return Client


class Probe:
    def __init__(self, stack: str, url: str, pki_dir: Path, user: tuple[str, str] | None) -> None:
        self.stack = stack
        self.client = client_class(stack)
        self.url = url
        self.pki = load_pki(pki_dir)
        self.user = user

    def endpoints(self) -> list[Any]:
        client = self.client(self.url, timeout=TIMEOUT_S)
        return list(client.connect_and_get_server_endpoints())

    def session(
        self,
        policy: str,
        mode: str,
        entry: str | None,
        user: tuple[str, str] | None,
        write: str | None = None,
        user_cert: str | None = None,
    ) -> str:
        """'activated: <state>' or 'refused: <what the client raised>'; with `write`, that node's value
        is read and written back, and the answer says 'wrote <value>' or what the write raised. With
        `user_cert` (a PKI entry) the session's user token is that X.509 certificate (the leaf alone)."""
        client = self.client(self.url, timeout=TIMEOUT_S)
        client.application_uri = self.pki.client_application_uri
        try:
            if policy != "None":
                material = self.pki.entry(entry or "client")
                client.set_security_string(f"{policy},{mode},{material.cert_pem},{material.key_pem}")
            if user is not None:
                client.set_user(user[0])
                client.set_password(user[1])
            if user_cert is not None:  # asyncua's names: the user certificate and its key
                client.load_client_certificate(str(self.pki.entry(user_cert).cert_pem))
                client.load_private_key(str(self.pki.entry(user_cert).key_pem))
            client.connect()
        except Exception as exc:
            return f"refused: {type(exc).__name__}: {exc}"[:300]
        try:
            state = client.get_node("i=2259").get_value()
        except Exception as exc:
            return f"refused at Read: {type(exc).__name__}: {exc}"[:300]
        try:
            if write is None:
                return f"activated: ServerState {state}"
            node = client.get_node(write)
            value = node.get_data_value().Value
            node.set_value(value)
            return f"activated: wrote {value.Value} back to {write}"
        except Exception as exc:
            return f"activated: the write was refused: {type(exc).__name__}: {exc}"[:300]
        finally:
            with contextlib.suppress(Exception):
                client.disconnect()


async def session_over_none(url: str, user: tuple[str, str] | None) -> str:
    """CreateSession, ActivateSession and Read over a None SecureChannel with asyncua's service calls.

    The high-level clients refuse locally when no None endpoint is listed, so this goes one layer
    down (asyncua's own UaClient, not kentei's): anonymous if any token policy offers it, else the
    user's password in clear under the first UserName token policy.
    """
    from asyncua import Client, ua

    client = Client(url, timeout=TIMEOUT_S)
    stage = "OpenSecureChannel"
    try:
        await client.connect_socket()
        await client.send_hello()
        await client.open_secure_channel()
        stage = "CreateSession"
        created = await client.uaclient.create_session(_session_parameters(url, None))
        stage = "ActivateSession"
        offered = [t for e in created.ServerEndpoints for t in e.UserIdentityTokens]
        anonymous = next((t for t in offered if t.TokenType == ua.UserTokenType.Anonymous), None)
        named = next((t for t in offered if t.TokenType == ua.UserTokenType.UserName), None)
        activate = ua.ActivateSessionParameters()
        activate.LocaleIds = ["en"]
        if anonymous is not None or user is None or named is None:
            activate.UserIdentityToken = ua.AnonymousIdentityToken(
                PolicyId=anonymous.PolicyId if anonymous else "anonymous"
            )
        else:
            activate.UserIdentityToken = ua.UserNameIdentityToken(
                PolicyId=named.PolicyId, UserName=user[0], Password=user[1].encode(), EncryptionAlgorithm=None
            )
        await client.uaclient.activate_session(activate)
        stage = "Read"
        value = await client.get_node("i=2259").read_value()
        return f"activated: ServerState {value}"
    except Exception as exc:
        return f"refused at {stage}: {type(exc).__name__}: {exc}"[:300]
    finally:
        with contextlib.suppress(Exception):
            await client.uaclient.close_session(True)
        with contextlib.suppress(Exception):
            await client.close_secure_channel()
        with contextlib.suppress(Exception):
            client.disconnect_socket()


async def read_before_activation(url: str, pki_dir: Path) -> str:
    """CreateSession, then a Read of ServerStatus.State without ActivateSession (asyncua's calls).

    Over None when the server lists a None endpoint (a session is never activated either way),
    else on Basic256Sha256/SignAndEncrypt with the kentei PKI's client certificate.
    """
    from asyncua import Client, ua

    pki = load_pki(pki_dir)
    endpoints = await Client(url, timeout=TIMEOUT_S).connect_and_get_server_endpoints()
    over_none = any(e.SecurityMode == ua.MessageSecurityMode.None_ for e in endpoints)
    client = Client(url, timeout=TIMEOUT_S)
    client.application_uri = pki.client_application_uri
    stage = "OpenSecureChannel"
    try:
        if not over_none:
            material = pki.entry("client")
            await client.set_security_string(
                f"Basic256Sha256,SignAndEncrypt,{material.cert_pem},{material.key_pem}"
            )
        await client.connect_socket()
        await client.send_hello()
        await client.open_secure_channel()
        stage = "CreateSession"
        await client.create_session()
        stage = "Read"
        value = await client.get_node("i=2259").read_value()
        return f"read before activation ({'None' if over_none else 'Basic256Sha256'}): ServerState {value}"
    except Exception as exc:
        return f"refused at {stage}: {type(exc).__name__}: {exc}"[:300]
    finally:
        with contextlib.suppress(Exception):
            await client.uaclient.close_session(True)
        with contextlib.suppress(Exception):
            await client.close_secure_channel()
        with contextlib.suppress(Exception):
            client.disconnect_socket()


async def read_with_foreign_token(url: str, pki_dir: Path, login: tuple[str, str] | None) -> str:
    """An activated session (the login, else Anonymous) on Basic256Sha256/SignAndEncrypt, a Read of
    ServerStatus.State with its own token, then the same Read with a null AuthenticationToken in the
    RequestHeader (asyncua's calls; the known bug class session-token-unchecked)."""
    from asyncua import Client, ua

    pki = load_pki(pki_dir)
    client = Client(url, timeout=TIMEOUT_S)
    client.application_uri = pki.client_application_uri
    material = pki.entry("client")
    stage = "session"
    try:
        await client.set_security_string(
            f"Basic256Sha256,SignAndEncrypt,{material.cert_pem},{material.key_pem}"
        )
        if login is not None:
            client.set_user(login[0])
            client.set_password(login[1])
        await client.connect()
        stage = "Read with its own token"
        await client.get_node("i=2259").read_value()
        stage = "Read with a null token"
        protocol = client.uaclient.protocol
        assert protocol is not None
        own, protocol.authentication_token = protocol.authentication_token, ua.NodeId()
        try:
            value = await client.get_node("i=2259").read_value()
        finally:
            protocol.authentication_token = own
        return f"read with a null token: ServerState {value}"
    except Exception as exc:
        return f"refused at {stage}: {type(exc).__name__}: {exc}"[:300]
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()


def _session_parameters(url: str, certificate: bytes | None) -> Any:
    from asyncua import ua

    params = ua.CreateSessionParameters()
    params.ClientDescription = ua.ApplicationDescription(
        ApplicationUri="urn:corpus:probe", ApplicationType=ua.ApplicationType.Client
    )
    params.EndpointUrl = url
    params.SessionName = "corpus probe"
    params.ClientNonce = os.urandom(32)
    params.ClientCertificate = certificate
    params.RequestedSessionTimeout = 60_000
    params.MaxResponseMessageSize = 0
    return params


async def without_client_certificate(url: str, pki_dir: Path, withhold_at: str) -> str:
    """TS-5 on Basic256Sha256/SignAndEncrypt with the trusted `client` key (asyncua's calls): an
    OpenSecureChannel carrying no SenderCertificate (`withhold_at="OpenSecureChannel"`: asyncua
    leaves it out when its policy has no host certificate), or, on a channel opened with the
    certificate, a CreateSession whose ClientCertificate is empty (asyncua's UaClient call, which
    does not check the server's signature over the certificate it was not sent)."""
    from asyncua import Client

    pki = load_pki(pki_dir)
    client = Client(url, timeout=TIMEOUT_S)
    client.application_uri = pki.client_application_uri
    material = pki.entry("client")
    stage = "OpenSecureChannel"
    try:
        await client.set_security_string(
            f"Basic256Sha256,SignAndEncrypt,{material.cert_pem},{material.key_pem}"
        )
        await client.connect_socket()
        await client.send_hello()
        if withhold_at == stage:
            client.security_policy.host_certificate = None
        await client.open_secure_channel()
        if withhold_at == stage:
            return "went through: a channel was opened without the client certificate"
        stage = "CreateSession"
        created = await client.uaclient.create_session(_session_parameters(url, None))
        return f"went through: session {created.SessionId} created without the client certificate"
    except Exception as exc:
        protocol = client.uaclient.protocol
        closed = protocol is None or protocol.is_closed
        return f"refused at {stage}: {type(exc).__name__}: {exc}{' (closed)' if closed else ''}"[:300]
    finally:
        with contextlib.suppress(Exception):
            await client.close_secure_channel()
        with contextlib.suppress(Exception):
            client.disconnect_socket()


async def clear_password_on_sign(url: str, pki_dir: Path, login: tuple[str, str] | None) -> str:
    """AU-2 as a client that ignores the token policy: the user's correct password in clear (no
    EncryptionAlgorithm) on Basic256Sha256/Sign, with asyncua's Client and its token step replaced."""
    from asyncua import Client, ua

    if login is None:
        return "not tried: no user to log in with"
    endpoints = await Client(url, timeout=TIMEOUT_S).connect_and_get_server_endpoints()
    if not any(
        e.SecurityMode == ua.MessageSecurityMode.Sign and e.SecurityPolicyUri.endswith("#Basic256Sha256")
        for e in endpoints
    ):
        return "not tried: no Basic256Sha256/Sign endpoint"
    pki = load_pki(pki_dir)
    client = Client(url, timeout=TIMEOUT_S)
    client.application_uri = pki.client_application_uri
    material = pki.entry("client")

    def in_clear(params: Any, username: str | None, password: str | None) -> None:
        policy = client.server_policy(ua.UserTokenType.UserName)
        params.UserIdentityToken = ua.UserNameIdentityToken(
            PolicyId=policy.PolicyId,
            UserName=username,
            Password=(password or "").encode(),
            EncryptionAlgorithm=None,
        )

    client._add_user_auth = in_clear  # type: ignore[method-assign]
    client.set_user(login[0])
    client.set_password(login[1])
    try:
        await client.set_security_string(f"Basic256Sha256,Sign,{material.cert_pem},{material.key_pem}")
        await client.connect()
    except Exception as exc:
        return f"refused: {type(exc).__name__}: {exc}"[:300]
    try:
        value = await client.get_node("i=2259").read_value()
        return f"activated: ServerState {value}"
    except Exception as exc:
        return f"refused at Read: {type(exc).__name__}: {exc}"[:300]
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()


NOT_OFFERED_POLICY_ID = "corpus-not-offered"
RSA15 = "http://www.w3.org/2001/04/xmlenc#rsa-1_5"


def token_policy_id_clash(endpoints: list[Any]) -> list[str]:
    """PolicyIds that GetEndpoints lists for more than one (token type, effective security policy);
    an empty token SecurityPolicyUri means the endpoint's own (Part 4 7.41)."""
    meaning: dict[str, set[tuple[int, str]]] = {}
    for e in endpoints:
        for t in e.UserIdentityTokens or ():
            uri = t.SecurityPolicyUri or e.SecurityPolicyUri
            meaning.setdefault(t.PolicyId, set()).add((int(t.TokenType), uri))
    return sorted(pid for pid, m in meaning.items() if len(m) > 1)


async def forged_password_tokens(url: str, pki_dir: Path, login: tuple[str, str] | None) -> dict[str, str]:
    """AU-2/AU-3 token forms, with asyncua's Client and its token step replaced: the control, the
    secret without the server nonce, with the nonce of the control's session (a replay), encrypted
    with RSA PKCS#1 v1.5 where the policy names another algorithm, under a PolicyId not offered,
    and with an empty password or user name. Each answer is 'activated: ...' or 'refused: ...'."""
    import struct

    from asyncua import Client, ua
    from asyncua.crypto import security_policies, uacrypto

    if login is None:
        return {"control": "not tried: no user to log in with"}
    endpoints = await Client(url, timeout=TIMEOUT_S).connect_and_get_server_endpoints()

    def encrypts(e: Any) -> bool:
        return any(
            int(t.TokenType) == 1 and not (t.SecurityPolicyUri or e.SecurityPolicyUri).endswith("#None")
            for t in e.UserIdentityTokens or ()
        )

    secure = [
        e for e in endpoints if int(e.SecurityMode) != 1 and e.SecurityPolicyUri.endswith("#Basic256Sha256")
    ]
    encrypting = next((e for e in secure if encrypts(e)), None)
    plain = next((e for e in secure if any(int(t.TokenType) == 1 for t in e.UserIdentityTokens or ())), None)
    pki = load_pki(pki_dir)
    material = pki.entry("client")
    nonces: list[bytes] = []

    async def attempt(endpoint: Any, form: str, who: tuple[str, str], replay: bytes = b"") -> str:
        client = Client(url, timeout=TIMEOUT_S)
        client.application_uri = pki.client_application_uri

        def token(params: Any, username: str | None, password: str | None) -> None:
            policy = client.server_policy(ua.UserTokenType.UserName)
            made = ua.UserNameIdentityToken(UserName=username, PolicyId=policy.PolicyId)
            secret = (password or "").encode()
            if policy.SecurityPolicyUri and not policy.SecurityPolicyUri.endswith("#None"):
                nonce = {"no-nonce": b"", "replayed": replay}.get(form, client._server_nonce or b"")
                nonces.append(client._server_nonce or b"")
                blob = struct.pack("<I", len(secret) + len(nonce)) + secret + nonce
                key = uacrypto.x509_from_der(client.security_policy.peer_certificate).public_key()
                made.Password, made.EncryptionAlgorithm = security_policies.encrypt_asymmetric(
                    key, blob, policy.SecurityPolicyUri
                )
                if form == "other-algorithm" and made.EncryptionAlgorithm != RSA15:
                    made.Password, made.EncryptionAlgorithm = uacrypto.encrypt_rsa15(key, blob), RSA15
            else:
                made.Password = secret
            if form == "not-offered-policy-id":
                made.PolicyId = NOT_OFFERED_POLICY_ID
            params.UserIdentityToken = made

        client._add_user_auth = token  # type: ignore[method-assign]
        client.set_user(who[0])
        client.set_password(who[1])
        mode = "Sign" if int(endpoint.SecurityMode) == 2 else "SignAndEncrypt"
        try:
            await client.set_security_string(f"Basic256Sha256,{mode},{material.cert_pem},{material.key_pem}")
            await client.connect()
        except Exception as exc:
            return f"refused: {type(exc).__name__}: {exc}"[:300]
        try:
            return f"activated: ServerState {await client.get_node('i=2259').read_value()}"
        except Exception as exc:
            return f"refused at Read: {type(exc).__name__}: {exc}"[:300]
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()

    out: dict[str, str] = {}
    if encrypting is not None:
        out["encrypted_control"] = await attempt(encrypting, "control", login)
        control_nonce = nonces[-1] if nonces else b""
        out["no_nonce"] = await attempt(encrypting, "no-nonce", login)
        out["replayed"] = await attempt(encrypting, "replayed", login, control_nonce)
        out["other_algorithm"] = await attempt(encrypting, "other-algorithm", login)
    if plain is not None:
        out["control"] = await attempt(plain, "control", login)
        out["not_offered_policy_id"] = await attempt(plain, "not-offered-policy-id", login)
        out["empty_password"] = await attempt(plain, "control", (login[0], ""))
        out["empty_user"] = await attempt(plain, "control", ("", login[1]))
    return out


async def forged_token_facts(url: str, pki_dir: Path, login: tuple[str, str] | None) -> dict[str, Any]:
    """`forged_password_tokens` as facts. Run after the other probes, not beside them: a server
    that drops sessions under a burst (node-opcua) would otherwise refuse the others' sessions."""
    forged = await forged_password_tokens(url, pki_dir, login)
    return {
        **{f"token_{form}_session": answer.startswith("activated") for form, answer in forged.items()},
        **{f"token_{form}_session_detail": answer for form, answer in forged.items()},
    }


REQUESTED_TIMEOUT_MS = 1000.0
LONGEST_TIMEOUT_S = 15.0  # a server that revises the session timeout above this is not waited for


async def session_expiry(url: str, pki_dir: Path, login: tuple[str, str] | None) -> str:
    """Activate a session asking for a 1 s timeout, read once, stay idle past the revised timeout,
    read again (asyncua's calls without Client.connect, whose keep-alive would hold it open)."""
    from asyncua import Client, ua

    pki = load_pki(pki_dir)
    endpoints = await Client(url, timeout=TIMEOUT_S).connect_and_get_server_endpoints()
    over_none = any(e.SecurityMode == ua.MessageSecurityMode.None_ for e in endpoints)
    client = Client(url, timeout=TIMEOUT_S)
    client.application_uri = pki.client_application_uri
    client.session_timeout = int(REQUESTED_TIMEOUT_MS)
    stage = "OpenSecureChannel"
    try:
        if not over_none:
            material = pki.entry("client")
            await client.set_security_string(
                f"Basic256Sha256,SignAndEncrypt,{material.cert_pem},{material.key_pem}"
            )
        await client.connect_socket()
        await client.send_hello()
        await client.open_secure_channel()
        stage = "CreateSession"
        created = await client.create_session()
        revised_s = created.RevisedSessionTimeout / 1000
        if revised_s > LONGEST_TIMEOUT_S:
            return f"not waited for: the session timeout was revised to {revised_s:g} s"
        stage = "ActivateSession"
        await client.activate_session(*(login or ()))
        stage = "the first Read"
        await client.get_node("i=2259").read_value()
        idle_s = revised_s * 1.5 + 0.5  # a margin for servers that check expiry periodically
        await asyncio.sleep(idle_s)
        stage = "the Read after the timeout"
        value = await client.get_node("i=2259").read_value()
        return f"usable {idle_s:g} s after the last request (timeout {revised_s:g} s): ServerState {value}"
    except Exception as exc:
        return f"refused at {stage}: {type(exc).__name__}: {exc}"[:300]
    finally:
        with contextlib.suppress(Exception):
            await client.uaclient.close_session(True)
        with contextlib.suppress(Exception):
            await client.close_secure_channel()
        with contextlib.suppress(Exception):
            client.disconnect_socket()


async def service_level(
    url: str, pki_dir: Path, login: tuple[str, str] | None, user: tuple[str, str] | None = None
) -> dict[str, Any]:
    """The facts only asyncua's service calls can establish, for any server (made at once: the
    session expiry mostly waits)."""
    from asyncua import Client

    (
        over_none,
        before,
        expiry,
        no_cert_channel,
        no_cert_session,
        clear,
        endpoints,
    ) = await asyncio.gather(
        session_over_none(url, login),
        read_before_activation(url, pki_dir),
        session_expiry(url, pki_dir, login),
        without_client_certificate(url, pki_dir, "OpenSecureChannel"),
        without_client_certificate(url, pki_dir, "CreateSession"),
        clear_password_on_sign(url, pki_dir, user or login),
        Client(url, timeout=TIMEOUT_S).connect_and_get_server_endpoints(),
    )
    foreign_token = await read_with_foreign_token(url, pki_dir, login)
    return {
        "token_policy_id_clash": bool(token_policy_id_clash(list(endpoints))),
        "token_policy_id_clash_detail": ", ".join(token_policy_id_clash(list(endpoints))),
        "clear_password_on_sign": clear.startswith("activated"),
        "clear_password_on_sign_detail": clear,
        "channel_without_certificate": no_cert_channel.startswith("went through"),
        "channel_without_certificate_detail": no_cert_channel,
        "session_without_certificate": no_cert_session.startswith("went through"),
        "session_without_certificate_detail": no_cert_session,
        "session_over_none": over_none.startswith("activated"),
        "session_over_none_detail": over_none,
        "read_before_activation": before.startswith("read before activation"),
        "read_before_activation_detail": before,
        "session_usable_after_timeout": expiry.startswith("usable"),
        "session_expired_after_timeout": expiry.startswith("refused at the Read after the timeout"),
        "session_usable_after_timeout_detail": expiry,
        "read_with_null_token": foreign_token.startswith("read with a null token"),
        "read_with_null_token_detail": foreign_token,
    }


def facts(probe: Probe, setpoint: str | None = None) -> dict[str, Any]:
    endpoints = probe.endpoints()
    tokens = {int(t.TokenType) for e in endpoints for t in e.UserIdentityTokens}
    anonymous = 0 in tokens
    login = None if anonymous else probe.user  # what every client gets offered
    out: dict[str, Any] = {
        "endpoints": sorted(
            f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{getattr(e.SecurityMode, 'name', e.SecurityMode)}"
            for e in endpoints
        ),
        "none_endpoint": any(int(e.SecurityMode) == 1 for e in endpoints),
        "deprecated_policy": any(e.SecurityPolicyUri.endswith(DEPRECATED) for e in endpoints),
        "anonymous_offered": anonymous,
        "username_offered": 1 in tokens,
        # A UserName token a client would send in clear: on a None or Sign endpoint, with no
        # encrypting policy of its own (Part 4 7.36.4: the token's policy, else the endpoint's).
        "clear_username_policy": any(
            int(e.SecurityMode) != 3
            and int(t.TokenType) == 1
            and (t.SecurityPolicyUri or e.SecurityPolicyUri).endswith("#None")
            for e in endpoints
            for t in e.UserIdentityTokens
        ),
        # A UserName token the client must encrypt: on a secure endpoint with a certificate to
        # encrypt to, under an encrypting policy (the token's, else the endpoint's).
        "encrypted_username_policy": any(
            int(e.SecurityMode) != 1
            and e.ServerCertificate
            and int(t.TokenType) == 1
            and not (t.SecurityPolicyUri or e.SecurityPolicyUri).endswith("#None")
            for e in endpoints
            for t in e.UserIdentityTokens
        ),
    }
    certificate = next((e.ServerCertificate for e in endpoints if e.ServerCertificate), None)
    if certificate:
        leaf = x509.load_der_x509_certificate(certificate)
        key = leaf.public_key()
        out["server_cert_rsa_bits"] = key.key_size if isinstance(key, rsa.RSAPublicKey) else 0
        uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        out["server_cert_uri_matches"] = endpoints[0].Server.ApplicationUri in uris.get_values_for_type(
            x509.UniformResourceIdentifier
        )
    # Logins go where the server lets any client log in: Basic256Sha256/SignAndEncrypt when it is
    # offered, else the None endpoint (all a None-only server has).
    secure = any(
        e.SecurityPolicyUri.endswith("#Basic256Sha256") and int(e.SecurityMode) == 3 for e in endpoints
    )
    login_on = SECURE if secure else ("None", "None")
    out["logins_on"] = "/".join(login_on)
    user = probe.user or DEFAULT_PAIR
    attempts = {
        "anonymous_session": (*login_on, "client", None),
        "default_pair_session": (*login_on, "client", DEFAULT_PAIR),
        "wrong_password_session": (*login_on, "client", (user[0], WRONG_PASSWORD)),
        "unknown_user_session": (*login_on, "client", (UNKNOWN_USER, WRONG_PASSWORD)),
    }
    if secure:  # client certificates only mean something on a secure channel
        attempts |= {
            "trusted_cert_session": (*SECURE, "client", login),
            "self_signed_cert_session": (*SECURE, "client-self-signed", login),
            "expired_cert_session": (*SECURE, "client-expired", login),
            "revoked_cert_session": (*SECURE, "client-revoked", login),
            "unknown_issuer_cert_session": (*SECURE, "client-unknown-issuer", login),
            # The certificate-validation breadth of issue 14 (the leaf alone, as this client sends it:
            # for chain-incomplete that is the case itself, its issuer neither sent nor known).
            "no_digital_signature_cert_session": (*SECURE, "client-no-digital-signature", login),
            "no_key_encipherment_cert_session": (*SECURE, "client-no-key-encipherment", login),
            "sha1_rsa1024_cert_session": (*SECURE, "client-sha1-rsa1024", login),
            "wrong_uri_cert_session": (*SECURE, "client-wrong-uri", login),
            "chain_incomplete_cert_session": (*SECURE, "client-chain-incomplete", login),
            # More of issue 14, the leaf alone again. These servers have no issuer list of kentei's,
            # so issuer-untrusted's CA is unknown to them. (kentei remembers python-opcua's choke on
            # its chains, so these rows cost it no probe timeout each.)
            "bad_signature_cert_session": (*SECURE, "client-bad-signature", login),
            "ca_as_leaf_cert_session": (*SECURE, "client-ca-as-leaf", login),
            "not_yet_valid_cert_session": (*SECURE, "client-not-yet-valid", login),
            "weak_key_cert_session": (*SECURE, "client-rsa1024", login),
            "sha1_cert_session": (*SECURE, "client-sha1", login),
            "rsa4096_cert_session": (*SECURE, "client-rsa4096", login),
            "sha1_rsa4096_cert_session": (*SECURE, "client-sha1-rsa4096", login),
            "issuer_untrusted_cert_session": (*SECURE, "client-issuer-untrusted", login),
            "unknown_critical_extension_cert_session": (*SECURE, "client-unknown-critical-extension", login),
        }
    if secure and probe.stack == "asyncua":
        # The chain cases, the leaf alone as asyncua's Client sends it: none of these servers knows
        # the intermediate CAs, so the leaf's issuer is unknown to them whatever is wrong with it.
        attempts |= {
            "issuer_revoked_cert_session": (*SECURE, "client-issuer-revoked", login),
            "issuer_crl_missing_cert_session": (*SECURE, "client-issuer-crl-missing", login),
            "issuer_crl_expired_cert_session": (*SECURE, "client-issuer-crl-expired", login),
            "pathlen_violated_cert_session": (*SECURE, "client-pathlen-violated", login),
        }
    # X.509 user tokens (AU-6), where the secure endpoint offers them: asyncua's Client signs the token
    # with each PKI entry's key; the trusted `client` first (the same entries as kentei's cases).
    user_certificates = secure and any(
        int(t.TokenType) == 2
        for e in endpoints
        for t in e.UserIdentityTokens
        if e.SecurityPolicyUri.endswith("#Basic256Sha256")
    )
    if user_certificates and probe.stack == "asyncua":
        for fact, entry in USER_CERT_ENTRIES.items():
            answer = probe.session(*SECURE, "client", None, user_cert=entry)
            out[fact] = answer.startswith("activated")
            out[f"{fact}_detail"] = answer
    out |= asyncio.run(service_level(probe.url, probe.pki.root, login, probe.user))
    out |= asyncio.run(forged_token_facts(probe.url, probe.pki.root, probe.user or login))
    for name, (policy, mode, entry, who) in attempts.items():
        answer = probe.session(policy, mode, entry, who)
        out[name] = answer.startswith("activated")
        out[f"{name}_detail"] = answer
    if setpoint is not None:  # what an anonymous session may do to the integrator's setpoint
        answer = probe.session(*login_on, "client", None, write=setpoint)
        out["anonymous_write_setpoint"] = answer.startswith("activated: wrote")
        out["anonymous_write_setpoint_detail"] = answer
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", choices=("asyncua", "opcua"), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--pki", type=Path, required=True)
    parser.add_argument("--user", metavar="NAME:PASSWORD")
    parser.add_argument("--setpoint", metavar="NODE", help="a writable node an anonymous session tries")
    parser.add_argument(
        "--service-level", action="store_true", help="only the facts asyncua's service calls establish"
    )
    parser.add_argument("--forged-tokens", action="store_true", help="only the forged UserName token facts")
    args = parser.parse_args()
    name, _, password = (args.user or "").partition(":")
    user = (name, password) if args.user else None
    if args.service_level:
        result = asyncio.run(service_level(args.url, args.pki, user))
    elif args.forged_tokens:
        result = asyncio.run(forged_token_facts(args.url, args.pki, user))
    else:
        result = facts(Probe(args.stack, args.url, args.pki, user), args.setpoint)
    print(json.dumps(result), flush=True)
    os._exit(0)  # the sync clients' event-loop threads would otherwise keep the process alive
