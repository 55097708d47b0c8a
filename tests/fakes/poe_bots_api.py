"""A fake of Poe's Bots REST API (https://api.poe.com/bots), shaped after creator.poe.com's reference.

GET /bots lists, GET /bots/{handle} reads (404 when absent), POST /bots creates (201
`{"create_bot_status": "success"}`), PATCH /bots/{handle} updates the fields sent, merging
`api_bot_settings`. The endpoint key (`api_bot_settings.api_key`) is accepted on writes and never
returned, as Poe documents. Every request is recorded.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class Call:
    method: str
    path: str
    json: Any


class FakeBotsApi:
    def __init__(self, key: str) -> None:
        self.key = key
        self.bots: dict[str, dict[str, Any]] = {}
        self.endpoint_keys: dict[str, str] = {}  # handle -> the api_key last sent
        self.calls: list[Call] = []
        self.base_url = ""
        self.app = Starlette(routes=[
            Route("/bots", self._collection, methods=["GET", "POST"]),
            Route("/bots/{handle}", self._item, methods=["GET", "PATCH"]),
        ])

    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.method != "GET"]

    async def _collection(self, request: Request) -> JSONResponse:
        body = await request.json() if request.method == "POST" else None
        self.calls.append(Call(request.method, request.url.path, body))
        if (denied := self._denied(request)) is not None:
            return denied
        if request.method == "GET":
            return JSONResponse({"bots": [self._public(b) for b in self.bots.values()]})
        handle = body.get("handle")
        if not handle or handle in self.bots:
            return _error(400 if not handle else 409, "a bot with this handle already exists" if handle
                          else "handle is required")
        self.bots[handle] = {"is_private": True, **copy.deepcopy(body)}
        self._take_key(handle, body)
        return JSONResponse({"create_bot_status": "success"}, status_code=201)

    async def _item(self, request: Request) -> JSONResponse:
        handle = request.path_params["handle"]
        body = await request.json() if request.method == "PATCH" else None
        self.calls.append(Call(request.method, request.url.path, body))
        if (denied := self._denied(request)) is not None:
            return denied
        bot = self.bots.get(handle)
        if bot is None:
            return _error(404, f"bot {handle} not found")
        if request.method == "GET":
            return JSONResponse(self._public(bot))
        for key, value in body.items():
            if key == "api_bot_settings":
                bot.setdefault(key, {}).update(copy.deepcopy(value))
            else:
                bot[key] = copy.deepcopy(value)
        self._take_key(handle, body)
        return JSONResponse(self._public(bot))

    def _denied(self, request: Request) -> JSONResponse | None:
        if request.headers.get("authorization") != f"Bearer {self.key}":
            return _error(401, "invalid API key")
        return None

    def _take_key(self, handle: str, body: dict[str, Any]) -> None:
        key = (body.get("api_bot_settings") or {}).get("api_key")
        if key is not None:
            self.endpoint_keys[handle] = key

    @staticmethod
    def _public(bot: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(bot)
        out.get("api_bot_settings", {}).pop("api_key", None)  # write-only
        return out


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=status)
