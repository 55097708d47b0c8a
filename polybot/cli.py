"""`polybot` command line. Thin: parses options, imports the command's module lazily, forwards."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from polybot.errors import PolybotError

Command = Callable[[argparse.Namespace], int | None]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polybot", description="A folder of plain files -> Poe server bots.")
    parser.add_argument("--version", action="version", version=f"polybot {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, target: str) -> argparse.ArgumentParser:  # noqa: A002
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--project", type=Path, default=Path("."), help="project folder (default: .)")
        p.set_defaults(target=target)
        return p

    p = command("init", "scaffold a new project", "polybot.scaffold:cmd_init")
    p.add_argument("dir", nargs="?", type=Path, help="folder to create (default: the project folder)")

    p = command("new", "create bots/NAME/ with bot.toml and system.md.j2", "polybot.scaffold:cmd_new")
    p.add_argument("name")
    p.add_argument("--provider", default="echo")
    p.add_argument("--model")
    p.add_argument("--description", default="")
    p.add_argument("--system-message", default="You are a helpful assistant.")
    p.add_argument("--temperature", type=float)
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--force", action="store_true", help="replace an existing bot folder's files")

    providers = sub.add_parser("providers", help="manage providers.toml").add_subparsers(
        dest="providers_command", required=True, metavar="ACTION")
    p = providers.add_parser("add", help="add or replace a provider in providers.toml, keeping comments")
    p.add_argument("--project", type=Path, default=Path("."))
    p.set_defaults(target="polybot.scaffold:cmd_providers_add")
    p.add_argument("name")
    p.add_argument("--kind", required=True, help="adapter: openai, anthropic, gemini, poe, echo")
    p.add_argument("--api-base", required=True)
    p.add_argument("--api-key-env", required=True)
    p.add_argument("--default-model", required=True)
    p.add_argument("--models", nargs="*")
    p.add_argument("--api-version")
    p.add_argument("--header", action="append", default=[], metavar='"K: V"')
    p.add_argument("--force", action="store_true", help="replace an existing provider of that name")

    p = command("list", "what the project defines, with key status", "polybot.listing:cmd_list")
    p.add_argument("what", nargs="?", choices=["bots", "providers"], default="bots")

    p = command("build", "validate every bot and write the build", "polybot.build:cmd_build")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: build)")
    p.add_argument("--check", action="store_true", help="fail if the build is stale (for CI)")

    p = command("dev", "serve from source with live reload", "polybot.dev:cmd_dev")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests for this Host name (e.g. a tunnel's); its callers need a bot's "
                        "access key (default: loopback names only)")

    p = command("serve", "serve build/manifest.json in production", "polybot.serve:cmd_serve")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--allow-without-key", action="store_true")

    p = command("chat", "talk to a bot in the terminal", "polybot.chat:cmd_chat")
    p.add_argument("name")
    p.add_argument("-m", "--message", help="send one message, print the reply, exit")

    p = command("sync", "push each bot's settings to Poe", "polybot.sync:cmd_sync")
    p.add_argument("names", nargs="*")
    p.add_argument("--base-url", default=None, help="Poe API base URL (for a local test server)")
    p.add_argument("--api-bots", action="store_true",
                   help='create or update the bots marked [poe] kind = "api" as Poe API bots (POE_API_KEY)')
    p.add_argument("--url", default=None, help="with --api-bots: the public URL of `polybot serve` Poe calls")
    p.add_argument("--dry-run", action="store_true", help="with --api-bots: print what would change, send nothing")
    p.add_argument("--send-key", action="store_true", help="with --api-bots: send the endpoint key even if "
                   "nothing else changed (after rotating it)")

    deploy = sub.add_parser("deploy", help="deploy the build").add_subparsers(
        dest="deploy_target", required=True, metavar="TARGET")
    p = deploy.add_parser("modal", help="generate the Modal app for the build and deploy it")
    p.add_argument("--project", type=Path, default=Path("."))
    p.add_argument("--name", default=None, help="Modal app name (default: the project folder's name)")
    p.set_defaults(target="polybot.deploy.modal:cmd_deploy")
    return parser


def _version() -> str:
    from polybot import __version__

    return __version__


def _load(target: str) -> Command:
    import importlib

    module, _, attr = target.partition(":")
    fn: Any = getattr(importlib.import_module(module), attr)
    return fn  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.project = args.project.resolve()
    try:
        code = _load(args.target)(args)
    except PolybotError as exc:
        for problem in exc.problems:
            print(f"error: {problem}" if isinstance(problem, str) else str(problem), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - users get one line; POLYBOT_DEBUG=1 shows the traceback
        if os.environ.get("POLYBOT_DEBUG"):
            raise
        print(f"polybot: internal error: {type(exc).__name__}: {exc} (set POLYBOT_DEBUG=1 for details)",
              file=sys.stderr)
        return 2
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
