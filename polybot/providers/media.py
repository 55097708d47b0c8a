"""Downloading an attachment for a provider that cannot fetch URLs itself (Gemini).

Poe hands bots attachment URLs on its CDN. Fetching a URL a user supplied is a server-side request
on their behalf, so it is bounded: https only, never a private, loopback or link-local address
(checked on the resolved address, so a DNS name cannot point inside), a size limit and a timeout.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from polybot.tls import tls_context

#: Largest attachment downloaded (Gemini's inline limit is 20 MB per request).
MAX_BYTES = 15 * 1024 * 1024
TIMEOUT = 10.0
#: Tests may add loopback hosts here (their fake CDN); nothing else should.
ALLOWED_PRIVATE_HOSTS: set[str] = set()


class MediaError(Exception):
    """Why an attachment was not downloaded; safe to show (no URL query strings, no keys)."""


async def fetch(url: str) -> bytes:
    """The bytes at `url`, within the limits above."""
    import httpx

    parts = urlsplit(url)
    host = parts.hostname or ""
    local = host in ALLOWED_PRIVATE_HOSTS
    if parts.scheme != "https" and not local:
        raise MediaError("only https attachments are downloaded")
    if not local:
        await _check_public(host, parts.port or 443)
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False, verify=tls_context()) as client:
            async with client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise MediaError(f"download failed (HTTP {response.status_code})")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_BYTES:
                    raise MediaError(f"larger than {MAX_BYTES // (1024 * 1024)} MB")
                data = bytearray()
                async for block in response.aiter_bytes():
                    data += block
                    if len(data) > MAX_BYTES:
                        raise MediaError(f"larger than {MAX_BYTES // (1024 * 1024)} MB")
                return bytes(data)
    except httpx.HTTPError as exc:
        raise MediaError(f"download failed ({type(exc).__name__})") from None


async def _check_public(host: str, port: int) -> None:
    if not host:
        raise MediaError("the attachment URL has no host")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise MediaError(f"cannot resolve {host}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise MediaError(f"{host} resolves to a private address")
