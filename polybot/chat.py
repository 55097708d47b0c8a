"""`polybot chat NAME`: talk to a bot in the terminal through the same path a Poe query takes."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

import fastapi_poe as fp

from polybot.bot import Runtime
from polybot.conversation import PROTOCOL_VERSION
from polybot.dev import Workspace, load_dotenv
from polybot.errors import PolybotError, did_you_mean


async def _reply(runtime: Runtime, history: list[fp.ProtocolMessage]) -> tuple[str, bool]:
    """Stream one reply to stdout; returns (text, ok)."""
    request = fp.QueryRequest(version=PROTOCOL_VERSION, type="query", query=history, user_id="polybot-chat",
                              conversation_id="polybot-chat", message_id=uuid.uuid4().hex)
    text = ""
    async for event in runtime.respond(request):
        if isinstance(event, fp.ErrorResponse):
            print(file=sys.stdout)
            print(f"error: {event.text}", file=sys.stderr)
            return text, False
        if isinstance(event, fp.MetaResponse) or event.is_suggested_reply:
            continue
        if event.is_replace_response:
            print("\n[provider failed over; reply restarted]", file=sys.stderr)
            text = ""
        text += event.text
        sys.stdout.write(event.text)
        sys.stdout.flush()
    print()
    return text, True


def cmd_chat(args: Any) -> int:
    root: Path = args.project
    load_dotenv(root)
    workspace = Workspace(root)
    result = workspace.refresh()
    runtime = workspace.runtimes.get(args.name)
    if runtime is None:
        mine = [p for p in result.problems if p.path.startswith(f"bots/{args.name}/")]
        if mine:
            raise PolybotError(mine)
        raise PolybotError([f"no bot named {args.name!r}{did_you_mean(args.name, workspace.runtimes)}; "
                            "`polybot list` shows the bots"])

    async def run() -> int:
        try:
            history: list[fp.ProtocolMessage] = []
            if args.message is not None:
                history.append(fp.ProtocolMessage(role="user", content=args.message))
                return 0 if (await _reply(runtime, history))[1] else 1
            print(f"Chatting with {args.name} (Ctrl-D to quit).", file=sys.stderr)
            while True:
                try:
                    line = await asyncio.to_thread(input, "you> ")
                except EOFError:
                    print(file=sys.stderr)
                    return 0
                history.append(fp.ProtocolMessage(role="user", content=line))
                text, ok = await _reply(runtime, history)
                if ok:
                    history.append(fp.ProtocolMessage(role="bot", content=text))
                else:
                    history.pop()
        finally:
            await workspace.pool.aclose()

    return asyncio.run(run())
