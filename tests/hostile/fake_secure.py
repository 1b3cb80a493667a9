"""An OPC UA device that looks secure and serves nothing: GetEndpoints over None lists only
Basic256Sha256 endpoints with a real server certificate, every secure OpenSecureChannel gets an
ERR, and every service but discovery is refused over the None channel."""

from __future__ import annotations

import asyncio
from pathlib import Path

from asyncua import ua

from tests.hostile import ua_frames
from tests.hostile.server import Handler

GET_ENDPOINTS = ua.ObjectIds.GetEndpointsRequest_Encoding_DefaultBinary
FIND_SERVERS = ua.ObjectIds.FindServersRequest_Encoding_DefaultBinary
MAX_MESSAGES = 100  # per connection
SECURE_CHANNEL_REFUSAL = "BadSecurityChecksFailed"
NONE_SERVICE_REFUSAL = "BadSecurityPolicyRejected"


def _endpoints(url: str, certificate: bytes, application_uri: str) -> list[ua.EndpointDescription]:
    server = ua.ApplicationDescription()
    server.ApplicationUri = application_uri
    server.ProductUri = "urn:hostile:looks-secure"
    server.ApplicationName = ua.LocalizedText("looks secure")
    server.ApplicationType = ua.ApplicationType.Server
    server.DiscoveryUrls = [url]
    token = ua.UserTokenPolicy()
    token.PolicyId = "username_basic256sha256"
    token.TokenType = ua.UserTokenType.UserName
    token.SecurityPolicyUri = ua_frames.BASIC256SHA256
    endpoints = []
    for mode, level in ((ua.MessageSecurityMode.Sign, 2), (ua.MessageSecurityMode.SignAndEncrypt, 3)):
        endpoint = ua.EndpointDescription()
        endpoint.EndpointUrl = url
        endpoint.Server = server
        endpoint.ServerCertificate = certificate
        endpoint.SecurityMode = mode
        endpoint.SecurityPolicyUri = ua_frames.BASIC256SHA256
        endpoint.UserIdentityTokens = [token]
        endpoint.TransportProfileUri = "http://opcfoundation.org/UA-Profile/Transport/uatcp-uasc-uabinary"
        endpoint.SecurityLevel = level
        endpoints.append(endpoint)
    return endpoints


def looks_secure(certificate_der: Path, application_uri: str) -> Handler:
    certificate = certificate_der.read_bytes()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        message_type, body = await ua_frames.read_message(reader)
        if message_type != b"HEL":
            return
        url = ua_frames.hello_url(body)
        writer.write(ua_frames.ack())
        for _ in range(MAX_MESSAGES):
            await writer.drain()
            message_type, body = await ua_frames.read_message(reader)
            if message_type == b"OPN":
                policy, request_id = ua_frames.opn_policy(body)
                if policy != ua_frames.NONE_POLICY:
                    writer.write(ua_frames.err(SECURE_CHANNEL_REFUSAL, "no client is ever trusted"))
                    await writer.drain()
                    return
                writer.write(ua_frames.open_response(request_id))
            elif message_type == b"MSG":
                type_id, request_id, header, _ = ua_frames.msg_request(body)
                if type_id == GET_ENDPOINTS:
                    response = ua.GetEndpointsResponse()
                    response.Endpoints = _endpoints(url, certificate, application_uri)
                    writer.write(ua_frames.response_message(response, request_id, header.RequestHandle))
                elif type_id == FIND_SERVERS:
                    found = ua.FindServersResponse()
                    found.Servers = [_endpoints(url, certificate, application_uri)[0].Server]
                    writer.write(ua_frames.response_message(found, request_id, header.RequestHandle))
                else:
                    writer.write(
                        ua_frames.service_fault(NONE_SERVICE_REFUSAL, request_id, header.RequestHandle)
                    )
            else:  # CLO or anything else: done
                return

    return serve
