"""`polybot chat NAME [-m MESSAGE]`: talk to a bot in the terminal."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

import fastapi_poe as fp

from polybot.chat import find_runtime, reply
from polybot.env import load_env
from polybot.livebuild import LiveBuild


@dataclass(frozen=True, slots=True)
class Options:
    project: Path
    name: str
    message: str | None = None


def run(options: Options) -> int:
    root: Path = options.project
    load_env(root)
    workspace = LiveBuild(root)
    runtime = find_runtime(workspace, options.name)
    # One event loop for the whole session (the SDK clients live on it); input() runs on the main
    # thread between replies, so Ctrl-C at the prompt ends the chat at once.
    with asyncio.Runner() as runner:
        try:
            history: list[fp.ProtocolMessage] = []
            if options.message is not None:
                message = sys.stdin.read() if options.message == "-" else options.message
                history.append(fp.ProtocolMessage(role="user", content=message))
                return 0 if runner.run(reply(runtime, history))[1] else 1
            if sys.stdin.isatty():
                import readline  # noqa: F401 - line editing and history at the prompt
            print(f"Chatting with {options.name} (Ctrl-D or Ctrl-C to quit).", file=sys.stderr)
            while True:
                try:
                    line = input("you> ")
                except EOFError:
                    print(file=sys.stderr)
                    return 0
                history.append(fp.ProtocolMessage(role="user", content=line))
                text, ok = runner.run(reply(runtime, history))
                if ok:
                    history.append(fp.ProtocolMessage(role="bot", content=text))
                else:
                    history.pop()
        finally:
            runner.run(workspace.pool.aclose())
