"""Where a webhook may be sent: https only, and only to public addresses.

The host is resolved and every address it resolves to is checked, when the URL is
set and again at each attempt; the attempt then connects to one checked address
(the URL's host stays in the Host header and TLS SNI, so the certificate is still
checked against the name). Redirects are never followed. With
`CONTRIBUTION_WEBHOOK_ALLOW_INSECURE=true` (local development) none of this applies.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.contribution.webhooks.errors import WebhookUrlForbidden, WebhookUrlInvalid

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses it resolves to, as text.
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_URL = 2048
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# Cloud instance metadata: AWS/GCP/Azure/OpenStack, AWS ECS, Alibaba Cloud, AWS over IPv6.
_METADATA = {
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
}


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the host resolves to (A and AAAA)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def forbidden_class(ip: IPAddress) -> str | None:
    """Why an address may not receive webhooks (loopback, private, ...), or None for a public one."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA:
        return "metadata"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "cgnat"
    if ip.is_private:
        return "private"
    if ip.is_reserved or not ip.is_global:
        return "reserved"
    return None


def parse_url(raw: str, *, allow_insecure: bool) -> httpx.URL:
    """A webhook URL as given: absolute, https (http only when insecure is allowed), no credentials."""
    if not raw or len(raw) > MAX_URL or not raw.isascii() or not raw.isprintable() or " " in raw:
        raise WebhookUrlInvalid(detail_zh="回调地址应为不超过2048个字符的 https 网址",
                                detail_en="The URL must be an absolute https URL of at most 2048 characters",
                                params={"reason": "malformed"})
    try:
        url = httpx.URL(raw)
        port = url.port
    except (httpx.InvalidURL, ValueError):
        raise WebhookUrlInvalid(params={"reason": "malformed"}) from None
    if url.scheme not in ("https", "http") or not url.host:
        raise WebhookUrlInvalid(detail_zh="回调地址应为 https 网址", detail_en="The URL must be an absolute https URL",
                                params={"reason": "malformed"})
    if url.userinfo or url.fragment:
        raise WebhookUrlInvalid(detail_zh="回调地址不能包含用户名、密码或片段（#）",
                                detail_en="The URL may not carry credentials or a fragment",
                                params={"reason": "credentials_or_fragment"})
    if url.scheme != "https" and not allow_insecure:
        raise WebhookUrlForbidden(detail_zh="只接受 https 回调地址", detail_en="Only https URLs are accepted",
                                  params={"reason": "not_https"})
    del port
    return url


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


@dataclass
class Destination:
    """Where an attempt goes: the URL as set, and the checked addresses to connect to (empty: as the URL says)."""

    url: httpx.URL
    addresses: list[str] = field(default_factory=list)

    def request_target(self) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
        """The URL to connect to, extra headers and request extensions, pinned to the first checked address."""
        if not self.addresses:
            return self.url, {}, {}
        ip = self.addresses[0]
        pinned = self.url.copy_with(host=ip)
        headers = {"Host": self.url.netloc.decode("ascii")}
        extensions: dict[str, Any] = {"sni_hostname": self.url.host} if self.url.scheme == "https" else {}
        return pinned, headers, extensions


async def check_destination(raw: str, *, allow_insecure: bool, resolver: Resolver) -> Destination:
    """Parse the URL, resolve its host and check every address (422 webhook_url_invalid / _forbidden)."""
    url = parse_url(raw, allow_insecure=allow_insecure)
    if allow_insecure:
        return Destination(url=url)
    host = url.host
    literal = _literal(host)
    if literal is not None:
        found = [str(literal)]
    else:
        try:
            found = await resolver(host, url.port or 443)
        except (OSError, UnicodeError):
            found = []
        if not found:
            raise WebhookUrlInvalid(detail_zh="回调地址的主机名无法解析", detail_en="The URL's host does not resolve",
                                    params={"reason": "unresolvable", "host": host})
    for text in found:
        ip = _literal(text)
        why = "unparsable" if ip is None else forbidden_class(ip)
        if why is not None:
            raise WebhookUrlForbidden(params={"reason": why, "address": text})
    return Destination(url=url, addresses=found)
