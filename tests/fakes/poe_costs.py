"""A fake of Poe's cost API (what fastapi_poe's authorize_cost / capture_cost call)."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


class FakeCosts:
    def __init__(self, funds: int = 10**9) -> None:
        self.funds = funds  # milli-cents the user may still spend
        self.calls: list[tuple[str, str, dict[str, Any]]] = []  # (action, bot_query_id, body)
        self.app = Starlette(routes=[Route("/bot/cost/{query}/{action}", self._handle, methods=["POST"])])

    async def _handle(self, request: Request) -> Response:
        body = await request.json()
        action, query = request.path_params["action"], request.path_params["query"]
        self.calls.append((action, query, body))
        amount = sum(a["amount_usd_milli_cents"] for a in body["amounts"])
        status = "success" if action == "capture" or amount <= self.funds else "insufficient_fund"
        return Response(f'event: result\ndata: {{"status": "{status}"}}\n\n', media_type="text/event-stream")
