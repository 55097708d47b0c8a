"""`polybot chat NAME`: talk to a bot in the terminal through the same path a Poe query takes."""

from __future__ import annotations

import sys

import fastapi_poe as fp

from polybot.conversation import query_request
from polybot.errors import PolybotError, did_you_mean, sorted_problems
from polybot.livebuild import LiveBuild
from polybot.reliability import ToolActivity
from polybot.runtime import Runtime


async def reply(runtime: Runtime, history: list[fp.ProtocolMessage]) -> tuple[str, bool]:
    """Stream one reply to stdout; returns (text, ok)."""
    request = query_request(history, user_id="polybot-chat", conversation_id="polybot-chat")
    text = ""
    async for event in runtime.respond(request):
        if isinstance(event, fp.ErrorResponse):
            print(file=sys.stdout)
            print(f"error: {event.text}", file=sys.stderr)
            return text, False
        if isinstance(event, fp.MetaResponse) or event.is_suggested_reply:
            continue
        if isinstance(event, ToolActivity):
            print(tool_line(event), file=sys.stderr)  # on stderr: stdout stays the reply alone
            continue
        if event.attachment is not None:
            print(f"[file: {event.attachment.name} {event.attachment.url}]", file=sys.stderr)
            continue
        if event.is_replace_response:
            print("\n[provider failed over; reply restarted]", file=sys.stderr)
            text = ""
        text += event.text
        sys.stdout.write(event.text)
        sys.stdout.flush()
    print()
    return text, True


def tool_line(event: ToolActivity, width: int = 80) -> str:
    """One collapsed line per tool call: name, arguments and the start of its result."""
    mark = "tool" if event.ok else "tool failed"
    shown = f"[{mark}: {event.tool}({event.arguments}) -> {event.result}]".replace("\n", " ")
    return shown if len(shown) <= width else shown[: width - 4] + "...]"


def find_runtime(workspace: LiveBuild, name: str) -> Runtime:
    """The bot to talk to; otherwise the project's problems, located, then what is wrong with `name`."""
    result = workspace.refresh()
    runtime = workspace.runtimes.get(name)
    if runtime is not None:
        return runtime
    problems = sorted_problems(result.problems)
    mine = [p for p in problems if p.path.startswith(f"bots/{name}/") or p.path == f"bots/{name}"]
    if mine:
        raise PolybotError([*problems, f"{name} has the errors above; fix them, then run polybot chat {name} again"])
    if (workspace.root / "bots" / name).is_dir() and problems:
        raise PolybotError([*problems, f"{name} was not loaded because of the errors above"])
    raise PolybotError([*problems, f"no bot named {name!r}{did_you_mean(name, workspace.runtimes)}; "
                        "`polybot list` shows the bots"])
