"""The reply store: one SQLite row per reply, and Poe's feedback and reactions (docs/logs.md).

A `ReplyStore` is a logging handler on `polybot.reply`: every record that goes through
`reliability.emit_reply` (and `emit_report`) is queued as it is, in the event loop's thread, and one
writer thread turns the queue into batched inserts. Nothing on the reply path waits for SQLite, and
a store that is locked, full or corrupt says so once (a warning on logger `polybot`) and replies go
on. The file is in WAL mode with a busy timeout, so `serve --workers N` processes share it.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from polybot.config import LogsSettings, ModelPrice, ProviderConfig

log = logging.getLogger("polybot")

#: The logger every reply record goes through (reliability.emit_reply).
REPLY_LOGGER = "polybot.reply"

#: PRAGMA user_version of the schema below.
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,                 -- when the reply ended, Unix seconds
    bot TEXT, provider TEXT, model TEXT,
    outcome TEXT,                     -- ok | truncated | refused | tool_call | error | limited
    finish_reason TEXT,
    attempts INTEGER, fallback INTEGER, cached INTEGER, tool_rounds INTEGER,
    input_tokens INTEGER, output_tokens INTEGER, reasoning_tokens INTEGER, cached_tokens INTEGER,
    cost_usd REAL,                    -- NULL where no price is known
    ttft_ms INTEGER, duration_ms INTEGER,
    user_id TEXT, conversation_id TEXT, message_id TEXT,
    calls TEXT,                       -- JSON: each provider call (provider, model, ms, outcome, error)
    tool_calls TEXT,                  -- JSON: each tool call (name, ok, ms)
    prompt TEXT, response TEXT        -- message text, only with [logs] content
);
CREATE INDEX IF NOT EXISTS replies_ts ON replies (ts);
CREATE INDEX IF NOT EXISTS replies_message ON replies (message_id);
CREATE INDEX IF NOT EXISTS replies_conversation ON replies (conversation_id);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,               -- feedback | reaction
    value TEXT,                       -- like | dislike, or the reaction
    bot TEXT, user_id TEXT, conversation_id TEXT, message_id TEXT
);
CREATE INDEX IF NOT EXISTS reports_message ON reports (message_id);
"""

REPLY_COLUMNS = ("ts", "bot", "provider", "model", "outcome", "finish_reason", "attempts", "fallback", "cached",
                 "tool_rounds", "input_tokens", "output_tokens", "reasoning_tokens", "cached_tokens", "cost_usd",
                 "ttft_ms", "duration_ms", "user_id", "conversation_id", "message_id", "calls", "tool_calls",
                 "prompt", "response")
REPORT_COLUMNS = ("ts", "kind", "value", "bot", "user_id", "conversation_id", "message_id")
_INSERT_REPLY = f"INSERT INTO replies ({', '.join(REPLY_COLUMNS)}) VALUES ({', '.join('?' * len(REPLY_COLUMNS))})"
_INSERT_REPORT = f"INSERT INTO reports ({', '.join(REPORT_COLUMNS)}) VALUES ({', '.join('?' * len(REPORT_COLUMNS))})"
REPORT_EVENTS = frozenset({"feedback", "reaction"})

#: Records waiting beyond this many (a writer stuck on a locked file) are dropped, said once.
MAX_QUEUED = 20_000
#: Retention runs on opening the file and then after this many rows or seconds.
PRUNE_ROWS = 1000
PRUNE_SECONDS = 600.0

#: The USD price of one reply's record, or None (costs.reply_cost behind it).
Pricer = Callable[[Mapping[str, Any]], Decimal | None]


@dataclass(frozen=True, slots=True)
class _Flush:
    done: threading.Event


_STOP = object()


def connect(path: Path, busy_timeout: float = 5.0) -> sqlite3.Connection:
    """The store at `path` (created, with its schema, if absent): WAL, autocommit, shareable by thread."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; a power cut may lose the last batch
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            conn.executescript(SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    return conn


def prune(conn: sqlite3.Connection, max_rows: int, max_days: float, now: float | None = None) -> None:
    """Retention: no row older than `max_days`, at most the newest `max_rows` replies (and reports)."""
    cutoff = (time.time() if now is None else now) - max_days * 86400
    for table in ("replies", "reports"):
        conn.execute(f"DELETE FROM {table} WHERE ts < ?", (cutoff,))
        conn.execute(f"DELETE FROM {table} WHERE id <= (SELECT max(id) FROM {table}) - ?", (max_rows,))


class ReplyStore(logging.Handler):
    """A handler on `polybot.reply` that keeps every reply record in SQLite, off the event loop."""

    def __init__(self, path: Path, *, content: bool = False, max_rows: int = 100_000, max_days: float = 30,
                 price: Pricer | None = None, busy_timeout: float = 5.0, linger: float = 0.05,
                 batch: int = 500) -> None:
        super().__init__(logging.INFO)
        self.path = path
        self.content = content
        self.max_rows, self.max_days = max_rows, max_days
        self.price = price
        self.busy_timeout = busy_timeout
        self.linger = linger  # the writer waits this long after a record for others to join its batch
        self.batch = batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._conn: sqlite3.Connection | None = None
        self._pending: list[Mapping[str, Any]] = []  # a batch a locked file refused, tried again next time
        self._warned = False
        self._dropping = False
        self._since_prune = 0
        self._pruned = 0.0
        self._thread = threading.Thread(target=self._run, name="polybot-reply-store", daemon=True)
        self._thread.start()

    # --- the event loop's side: queue and return --------------------------------------------

    def handle(self, record: logging.LogRecord) -> bool:  # no handler lock: the queue is thread-safe
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        reply = getattr(record, "reply", None)
        if not isinstance(reply, Mapping):
            return
        if self._queue.qsize() >= MAX_QUEUED:
            if not self._dropping:
                self._dropping = True
                log.warning("reply store %s: %d records wait to be written; dropping new ones until it "
                            "catches up", self.path, MAX_QUEUED)
            return
        content = getattr(record, "reply_content", None) if self.content else None
        self._queue.put({**reply, **content} if content else reply)

    # logging's own flush() and close() stay the no-ops they are: uvicorn's dictConfig calls them on
    # every handler while holding logging's lock, which the writer may need (a deadlock), and the
    # store must outlive that. `drain` and `stop` are the store's own.

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every record queued so far is written (or has failed to be)."""
        if not self._thread.is_alive():
            return
        marker = _Flush(threading.Event())
        self._queue.put(marker)
        marker.done.wait(timeout)

    def stop(self) -> None:
        """Write what is queued and stop the writer (idempotent); the handler leaves `polybot.reply`."""
        logging.getLogger(REPLY_LOGGER).removeHandler(self)
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout=10.0)

    # --- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            items = [self._queue.get()]
            if self.linger and items[0] is not _STOP and not isinstance(items[0], _Flush):
                time.sleep(self.linger)
            while len(items) < self.batch:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            records = [i for i in items if isinstance(i, Mapping)]
            if records or self._pending:
                self._write(records)
            for item in items:
                if isinstance(item, _Flush):
                    item.done.set()
                stopping |= item is _STOP
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _write(self, records: list[Mapping[str, Any]]) -> None:
        records = self._pending + records
        self._pending = []
        try:
            if self._conn is None:
                self._conn = connect(self.path, self.busy_timeout)
                prune(self._conn, self.max_rows, self.max_days)
                self._pruned = time.monotonic()
            conn = self._conn
            replies = [self._row(r) for r in records if r.get("event", "reply") not in REPORT_EVENTS]
            reports = [_report_row(r) for r in records if r.get("event") in REPORT_EVENTS]
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT_REPLY, replies)
                conn.executemany(_INSERT_REPORT, reports)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._since_prune += len(records)
            if self._since_prune >= PRUNE_ROWS or time.monotonic() - self._pruned > PRUNE_SECONDS:
                prune(conn, self.max_rows, self.max_days)
                self._since_prune, self._pruned = 0, time.monotonic()
        except Exception as exc:  # noqa: BLE001 - a store that fails never fails a reply: said once
            self._failed(exc, records)
            return
        if self._warned:
            log.info("reply store %s: writing again", self.path)
        self._warned = self._dropping = False

    def _failed(self, exc: Exception, records: list[Mapping[str, Any]]) -> None:
        text = str(exc)
        busy = isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)
        if busy:  # another process holds the file: keep the batch for the next try
            self._pending = records[-MAX_QUEUED:]
            why = "the database is locked by another connection; replies wait in memory and are written once it is free"
        elif "full" in text:
            why = f"{text}: replies are not stored until there is room"
        elif isinstance(exc, sqlite3.DatabaseError):
            why = f"not a usable SQLite database ({text}); replies are not stored: move the file aside to start anew"
        else:
            why = f"cannot write ({type(exc).__name__}: {text}); replies are not stored"
        if self._conn is not None and not busy:
            self._conn.close()
            self._conn = None  # opened again for the next batch
        if not self._warned:
            self._warned = True
            log.warning("reply store %s: %s", self.path, why)

    def _row(self, r: Mapping[str, Any]) -> tuple[Any, ...]:
        cost = r.get("cost_usd")
        if cost is None and self.price is not None:
            try:
                cost = self.price(r)
            except Exception:  # noqa: BLE001 - an unknown price is no reason to lose the row
                cost = None
        content = self.content
        return (r.get("ts") or time.time(), r.get("bot"), r.get("provider"), r.get("model"), r.get("outcome"),
                r.get("finish_reason"), r.get("attempts"), int(bool(r.get("fallback"))),
                int(bool(r.get("cached"))), r.get("tool_rounds"), r.get("input_tokens"), r.get("output_tokens"),
                r.get("reasoning_tokens"), r.get("cached_tokens"), None if cost is None else float(cost),
                r.get("ttft_ms"), r.get("duration_ms"), r.get("user_id"), r.get("conversation_id"),
                r.get("message_id"), _json(r.get("calls")), _json(r.get("tool_calls")),
                r.get("prompt") if content else None, r.get("response") if content else None)


def _report_row(r: Mapping[str, Any]) -> tuple[Any, ...]:
    return (r.get("ts") or time.time(), r.get("event"), r.get("value"), r.get("bot"), r.get("user_id"),
            r.get("conversation_id"), r.get("message_id"))


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


def pricer(providers: Callable[[], Mapping[str, ProviderConfig]],
           prices: Mapping[str, ModelPrice] | None = None) -> Pricer:
    """A reply record's cost from `providers()` (read when the row is written, so dev's reloads count)."""
    from polybot.costs import reply_cost
    from polybot.providers.base import Usage

    def price(record: Mapping[str, Any]) -> Decimal | None:
        config = providers().get(str(record.get("provider")))
        if config is None or record.get("cached"):  # a cached reply cost nothing
            return None if config is None else Decimal(0)
        usage = Usage(input_tokens=record.get("input_tokens"), output_tokens=record.get("output_tokens"),
                      reasoning_tokens=record.get("reasoning_tokens"), cached_tokens=record.get("cached_tokens"))
        return reply_cost(str(record["provider"]), config, str(record.get("model") or ""), usage, prices)

    return price


def install(root: Path, settings: LogsSettings, *, dev: bool, price: Pricer | None = None) -> ReplyStore | None:
    """Keep every reply of this process in the project's store ([logs] in polybot.toml); None when off.
    Message text is kept where `content` says, by default in `dev` and not in `serve`."""
    if not settings.enabled:
        return None
    content = dev if settings.content is None else settings.content
    store = ReplyStore(root / settings.path, content=content, max_rows=settings.max_rows,
                       max_days=settings.max_days, price=price)
    logger = logging.getLogger(REPLY_LOGGER)
    logger.addHandler(store)
    logger.setLevel(logging.INFO)
    import atexit

    atexit.register(store.stop)
    return store


def read(path: Path) -> sqlite3.Connection:
    """The store at `path` for reading (`polybot logs`); rows as sqlite3.Row."""
    # Not mode=ro: a reader of a WAL file may need to create its -shm (after a writer closed it).
    conn = sqlite3.connect(path, timeout=5.0)
    conn.row_factory = sqlite3.Row
    return conn


def replies(conn: sqlite3.Connection, *, limit: int | None = None, bot: str | None = None,
            outcome: str | None = None, since: float | None = None,
            conversation: str | None = None) -> list[dict[str, Any]]:
    """Replies, oldest first (the newest `limit` of them), each with its feedback and reactions."""
    where, args = _filters(bot=bot, outcome=outcome, since=since, conversation=conversation)
    sql = f"SELECT * FROM replies{where} ORDER BY id DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    rows = [dict(r) for r in conn.execute(sql, args)][::-1]
    reports = _reports(conn, [r["message_id"] for r in rows if r["message_id"]])
    for row in rows:
        row["calls"] = json.loads(row["calls"]) if row["calls"] else []
        row["tool_calls"] = json.loads(row["tool_calls"]) if row["tool_calls"] else []
        row["fallback"], row["cached"] = bool(row["fallback"]), bool(row["cached"])
        row["feedback"] = reports.get(row["message_id"], [])
    return rows


def _filters(**given: Any) -> tuple[str, list[Any]]:
    clauses, args = [], []
    for name, column, op in (("bot", "bot", "="), ("outcome", "outcome", "="), ("since", "ts", ">="),
                             ("conversation", "conversation_id", "=")):
        if given.get(name) is not None:
            clauses.append(f"{column} {op} ?")
            args.append(given[name])
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _reports(conn: sqlite3.Connection, message_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    ids = list(dict.fromkeys(message_ids))
    found: dict[str, list[dict[str, Any]]] = {}
    for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
        chunk = ids[start:start + 500]
        sql = (f"SELECT kind, value, ts, message_id FROM reports WHERE message_id IN ({', '.join('?' * len(chunk))})"
               " ORDER BY id")
        for kind, value, ts, message_id in conn.execute(sql, chunk):
            found.setdefault(message_id, []).append({"kind": kind, "value": value, "ts": ts})
    return found
