"""`polybot` command line. Thin: parses options, imports the command's module lazily, forwards."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from polybot.errors import PolybotError, did_you_mean


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Examples keep their lines; every option with a meaningful default shows it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """argparse with did-you-mean for commands and options, and errors in the subcommand's usage."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {self.suggest(message)}\n")

    def options(self) -> list[str]:
        return [o for action in self._actions for o in action.option_strings if o.startswith("--")]

    def suggest(self, message: str) -> str:
        choice = re.search(r"invalid choice: '?([^' ]*)'? \(choose from (.*)\)", message)
        if choice:
            word, choices = choice.group(1), re.findall(r"'?([\w.-]+)'?", choice.group(2))
            return message + did_you_mean(word, choices)
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:
            hints = [did_you_mean(arg.split("=")[0], self.options()) for arg in unknown.group(1).split()
                     if arg.startswith("-")]
            return message + "".join(h for h in hints if h) + f"; `{self.prog} --help` lists the options"
        return message


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number (1-65535) but received {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 1 and 65535, got {value}")
    return value


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number but received {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number but received {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _parser() -> Parser:
    parser = Parser(prog="polybot", description="A folder of plain files -> Poe server bots.",
                    formatter_class=_Formatter,
                    epilog="example:\n  polybot init mybots && cd mybots && polybot dev\n\n"
                           "Every command but init works on the nearest folder, from here upwards, that holds\n"
                           "bots/ or providers.toml. `polybot COMMAND --help` shows a command's options.")
    parser.add_argument("--version", action="version", version=f"polybot {_version()}")
    parser.add_argument("--project", type=Path, default=None, metavar="DIR",
                        help="the project folder (default: the nearest one from here upwards)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def command(group: Any, name: str, help: str, module: str, example: str) -> Parser:
        p: Parser = group.add_parser(name, help=help, description=help, formatter_class=_Formatter,
                                     epilog="example:\n  " + example.replace("\n", "\n  "))
        p.add_argument("--project", type=Path, default=argparse.SUPPRESS, metavar="DIR",
                       help="the project folder (default: the nearest one from here upwards)")
        p.set_defaults(command_module=module, command_parser=p)
        return p

    p = command(sub, "init", "scaffold a new project", "init",
                "polybot init mybots && cd mybots && polybot dev")
    p.add_argument("dir", nargs="?", type=Path, help="folder to create (default: the current folder)")

    p = command(sub, "new", "create bots/NAME/ with bot.toml and system.md.j2", "new",
                'polybot new Haiku --provider openai --system-message "You write haiku."')
    p.add_argument("name", help="the bot's name on Poe: 4-20 letters, digits, '-', '_' or '.'")
    p.add_argument("--provider", default="echo", help="a built-in preset or a [name] of providers.toml")
    p.add_argument("--model", help="(default: the provider's default_model)")
    p.add_argument("--description", default="", help="shown on Poe and in `bot info`")
    p.add_argument("--system-message", default="You are a helpful assistant.",
                   help="the system prompt, written literally into system.md.j2")
    p.add_argument("--temperature", type=float, help="0..2 (default: the provider's)")
    p.add_argument("--max-tokens", type=int, help="a limit on the reply's length (default: the provider's)")
    p.add_argument("--force", action="store_true", help="replace an existing bot folder's files")

    providers = sub.add_parser("providers", help="manage providers.toml", description="manage providers.toml")
    group = providers.add_subparsers(dest="providers_command", required=True, metavar="ACTION",
                                     parser_class=Parser)
    p = command(group, "add", "add or replace a provider in providers.toml, keeping its comments",
                "providers_add",
                "polybot providers add local --kind openai --api-base http://127.0.0.1:8000/v1 \\\n"
                "    --api-key-env LOCAL_KEY --default-model llama")
    p.add_argument("name", help="the provider's name, used as `provider = NAME` in bot.toml")
    p.add_argument("--kind", required=True, help="adapter: openai, anthropic, gemini, poe, echo, or a plugin's")
    p.add_argument("--api-base", required=True, metavar="URL", help="the endpoint's base URL")
    p.add_argument("--api-key-env", required=True, metavar="ENV",
                   help="the variable holding the API key (never the key itself)")
    p.add_argument("--default-model", required=True, metavar="MODEL", help="used when bot.toml names none")
    p.add_argument("--models", nargs="*", metavar="MODEL", help="allow only these models")
    p.add_argument("--api-version", help="for endpoints that need one (Azure)")
    p.add_argument("--header", action="append", default=[], metavar='"K: V"', help="an extra HTTP header")
    p.add_argument("--force", action="store_true", help="replace an existing provider of that name")

    p = command(sub, "list", "what the project defines, with key status", "list",
                "polybot list providers")
    p.add_argument("what", nargs="?", choices=["bots", "providers"], default="bots",
                   help="bots or providers (default: bots)")

    p = command(sub, "keys", "every variable the project needs, and whether each is set (never its value)",
                "keys", "polybot keys\npolybot keys set OPENAI_API_KEY    # prompts, no echo")
    p.add_argument("action", nargs="?", choices=["list", "set"], default="list",
                   help="list them, or set one in .env (default: list)")
    p.add_argument("name", nargs="?", help="with set: the variable, e.g. OPENAI_API_KEY")

    p = command(sub, "build", "validate every bot and write the build", "build",
                "polybot build --check    # in CI: fails when build/ is stale")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="output folder (default: build)")
    p.add_argument("--check", action="store_true", help="fail if the build is stale (for CI)")

    p = command(sub, "dev", "serve from source with live reload and a playground", "dev",
                "polybot dev --port 8081")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=port, default=8080, help="port to listen on")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests for this Host name (a tunnel's, say); its callers need a bot's "
                        "access key (default: loopback names only)")

    p = command(sub, "serve", "serve build/manifest.json in production", "serve",
                "polybot serve --port 8080 --workers 4")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on")
    p.add_argument("--port", type=port, default=8080, help="port to listen on")
    p.add_argument("--workers", type=positive, default=1, help="worker processes")
    p.add_argument("--allow-without-key", action="store_true",
                   help="serve bots whose Poe access key is unset (they answer anyone)")

    p = command(sub, "chat", "talk to a bot in the terminal", "chat",
                'polybot chat Echo\npolybot chat Echo -m "hello"\necho "hello" | polybot chat Echo -m -')
    p.add_argument("name", help="the bot's name")
    p.add_argument("-m", "--message", help="send one message, print the reply, exit ('-' reads stdin)")

    p = command(sub, "sync", "push each bot's settings to Poe", "sync",
                "polybot sync Haiku")
    p.add_argument("names", nargs="*", metavar="NAME", help="the bots to sync (default: all)")
    p.add_argument("--base-url", default=None, metavar="URL",
                   help="Poe API base URL (default: POLYBOT_POE_BASE_URL, else https://api.poe.com/bot/)")
    p.add_argument("--api-bots", action="store_true",
                   help='create or update the bots marked [poe] kind = "api" as Poe API bots (POE_API_KEY)')
    p.add_argument("--url", default=None, help="with --api-bots: the public URL of `polybot serve` Poe calls")
    p.add_argument("--dry-run", action="store_true", help="with --api-bots: print what would change, send nothing")
    p.add_argument("--send-key", action="store_true", help="with --api-bots: send the endpoint key even if "
                   "nothing else changed (after rotating it)")

    p = command(sub, "test", "run each bot's tests.toml, offline from recordings", "test",
                "polybot test\npolybot test Haiku --record\npolybot test --junit report.xml")
    p.add_argument("names", nargs="*", metavar="NAME", help="the bots to test (default: every bot with tests)")
    p.add_argument("--record", action="store_true",
                   help="call the real providers (keys from the environment or .env) and write recordings")
    p.add_argument("--junit", type=Path, default=None, metavar="PATH", help="also write a JUnit XML report")

    p = command(sub, "logs", "the replies the reply store kept, newest last; `logs stats`: numbers per bot",
                "logs", "polybot logs -n 5 --bot Haiku\npolybot logs --outcome error --since 1h\n"
                "polybot logs stats --since 7d")
    p.add_argument("action", nargs="?", choices=["list", "stats"], default="list",
                   help="list replies, or stats per bot (default: list)")
    p.add_argument("-n", type=count, default=20, metavar="N", help="the newest N replies (0: all)")
    p.add_argument("--bot", metavar="NAME", help="only this bot's replies")
    p.add_argument("--outcome", metavar="O", help="only replies that ended so: ok, truncated, refused, tool_call, "
                   "error, limited")
    p.add_argument("--since", metavar="WHEN", help="only replies since then: 30m, 1h, 7d ago or a UTC date")
    p.add_argument("--conversation", metavar="ID", help="only this conversation's replies")
    p.add_argument("--json", action="store_true", help="print JSON instead")

    deploy = sub.add_parser("deploy", help="deploy the build", description="deploy the build")
    group = deploy.add_subparsers(dest="deploy_target", required=True, metavar="TARGET", parser_class=Parser)
    p = command(group, "modal", "generate the Modal app for the build and deploy it",
                "deploy_modal", "polybot deploy modal --name my-bots")
    p.add_argument("--name", default=None, help="Modal app name (default: the project folder's name)")
    return parser


def _version() -> str:
    from polybot.version import __version__

    return __version__


def _run(module_name: str, args: argparse.Namespace) -> int | None:
    """Import `polybot.commands.<module_name>` (only now: `--help` stays fast), build its `Options`
    from the parsed arguments, and run it."""
    import dataclasses
    import importlib

    module = importlib.import_module(f"polybot.commands.{module_name}")
    fields = dataclasses.fields(module.Options)
    options = module.Options(**{f.name: getattr(args, f.name) for f in fields if hasattr(args, f.name)})
    code: int | None = module.run(options)
    return code


def _report_project_problems(root: Path, exc: PolybotError) -> None:
    """Before a command's own failure, the project's problems it did not already name (located)."""
    from polybot.check import print_problems, project_problems

    try:
        problems = project_problems(root)[1]
    except Exception:  # noqa: BLE001 - the command's own error still gets printed
        return
    told = {str(p) for p in exc.problems}
    print_problems(p for p in problems if str(p) not in told)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        command_parser: Parser = getattr(args, "command_parser", parser)
        command_parser.error(f"unrecognized arguments: {' '.join(extras)}")
    found = False  # the project, once known, whose problems go before a command's own
    try:
        if args.command_module == "init":
            args.project = (args.project or Path.cwd()).resolve()
        else:
            from polybot.env import load_env
            from polybot.root import project_root

            args.project = project_root(args.project)
            load_env(args.project)  # one keys story: every command reads .env; the environment wins
            found = True
        code = _run(args.command_module, args)
    except PolybotError as exc:
        if found:
            _report_project_problems(args.project, exc)
        for problem in exc.problems:
            print(f"error: {problem}" if isinstance(problem, str) else str(problem), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except Exception as exc:  # users get one line; POLYBOT_DEBUG=1 shows the traceback
        if os.environ.get("POLYBOT_DEBUG"):
            raise
        print(f"polybot: internal error: {type(exc).__name__}: {exc} (set POLYBOT_DEBUG=1 for details)",
              file=sys.stderr)
        return 2
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
