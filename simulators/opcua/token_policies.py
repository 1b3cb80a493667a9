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

NONE_POLICY = "http://opcfoundation.org/UA/SecurityPolicy#None"
RSA15 = "http://www.w3.org/2001/04/xmlenc#rsa-1_5"
RSA_OAEP = "http://www.w3.org/2001/04/xmlenc#rsa-oaep"
RSA_OAEP_SHA256 = "http://opcfoundation.org/UA/security/rsa-oaep-sha2-256"

# The asymmetric encryption each security policy prescribes for secrets (Part 7, the policy profiles).
_ALGORITHM = {
    "Basic128Rsa15": RSA15,
    "Basic256": RSA_OAEP,
    "Basic256Sha256": RSA_OAEP,
    "Aes128_Sha256_RsaOaep": RSA_OAEP,
    "Aes256_Sha256_RsaPss": RSA_OAEP_SHA256,
}


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


# The asymmetric signature each security policy prescribes (a userTokenSignature must use it).
_SIGNATURE = {
    "Basic128Rsa15": "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
    "Basic256": "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
    "Basic256Sha256": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "Aes128_Sha256_RsaOaep": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "Aes256_Sha256_RsaPss": "http://opcfoundation.org/UA/security/rsa-pss-sha2-256",
}


def signature_algorithm_for(policy_uri: str) -> str | None:
    """The Algorithm a userTokenSignature under this policy must name; None for policy None."""
    return _SIGNATURE.get(_short(policy_uri))


def algorithm_for(policy_uri: str) -> str | None:
    """The EncryptionAlgorithm a secret under this policy must name; None for policy None."""
    return _ALGORITHM.get(_short(policy_uri))
