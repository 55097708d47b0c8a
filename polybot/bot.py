"""The fastapi_poe PoeBot that serves one compiled bot's `Runtime`, swappable while serving."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import fastapi_poe as fp
from sse_starlette import ServerSentEvent

from polybot.reliability import ToolActivity, emit_report
from polybot.runtime import Runtime

log = logging.getLogger("polybot")


class PolyPoeBot(fp.PoeBot):
    """A PoeBot whose runtime can be swapped while serving (dev reload)."""

    def __init__(self, runtime: Runtime, access_key: str | None) -> None:
        # bot_name=None: make_app must never sync settings to Poe at start-up.
        super().__init__(path=f"/{runtime.spec.name}", access_key=access_key, bot_name=None,
                         should_insert_attachment_messages=False)
        self.runtime = runtime

    async def get_response_with_context(
        self, request: fp.QueryRequest, context: fp.RequestContext
    ) -> AsyncIterator[Any]:
        async for event in self.runtime.respond(request):
            if isinstance(event, ToolActivity):
                continue  # shown by the playground and `polybot chat`, not sent to Poe
            if event.data is not None and not event.text and not isinstance(event, fp.ErrorResponse):
                # A called bot's `json` event, relayed as one (fastapi_poe has no response type for it).
                yield ServerSentEvent(data=json.dumps(event.data), event="json")
            else:
                yield event

    async def get_settings(self, setting: fp.SettingsRequest) -> fp.SettingsResponse:
        return self.runtime.settings()

    async def on_feedback_with_context(self, feedback_request: fp.ReportFeedbackRequest,
                                       context: fp.RequestContext) -> None:
        emit_report("feedback", self.runtime.spec.name, feedback_request)
        await self.runtime.report("on_feedback", feedback_request)

    async def on_reaction_with_context(self, reaction_request: fp.ReportReactionRequest,
                                       context: fp.RequestContext) -> None:
        emit_report("reaction", self.runtime.spec.name, reaction_request)
        await self.runtime.report("on_reaction", reaction_request)

    async def on_error_with_context(self, error_request: fp.ReportErrorRequest, context: fp.RequestContext) -> None:
        log.warning("Poe reported an error with a reply of %s: %s", self.runtime.spec.name,
                    error_request.message[:300])
        await self.runtime.report("on_error", error_request)
