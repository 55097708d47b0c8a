"""What `polybot logs` and `polybot logs stats` print: the reply store read for a terminal (docs/logs.md)."""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from polybot.config import LogsSettings
from polybot.errors import PolybotError
from polybot.listing import table
from polybot.replylog import readable
from polybot.store import read, replies

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
#: Outcomes that count as answered in `stats` (a limit's refusal is not the bot's error).
_NOT_ERRORS = frozenset({"ok", "truncated", "limited"})


@dataclass(frozen=True, slots=True)
class Filters:
    bot: str | None = None
    outcome: str | None = None
    since: float | None = None  # Unix seconds
    conversation: str | None = None


def parse_since(text: str, now: float | None = None) -> float:
    """`30m`, `1h`, `7d`, `2w` ago, or a UTC date / time (`2025-01-31`, `2025-01-31T12:00`), as Unix seconds."""
    now = time.time() if now is None else now
    value = text.strip()
    match = _DURATION.fullmatch(value)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise PolybotError([f"--since: expected a time ago like 30m, 1h, 7d or a UTC date like 2025-01-31, "
                            f"but received {text!r}"]) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def open_store(root: Path, settings: LogsSettings) -> sqlite3.Connection:
    """The project's reply store for reading; a missing or unreadable one is one line saying what to do."""
    path = root / settings.path
    if not path.is_file():
        if not settings.enabled:
            raise PolybotError(["no reply store: it is turned off ([logs] enabled = false in polybot.toml); "
                                "set enabled = true and replies are kept from the next `polybot dev` or `serve`"])
        raise PolybotError([f"no reply store at {settings.path} yet: `polybot dev` and `polybot serve` keep one "
                            "row per reply there (see [logs] in polybot.toml, docs/logs.md)"])
    try:
        conn = read(path)
        conn.execute("SELECT 1 FROM replies LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise PolybotError([f"{settings.path}: cannot read the reply store ({exc}); move it aside and a new one "
                            "starts with the next reply"]) from None
    return conn


def load(conn: sqlite3.Connection, filters: Filters, limit: int | None) -> list[dict[str, Any]]:
    return replies(conn, limit=limit, bot=filters.bot, outcome=filters.outcome, since=filters.since,
                   conversation=filters.conversation)


# --- `polybot logs` ----------------------------------------------------------------------------

def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_replies(rows: Sequence[Mapping[str, Any]]) -> str:
    """Each reply as its log line (time first), then what else the store knows of it, indented."""
    return "\n\n".join(_reply(row) for row in rows)


def _reply(row: Mapping[str, Any]) -> str:
    line = f"{when(row['ts'])}  {readable(row)}"
    if row.get("cached"):
        line += " (cached)"
    if row.get("cost_usd") is not None:
        line += f"  {_usd(row['cost_usd'])}"
    feedback = [_report(f) for f in row.get("feedback") or ()]
    if feedback:
        line += "  " + ", ".join(feedback)
    lines = [line]
    ids = [f"{label} {row[key]}" for key, label in (("conversation_id", "conversation"),
                                                      ("message_id", "message"), ("user_id", "user")) if row.get(key)]
    if ids:
        lines.append("  " + "  ".join(ids))
    failed = [f"{c.get('provider')}/{c.get('model')}: {c.get('error') or c.get('outcome')}"
              for c in row.get("calls") or () if c.get("outcome") in ("error", "cancelled")]
    if failed:
        lines.append("  failed: " + "; ".join(failed))
    tools = [f"{t.get('name')} ({'theirs' if t.get('remote') else 'ok' if t.get('ok') else 'failed'})"
             for t in row.get("tool_calls") or ()]
    if tools:
        lines.append("  tools: " + ", ".join(tools))
    for key, label in (("prompt", "user"), ("response", "bot")):
        if row.get(key) is not None:
            text = str(row[key]).rstrip("\n").replace("\n", "\n        ")
            lines.append(f"  {label + ':':<5} {text}")
    return "\n".join(lines)


def _report(report: Mapping[str, Any]) -> str:
    if report.get("kind") == "feedback":
        return {"like": "liked", "dislike": "disliked"}.get(str(report.get("value")), str(report.get("value")))
    return f"reaction {report.get('value')}"


def _usd(value: float) -> str:
    if value == 0:
        return "$0"
    return f"${value:.2f}" if value >= 0.01 else f"${value:.6f}".rstrip("0")


def as_json(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as a JSON array (each with `time`, its ISO UTC form)."""
    out = [{"time": datetime.fromtimestamp(r["ts"], UTC).isoformat(), **r} for r in rows]
    return json.dumps(out, indent=2)


# --- `polybot logs stats` ----------------------------------------------------------------------

def stats(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per bot (and `all`, across them): replies, p50/p95 first token and total, error and fallback
    rates, tokens, cost, likes and dislikes."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row["bot"]), []).append(row)
    result = {bot: _stats(group) for bot, group in sorted(groups.items())}
    if len(groups) > 1:
        result["all"] = _stats(rows)
    return result


def _stats(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    first = sorted(r["ttft_ms"] for r in rows if r.get("ttft_ms") is not None)
    total = sorted(r["duration_ms"] for r in rows if r.get("duration_ms") is not None)
    costs = [r["cost_usd"] for r in rows if r.get("cost_usd") is not None]
    feedback = [f.get("value") for r in rows for f in r.get("feedback") or () if f.get("kind") == "feedback"]
    return {
        "replies": len(rows),
        "errors": sum(r.get("outcome") not in _NOT_ERRORS for r in rows),
        "fallbacks": sum(bool(r.get("fallback")) for r in rows),
        "cached": sum(bool(r.get("cached")) for r in rows),
        "first_token_p50_ms": _pct(first, 0.5), "first_token_p95_ms": _pct(first, 0.95),
        "total_p50_ms": _pct(total, 0.5), "total_p95_ms": _pct(total, 0.95),
        "input_tokens": sum(r.get("input_tokens") or 0 for r in rows),
        "output_tokens": sum(r.get("output_tokens") or 0 for r in rows),
        "cost_usd": sum(costs) if costs else None,
        "likes": feedback.count("like"), "dislikes": feedback.count("dislike"),
    }


def _pct(values: Sequence[int], q: float) -> int | None:
    """Nearest-rank percentile of sorted `values`."""
    if not values:
        return None
    return values[max(math.ceil(q * len(values)) - 1, 0)]


def format_stats(result: Mapping[str, Mapping[str, Any]]) -> str:
    rows = [["BOT", "REPLIES", "ERRORS", "FALLBACK", "FIRST TOKEN p50/p95", "TOTAL p50/p95", "TOKENS IN/OUT",
             "COST", "LIKES/DISLIKES"]]
    for bot, s in result.items():
        n = s["replies"]
        rows.append([bot, str(n), _rate(s["errors"], n), _rate(s["fallbacks"], n),
                     f"{_ms(s['first_token_p50_ms'])} / {_ms(s['first_token_p95_ms'])}",
                     f"{_ms(s['total_p50_ms'])} / {_ms(s['total_p95_ms'])}",
                     f"{s['input_tokens']} / {s['output_tokens']}",
                     "?" if s["cost_usd"] is None else _usd(s["cost_usd"]), f"{s['likes']} / {s['dislikes']}"])
    return table(rows)


def _rate(count: int, n: int) -> str:
    return f"{100 * count / n:.1f}%" if n else "-"


def _ms(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value} ms" if value < 1000 else f"{value / 1000:.1f} s"
