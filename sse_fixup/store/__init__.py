"""The response store: conversation state for backends that keep none (issue 13).

``Stores`` (one per app) gives each route with ``responses_store`` its ``Store``: one per
distinct setting, shared by the routes that have it.  ``Store.expand`` turns
``previous_response_id`` into input items (``expand.py``), ``Store.tap`` keeps the answer
(``record.py``), ``views`` serve GET/DELETE /v1/responses/{id}.  Backends: ``memory.py``,
``sqlite.py``, ``redis.py``; each has ``get``/``put``/``delete``/``close`` on bytes.

A store that is down never breaks a request that does not need it: a failed save is
logged and counted; only a continuation (or a GET/DELETE) fails, with a 503, within
``TIMEOUT`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os

import orjson
from prometheus_client import Counter

from .expand import expanded, input_items
from .record import Recorder

log = logging.getLogger("sse_fixup.store")

TIMEOUT = 5.0                  # seconds any store operation may take before it is a 503
# a shared store (sqlite, redis) may miss a response another process is saving right now
# (turn 1 answered by one replica, turn 2 sent at once to another): look again, for up to
# 1.55 s - a loaded machine's first sqlite write (open, schema, WAL) took longer than 0.35 s
# in CI; only a real miss (an unknown id) pays the wait before its 404
MISS_RETRIES = (0.05, 0.1, 0.2, 0.4, 0.8)


class StoreError(Exception):
    """An answer the store gives instead of the backend: status, OpenAI error code, message."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param


def _backend(spec: dict):
    kind, target, ttl, cap = spec["backend"], spec["target"], spec["ttl"], spec["max_items"]
    if kind == "sqlite":
        from .sqlite import SqliteBackend
        return SqliteBackend(target, ttl, cap)
    if kind == "redis":
        from .redis import RedisBackend
        return RedisBackend(target, ttl, cap)
    from .memory import MemoryBackend
    return MemoryBackend(ttl, cap)


def _record(rid: str, data: bytes) -> dict | None:
    """A stored record, or None (logged) when what is stored there is not one of ours."""
    try:
        rec = orjson.loads(data)
    except orjson.JSONDecodeError:
        rec = None
    if isinstance(rec, dict) and isinstance(rec.get("input"), list) and \
            isinstance(rec.get("output"), list) and isinstance(rec.get("response"), dict):
        return rec
    log.warning("response store: the record of %s is not a stored response; ignored", rid)
    return None


def _checked(value) -> dict:
    from ..config import At, StoreSpec
    return StoreSpec(None, "", nullable=True).check(value, At("responses_store", 1))


class Store:
    """One backend and what the proxy asks of it."""

    def __init__(self, backend, counters):
        self.backend = backend
        self.counters = counters
        self.pending: dict[str, asyncio.Future] = {}     # saves in flight, by response id

    async def _call(self, op: str, coro, deadline: float | None = None):
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + TIMEOUT
        try:
            async with asyncio.timeout_at(deadline):
                return await coro
        except Exception as exc:          # noqa: BLE001 - any failure of the store is a 503
            self.counters["errors"].labels(self.backend.name, op).inc()
            why = "did not answer in time" if isinstance(exc, TimeoutError) else \
                f"failed: {type(exc).__name__}: {exc}"
            log.warning("response store (%s): %s %s", self.backend.describe(), op, why)
            raise StoreError(503, "store_unavailable", f"the response store "
                             f"({self.backend.describe()}) {why}") from None

    async def load(self, rid: str) -> dict | None:
        """The record kept for ``rid`` (None: unknown or expired).  ``StoreError`` 503."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT          # for all of it: one lookup never hangs
        saving = self.pending.get(rid)
        if saving is not None:                    # this process is still saving it
            await asyncio.wait([saving], timeout=TIMEOUT)
        data = await self._call("get", self.backend.get(rid), deadline)
        for pause in MISS_RETRIES if data is None and self.backend.shared else ():
            await asyncio.sleep(pause)
            data = await self._call("get", self.backend.get(rid), deadline)
            if data is not None:
                break
        rec = _record(rid, data) if data is not None else None
        self.counters["lookups"].labels(self.backend.name, "hit" if rec else "miss").inc()
        return rec

    async def remove(self, rid: str) -> bool:
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        saving = self.pending.get(rid)
        if saving is not None:
            await asyncio.wait([saving], timeout=TIMEOUT)
        return await self._call("delete", self.backend.delete(rid), deadline)

    async def expand(self, body: dict) -> dict:
        """``body`` as a self-contained request (the very object when it has no
        ``previous_response_id``); 404 ``previous_response_not_found`` as the API gives it."""
        prev = body.get("previous_response_id")
        if prev is None:
            return body
        if not isinstance(prev, str) or not prev:
            raise StoreError(400, "invalid_type", "previous_response_id must be a response id "
                             "(a non-empty string)", "previous_response_id")
        rec = await self.load(prev)
        if rec is None:
            raise StoreError(404, "previous_response_not_found",
                             f"Previous response with id '{prev}' not found.", "previous_response_id")
        return expanded(body, rec)

    def tap(self, info, body: dict):
        """The maker of the stage that keeps this answer, or None (``store: false``)."""
        if body.get("store", True) is False:      # the API's default is store: true
            return None
        items = input_items(body.get("input"))
        # what a backend without a store gets wrong in the response object (llama-server:
        # store false, previous_response_id null), set right in the copy GET returns
        fix = {"store": True, "previous_response_id": info.get("previous_response_id") if info else None}
        if isinstance(body.get("instructions"), str):
            fix["instructions"] = body["instructions"]
        return lambda ctx, shape: Recorder(self, items, shape, fix)

    def schedule(self, rid: str, rec: dict) -> None:
        """Save ``rec`` in the background (called from inside the stream: never raises)."""
        try:
            data = orjson.dumps(rec)
        except TypeError as exc:
            log.warning("response %s not stored: %s", rid, exc)
            return
        task = asyncio.ensure_future(self._save(rid, data))
        self.pending[rid] = task
        task.add_done_callback(lambda t: self.pending.pop(rid, None) if self.pending.get(rid) is t else None)

    async def _save(self, rid: str, data: bytes) -> None:
        try:
            gone = await self._call("put", self.backend.put(rid, data))
        except StoreError:
            return                          # logged and counted: the answer went out anyway
        self.counters["saved"].labels(self.backend.name).inc()
        for reason, n in gone.items():
            if n:
                self.counters["evictions"].labels(self.backend.name, reason).inc(n)

    async def close(self) -> None:
        if self.pending:
            await asyncio.wait(list(self.pending.values()), timeout=TIMEOUT)
        try:
            await self.backend.close()
        except Exception as exc:          # noqa: BLE001 - closing a store that is down
            log.warning("response store (%s): close failed: %s", self.backend.describe(), exc)


class Stores:
    """The stores of one app, by setting (``responses_store`` of each route)."""

    def __init__(self, cfg, metrics):
        self.cfg = cfg
        self.metrics = metrics
        r = metrics.registry
        self.counters = {
            "saved": Counter("sse_fixup_store_saved", "Responses kept by the response store",
                             ["backend"], registry=r),
            "lookups": Counter("sse_fixup_store_lookups", "previous_response_id and GET lookups, "
                               "by result (hit, miss)", ["backend", "result"], registry=r),
            "evictions": Counter("sse_fixup_store_evictions", "Stored responses dropped: reason "
                                 "max_items (the oldest, over the cap) or ttl (expired)",
                                 ["backend", "reason"], registry=r),
            "errors": Counter("sse_fixup_store_errors", "Store operations that failed or timed out",
                              ["backend", "op"], registry=r),
        }
        self._stores: dict[tuple, Store] = {}

    def for_route(self, route) -> Store | None:
        spec = getattr(route.keys, "responses_store", None)
        if spec is None:
            return None
        if not (isinstance(spec, dict) and "backend" in spec):
            spec = _checked(spec)        # a Config built in code, not read from a file
        key = (spec["backend"], spec["target"], spec["ttl"], spec["max_items"])
        store = self._stores.get(key)
        if store is None:                 # a reload may bring a new setting: made on first use
            store = self._stores[key] = Store(_backend(spec), self.counters)
        return store

    async def lifecycle(self, app):
        """Made at start (so the log says where conversations are kept), closed at exit."""
        from ..proxy import ROUTER
        for route in app[ROUTER].routes:
            store = self.for_route(route)
            if store is None:
                continue
            log.info("route %s: responses kept in %s (ttl %gs, max_items %d)", route.label,
                     store.backend.describe(), store.backend.ttl, store.backend.max_items)
            # --workers N: N processes, N memories; a turn may reach one that has not its past
            if store.backend.name == "memory" and (getattr(self.cfg, "workers", 1) > 1
                                                   or os.environ.get("PROMETHEUS_MULTIPROC_DIR")):
                log.warning("responses_store: memory is per process: with several workers a "
                            "continuation may reach one that did not keep the response; use "
                            "{sqlite: PATH} (one machine) or {redis: URL}")
        yield
        for store in list(self._stores.values()):
            await store.close()
        self._stores.clear()
