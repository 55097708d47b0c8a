"""`polybot logs [stats]`: the replies the reply store kept, or per-bot numbers over them."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from polybot.config import load_settings
from polybot.logview import Filters, as_json, format_replies, format_stats, load, open_store, parse_since, stats


@dataclass(frozen=True, slots=True)
class Options:
    project: Path
    action: Literal["list", "stats"] = "list"
    n: int = 20  # the newest N replies (0: all); stats use every reply that matches
    bot: str | None = None
    outcome: str | None = None
    since: str | None = None
    json: bool = False
    conversation: str | None = None


def run(options: Options) -> int:
    filters = Filters(bot=options.bot, outcome=options.outcome, conversation=options.conversation,
                      since=parse_since(options.since) if options.since is not None else None)
    conn = open_store(options.project, load_settings(options.project)[0].logs)
    try:
        if options.action == "stats":
            result = stats(load(conn, filters, None))
            if options.json:
                import json

                print(json.dumps(result, indent=2))
            elif result:
                print(format_stats(result))
            else:
                print("no replies match", file=sys.stderr)
            return 0
        rows = load(conn, filters, options.n or None)
    finally:
        conn.close()
    if options.json:
        print(as_json(rows))
    elif rows:
        print(format_replies(rows))
    else:
        print("no replies match" if any((options.bot, options.outcome, options.since, options.conversation))
              else "no replies kept yet", file=sys.stderr)
    return 0
