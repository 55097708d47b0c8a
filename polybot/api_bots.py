"""`polybot sync --api-bots`: publish every `[poe] kind = "api"` bot as a Poe API bot.

Poe's Bots REST API (creator.poe.com, "Bots REST API"): `GET /bots/{handle}` reads a bot,
`POST /bots` creates one, `PATCH /bots/{handle}` updates the fields sent (`api_bot_settings` is
merged). Authentication: `Authorization: Bearer $POE_API_KEY`. Poe then calls the bot's
`base_url` + `/chat/completions` with `model = model_name` and the endpoint key: polybot's own
OpenAI-compatible endpoint, where `model` is the bot's name.

Sync is idempotent: the bot is read first and only what differs is sent; `--dry-run` prints the
difference and sends nothing. The endpoint key is never returned by Poe, so it cannot be compared:
it is sent when a bot is created or changed, and with `--send-key` (after rotating the key).

Poe documents `pricing` as `{"prompt": ..., "completion": ...}` in USD per token, as decimal
strings. Its tiered (long-context) pricing is not documented in a form we could find: polybot
sends tiers as `pricing.tiers = [{"min_prompt_tokens", "prompt", "completion"}]`, defined in
`pricing()` below and nowhere else.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from polybot.config import PoePricing
from polybot.errors import PolybotError
from polybot.manifest import BotSpec
from polybot.tls import tls_context

#: The Bots REST API; POLYBOT_POE_API_URL points elsewhere (a test server).
POE_API_URL = "https://api.poe.com"
POE_API_KEY_ENV = "POE_API_KEY"


def endpoint_url(url: str) -> str:
    """The base URL Poe calls: polybot's endpoint lives under /v1."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def pricing(p: PoePricing) -> dict[str, Any]:
    """`[poe.pricing]` as the Bots REST API's `pricing` (USD per token, decimal strings)."""
    out: dict[str, Any] = {"prompt": _decimal(p.prompt), "completion": _decimal(p.completion)}
    if p.tiers:
        out["tiers"] = [{"min_prompt_tokens": t.min_prompt_tokens, "prompt": _decimal(t.prompt),
                         "completion": _decimal(t.completion)}
                        for t in sorted(p.tiers, key=lambda t: t.min_prompt_tokens)]
    return out


def desired(spec: BotSpec, url: str) -> dict[str, Any]:
    """What Poe should hold for this bot (everything but the endpoint key)."""
    from polybot.controls import parameter_controls

    assert spec.poe.pricing is not None
    settings: dict[str, Any] = {
        "model_name": spec.name,
        "base_url": endpoint_url(url),
        "api_type": "chat_completions_api",
        # Images reach the model when the bot takes attachments (as Poe sends them to a server bot).
        "input_modalities": ["text", "image"] if spec.poe.allow_attachments else ["text"],
        "output_modalities": ["text"],
        "pricing": pricing(spec.poe.pricing),
    }
    body: dict[str, Any] = {"description": spec.description, "api_bot_settings": settings}
    controls = parameter_controls(spec.controls, spec.layout)
    if controls is not None:
        # Poe sends each control's value as a body field of that name: the endpoint maps it back.
        settings["param_definitions"] = [{"param_name": str(c["parameter_name"])}
                                         for c in spec.controls if "parameter_name" in c]
        body["parameter_controls"] = controls.model_dump(mode="json", exclude_none=True)
    return body


def differences(current: Mapping[str, Any] | None, want: Mapping[str, Any], prefix: str = "") -> list[str]:
    """`path: old -> new` for every value in `want` that `current` lacks or holds otherwise."""
    lines: list[str] = []
    for key, value in want.items():
        path = f"{prefix}{key}"
        old = current.get(key) if current is not None else None
        if isinstance(value, Mapping) and (old is None or isinstance(old, Mapping)):
            lines += differences(old, value, path + ".")
        elif not _same(old, value):
            lines.append(f"{path}: {'(unset)' if old is None else _show(old)} -> {_show(value)}")
    return lines


class ApiBotSync:
    """One Bots REST API client for a run of `sync --api-bots`."""

    def __init__(self, base_url: str, poe_key: str, *, dry_run: bool = False, send_key: bool = False,
                 environ: Mapping[str, str] | None = None) -> None:
        import httpx

        self.environ = os.environ if environ is None else environ
        self.key = poe_key
        self.dry_run = dry_run
        self.send_key = send_key
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=30, verify=tls_context(),
                                 headers={"Authorization": f"Bearer {poe_key}"})

    def close(self) -> None:
        self.http.close()

    def sync(self, spec: BotSpec, url: str | None) -> str | None:
        """Create or update one bot; prints what it did (or would do); returns a problem line."""
        name = spec.name
        url = url or spec.poe.base_url
        if not url:
            return (f"{name}: no public URL for Poe to call: pass --url https://your.host or set "
                    "`base_url` in its [poe] table")
        if spec.poe.pricing is None or spec.poe.pricing.prompt is None or spec.poe.pricing.completion is None:
            return f"{name}: [poe.pricing] is missing: add `prompt` and `completion` (USD per token)"
        endpoint_key = self.environ.get(spec.openai_api_key_env, "")
        if not endpoint_key:
            return (f"{name}: {spec.openai_api_key_env} is not set: it holds the key Poe sends to your endpoint; "
                    "export it (the same value `polybot serve` checks)")
        want = desired(spec, url)
        try:
            current = self._get(name)
            if current is None:
                print(f"{name}: create" if self.dry_run else f"created {name}")
                for line in differences(None, want):
                    print(f"  {line}")
                if not self.dry_run:
                    body = {"handle": name, **want}
                    body["api_bot_settings"] = {**want["api_bot_settings"], "api_key": endpoint_key}
                    self._send("POST", "/bots", body)
                return None
            changed = differences(current, want)
            if not changed and not self.send_key:
                print(f"{name}: unchanged")
                return None
            print(f"{name}: {'would update' if self.dry_run else 'updated'}"
                  + ("" if changed else " (endpoint key)"))
            for line in changed:
                print(f"  {line}")
            if not self.dry_run:
                body = {k: v for k, v in want.items() if differences({k: current.get(k)}, {k: v})}
                body["api_bot_settings"] = {**body.get("api_bot_settings", {}), "api_key": endpoint_key}
                self._send("PATCH", f"/bots/{name}", body)
        except _ApiError as exc:
            return f"{name}: {exc}"
        finally:
            sys.stdout.flush()
        return None

    def _get(self, handle: str) -> dict[str, Any] | None:
        response = self._request("GET", f"/bots/{handle}", None)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _ApiError(self._problem("reading the bot", response))
        data = response.json()
        return data if isinstance(data, dict) else None

    def _send(self, method: str, path: str, body: dict[str, Any]) -> None:
        response = self._request(method, path, body)
        if response.status_code not in (200, 201):
            raise _ApiError(self._problem("create" if method == "POST" else "update", response))

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        import httpx

        try:
            return self.http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise _ApiError(f"the Bots REST API is unreachable ({type(exc).__name__})") from None

    def _problem(self, what: str, response: Any) -> str:
        if response.status_code == 401:
            return f"Poe rejected {POE_API_KEY_ENV} (HTTP 401): check the key, and that API Bots are enabled"
        try:
            detail = response.json().get("error") or response.json()
            if isinstance(detail, dict):
                detail = detail.get("message") or detail
        except ValueError:
            detail = response.text
        text = str(detail).replace(self.key, "***")[:200]
        return f"{what} failed (HTTP {response.status_code}): {text}"


class _ApiError(Exception):
    pass


def _decimal(value: float | str | None) -> str:
    if value is None:
        raise PolybotError(["[poe.pricing]: `prompt` and `completion` (USD per token) are required for an API bot"])
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise PolybotError([f"[poe.pricing]: expected a price in USD per token but received {value!r}"]) from None
    text = format(number, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, str) and isinstance(new, str):
        try:
            return Decimal(old) == Decimal(new)  # "0.0000010" is "0.000001"
        except InvalidOperation:
            return old == new
    return bool(old == new)


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else repr(value)
