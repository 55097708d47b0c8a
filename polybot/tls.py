"""One TLS context for every HTTP client polybot makes.

Each new httpx client loads the CA bundle into a context of its own: ~20 ms of CPU (40 ms on a busy
machine), paid by every provider client, every Poe bot call and every attachment download.
"""

from __future__ import annotations

import ssl
from functools import cache


@cache
def tls_context() -> ssl.SSLContext:
    """The verifying context httpx makes by default (certifi's bundle, or SSL_CERT_FILE /
    SSL_CERT_DIR), made once; an SSLContext is safe to share between clients and threads."""
    import httpx

    return httpx.create_ssl_context()
