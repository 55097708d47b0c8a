"""Who may talk to a polybot server, and cleaning what they send.

`polybot dev` spends the developer's provider keys, so it answers only requests that name it by a
loopback Host (or one the developer allowed), refuses cross-site browser writes, and serves bots
without an access key to loopback clients only. `polybot serve` always checks access keys.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from starlette.types import Scope

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
#: Headers a proxy adds: a request carrying one did not come from this machine's own browser.
FORWARDED = (b"x-forwarded-for", b"forwarded", b"x-real-ip")


def keys_match(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented key with the expected one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def bearer(scope: Scope) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    value = header(scope, b"authorization")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


def is_loopback_address(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
        return True
    except ValueError:
        return False


def _split_host(value: str) -> tuple[str, int | None]:
    """`name:port` -> (name, port); IPv6 literals keep their brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value.partition("]")
        port = rest.removeprefix(":")
        return name + "]", int(port) if port.isdigit() else None
    name, sep, port = value.rpartition(":")
    if not sep:
        return value, None
    return name, int(port) if port.isdigit() else -1


@dataclass(frozen=True)
class DevAccess:
    """The rules `polybot dev` applies to every request.

    `hosts` are the Host header values it answers to: the loopback names with its port, plus
    `--allow-host` names. Bound off loopback it also answers IP-literal hosts on its port (a
    DNS-rebinding attack needs a name, never an IP); such callers are remote, and remote callers
    need a bot's access key. The playground is for loopback callers only.
    """

    port: int
    bound_off_loopback: bool = False
    extra_hosts: frozenset[str] = frozenset()
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    @classmethod
    def for_binding(cls, host: str, port: int, allow_hosts: Iterable[str] = ()) -> DevAccess:
        extra = set()
        for raw in allow_hosts:
            name, given = _split_host(raw)
            extra.add(f"{name}:{given if given and given > 0 else port}")
        return cls(port, not is_loopback_address(host), frozenset(extra))

    def _host_ok(self, value: str, *, local: bool) -> bool:
        name, port = _split_host(value)
        if port is None:
            port = 80
        if port != self.port:
            return False
        if name in LOOPBACK_NAMES:
            return True
        if local:
            return False
        return f"{name}:{port}" in self.extra_hosts or (self.bound_off_loopback and _ip_literal(name))

    def host_allowed(self, scope: Scope) -> bool:
        """Host names this server: a loopback name, an allowed name, or (bound off loopback) an IP."""
        return self._host_ok(header(scope, b"host"), local=False)

    def is_local(self, scope: Scope) -> bool:
        """A request from this machine, naming the server by a loopback name, not through a proxy."""
        client = scope.get("client")
        if not client or not is_loopback_address(str(client[0])):
            return False
        if any(key.lower() in FORWARDED for key, _ in scope.get("headers") or []):
            return False
        return self._host_ok(header(scope, b"host"), local=True)

    def cross_site(self, scope: Scope) -> bool:
        """A browser request sent by a page of another origin (a form or fetch from any site)."""
        site = header(scope, b"sec-fetch-site").lower()
        if site and site not in ("same-origin", "none"):
            return True
        origin = header(scope, b"origin").lower()
        if not origin:
            return False
        scheme, _, rest = origin.partition("://")
        return scheme not in ("http", "https") or not self._host_ok(rest.rstrip("/"), local=False) \
            or rest.rstrip("/") != header(scope, b"host").lower()

    def allowed_hosts_text(self) -> str:
        names = [f"{n}:{self.port}" for n in LOOPBACK_NAMES] + sorted(self.extra_hosts)
        return ", ".join(names)


def binding_warning(access: DevAccess, keyless: Iterable[str], out: IO[str] | None = None) -> None:
    """What `polybot dev` prints when bound off loopback: who can reach it, and with what."""
    if not access.bound_off_loopback:
        return
    out = out or sys.stderr
    print("polybot dev: WARNING: bound off loopback; other machines can reach this server. Bots answer them "
          "only with their Poe access key (Authorization: Bearer ...); the playground stays on 127.0.0.1.",
          file=out)
    missing = sorted(keyless)
    if missing:
        print(f"polybot dev: no access key for {', '.join(missing)}: "
              "they answer on 127.0.0.1 only; set their POE_ACCESS_KEY_* variables (e.g. in .env)", file=out)


# --- text a provider SDK can encode -----------------------------------------------------------------

T = TypeVar("T")


def clean_text(text: str) -> str:
    """`text` with lone surrogates (unencodable as UTF-8) replaced by U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def clean_value(value: Any) -> Any:
    """`value` with every string inside it cleaned (dicts, lists, tuples)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_value(k): clean_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(clean_value(v) for v in value)
    return value


def clean_request(request: T) -> T:
    """Clean, in place, the text of a Poe request's messages, so the provider SDK can encode it.

    JSON may carry lone surrogates ("\\ud800"): an SDK then fails while encoding the request, which
    looks like a provider failure and gets retried. Returns `request`.
    """
    for message in getattr(request, "query", None) or []:
        message.content = clean_text(message.content)
        if message.parameters:
            message.parameters = clean_value(message.parameters)
        for attachment in message.attachments:
            attachment.name = clean_text(attachment.name)
            if attachment.parsed_content is not None:
                attachment.parsed_content = clean_text(attachment.parsed_content)
    return request


# --- secrets in provider headers ---------------------------------------------------------------------

_SECRET_NAME = re.compile(r"auth|\bkey\b|api[-_]?key|token|secret|passw|cookie|session|credential|signature", re.I)
_SECRET_VALUE = re.compile(r"^(bearer|basic|token|digest)\s+\S|^(sk|pk|rk|ghp|gho|glpat|xox[abpr]|AKIA|AIza)[-_A-Za-z0-9]{8,}",
                           re.I)
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_literal_headers(headers: dict[str, str]) -> dict[str, str]:
    """Refuse a literal header value that looks like a secret: providers.toml and the manifest are
    committed files. The error names the `headers_env` line that fixes it."""
    for name, value in headers.items():
        if _SECRET_NAME.search(name) or _SECRET_VALUE.search(value.strip()):
            variable = re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_") or "HEADER_VALUE"
            raise ValueError(f"{name!r} looks like a secret, and headers are copied into build/manifest.json; "
                             f"read it from the environment instead: headers_env = {{ \"{name}\" = \"{variable}\" }} "
                             f"and set {variable} (in .env, or as a secret where you deploy)")
    return headers


def check_header_variables(headers_env: dict[str, str]) -> dict[str, str]:
    for name, variable in headers_env.items():
        if not _VARIABLE.match(variable):
            raise ValueError(f"{name!r}: expected an environment variable name but received {variable!r}")
    return headers_env
