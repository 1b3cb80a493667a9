"""The simulator's user token policies: one PolicyId per policy, and the token checked against it.

asyncua names every UserName policy "username" (and every X.509 one "certificate") on every
endpoint, although the policy differs: on a Sign endpoint the password is encrypted with the
endpoint's policy, on a SignAndEncrypt one it is not encrypted at all. Part 4 7.41 (v1.05)
makes a PolicyId unique within a server, so a client knows from the id alone how to secure its
token; the conformant simulator therefore names each policy after its token type and effective
security policy. ActivateSession then finds the policy a token names, refuses a PolicyId that
was not offered for that token type, an EncryptionAlgorithm other than the policy's, and a
userTokenSignature made with another algorithm than the policy's.
"""

from __future__ import annotations

from collections.abc import Iterable

from asyncua import ua
from asyncua.crypto import security_policies as sp

from protocols.opcua.security import NONE_POLICY

# What each security policy prescribes for a user token's secret (EncryptionAlgorithm) and for a
# userTokenSignature: asyncua's own policy classes carry Part 7's table.
_POLICIES = (
    sp.SecurityPolicyBasic128Rsa15,
    sp.SecurityPolicyBasic256,
    sp.SecurityPolicyBasic256Sha256,
    sp.SecurityPolicyAes128Sha256RsaOaep,
    sp.SecurityPolicyAes256Sha256RsaPss,
)
_ENCRYPTION = {p.URI: p.AsymmetricEncryptionURI for p in _POLICIES}
_SIGNATURE = {p.URI: p.AsymmetricSignatureURI for p in _POLICIES}


def _short(uri: str) -> str:
    return uri.rpartition("#")[2] or "None"


def effective_uri(policy: ua.UserTokenPolicy, endpoint: ua.EndpointDescription) -> str:
    """The security policy a token of this policy is secured with (empty: the endpoint's own)."""
    return policy.SecurityPolicyUri or endpoint.SecurityPolicyUri or NONE_POLICY


def name_policies_uniquely(endpoints: Iterable[ua.EndpointDescription]) -> None:
    """Give every token policy the id `<type>_<effective policy>`: one id, one policy."""
    for endpoint in endpoints:
        renamed = []
        for policy in endpoint.UserIdentityTokens or ():
            copy = ua.UserTokenPolicy(
                PolicyId=f"{policy.TokenType.name.lower()}_{_short(effective_uri(policy, endpoint))}",
                TokenType=policy.TokenType,
                IssuedTokenType=policy.IssuedTokenType,
                IssuerEndpointUrl=policy.IssuerEndpointUrl,
                SecurityPolicyUri=policy.SecurityPolicyUri,
            )
            renamed.append(copy)
        endpoint.UserIdentityTokens = renamed


def offered_policy(
    endpoints: Iterable[ua.EndpointDescription],
    policy_id: str,
    token_type: ua.UserTokenType,
    channel_policy_uri: str,
    channel_mode: ua.MessageSecurityMode,
) -> str | None:
    """The effective security policy URI of the offered policy `policy_id` of this token type,
    preferring the endpoint the channel was opened on; None when no endpoint offers it."""
    found: str | None = None
    for endpoint in endpoints:
        for policy in endpoint.UserIdentityTokens or ():
            if policy.PolicyId != policy_id or policy.TokenType != token_type:
                continue
            uri = effective_uri(policy, endpoint)
            if endpoint.SecurityPolicyUri == channel_policy_uri and endpoint.SecurityMode == channel_mode:
                return uri
            found = found or uri
    return found


def signature_algorithm_for(policy_uri: str) -> str | None:
    """The Algorithm a userTokenSignature under this policy must name; None for policy None."""
    return _SIGNATURE.get(policy_uri)


def algorithm_for(policy_uri: str) -> str | None:
    """The EncryptionAlgorithm a secret under this policy must name; None for policy None."""
    return _ENCRYPTION.get(policy_uri)
