"""``responses_store: {sqlite: PATH}``: stored responses in one SQLite file.

Survives restarts and is shared by the ``--workers N`` processes of one machine: WAL mode
(readers never wait for the writer), ``busy_timeout`` for the writers, each write one
``BEGIN IMMEDIATE`` transaction.  sqlite3 blocks, so every call runs on one thread of this
store's own (the connection never changes threads), never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

SCHEMA = """
CREATE TABLE IF NOT EXISTS sse_fixup_responses (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS sse_fixup_responses_created ON sse_fixup_responses (created);
CREATE INDEX IF NOT EXISTS sse_fixup_responses_expires ON sse_fixup_responses (expires);
"""
BUSY_MS = 3000        # another worker's write in progress: wait this long, then fail (a 503)


class SqliteBackend:
    name = "sqlite"
    shared = True         # other processes write here too

    def __init__(self, path: str, ttl: float, max_items: int):
        self.path, self.ttl, self.max_items = path, ttl, max_items
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sse-fixup-sqlite")
        self._db: sqlite3.Connection | None = None

    def describe(self) -> str:
        return f"sqlite {self.path}"

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _conn(self) -> sqlite3.Connection:
        # opened on first use (and again after a failure): a missing directory or a locked
        # file is a store that is down, not a proxy that cannot start
        if self._db is None:
            # conversations at rest: a new file readable by the proxy's user only (SQLite
            # gives the -wal and -shm files the database file's permissions)
            if self.path != ":memory:" and not os.path.exists(self.path):
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(self.path, timeout=BUSY_MS / 1000, isolation_level=None,
                                 check_same_thread=False)
            try:
                db.execute(f"PRAGMA busy_timeout={BUSY_MS}")
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(SCHEMA)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _get(self, rid: str) -> bytes | None:
        row = self._conn().execute("SELECT data FROM sse_fixup_responses WHERE id = ? AND expires > ?",
                                   (rid, time.time())).fetchone()
        return bytes(row[0]) if row else None

    def _put(self, rid: str, data: bytes) -> dict:
        db = self._conn()
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            expired = db.execute("DELETE FROM sse_fixup_responses WHERE expires <= ?", (now,)).rowcount
            db.execute("INSERT OR REPLACE INTO sse_fixup_responses (id, created, expires, data) "
                       "VALUES (?, ?, ?, ?)", (rid, now, now + self.ttl, data))
            (count,) = db.execute("SELECT COUNT(*) FROM sse_fixup_responses").fetchone()
            evicted = 0
            if count > self.max_items:
                evicted = db.execute(
                    "DELETE FROM sse_fixup_responses WHERE id IN (SELECT id FROM sse_fixup_responses "
                    "ORDER BY created LIMIT ?)", (count - self.max_items,)).rowcount
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return {"ttl": expired, "max_items": evicted}

    def _delete(self, rid: str) -> bool:
        return self._conn().execute("DELETE FROM sse_fixup_responses WHERE id = ?", (rid,)).rowcount > 0

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def get(self, rid: str) -> bytes | None:
        return await self._run(self._get, rid)

    async def put(self, rid: str, data: bytes) -> dict:
        return await self._run(self._put, rid, data)

    async def delete(self, rid: str) -> bool:
        return await self._run(self._delete, rid)

    async def close(self) -> None:
        await self._run(self._close)
        self._thread.shutdown(wait=False)
