"""One proxied SSE response: read upstream, transform, write - and watch the clock.

``Pump.run`` is the per-stream loop, I/O only: every upstream read goes through the
response's ``Transform`` and what it returns is written at once (never held back for
more).  When the stream cannot end normally - the upstream resets or times out, an
event outgrows ``limits.max_event_bytes``, the proxy shuts down - the pump closes the
transform with that fault, and the rules end the stream in its own dialect
(``responses.terminal``, ``chat.terminal``).

Timeouts and keepalives cost nothing per event: one ``Watch`` per app wakes a few
times a second, looks at every open stream's last-read time, writes an SSE comment
to the quiet ones and aborts the ones past their deadline (by failing their upstream
reader, so the pump sees it at its next await).
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
from aiohttp import web

from .config import Config
from .headers import response_headers
from .metrics import Metrics
from .rules.base import Fault, RequestInfo
from .transform import Transform

log = logging.getLogger("sse_fixup.stream")

KEEPALIVE = b": keepalive\n\n"


class Aborted(Exception):
    """Set on an upstream reader to stop its pump (the pump's ``fault`` says why)."""


class Pump:
    __slots__ = ("request", "resp", "upstream", "transform", "info", "cfg", "metrics",
                 "sent_at", "last", "quiet", "first", "fault", "tally", "recording", "_keepalive_task")

    def __init__(self, request: web.Request, upstream: aiohttp.ClientResponse,
                 transform: Transform, info: RequestInfo, cfg: Config, metrics: Metrics,
                 sent_at: float, tally=None, recording=None):
        self.request = request
        self.upstream = upstream
        self.transform = transform
        self.info = info
        self.cfg = cfg
        self.metrics = metrics
        self.sent_at = sent_at       # monotonic time the request went upstream
        self.last = time.monotonic()  # last upstream read
        self.quiet = self.last        # last upstream read or keepalive sent
        self.first = True            # no body byte from upstream yet
        self.fault: Fault | None = None
        self.tally = tally            # what the answer came to (metrics, access log); may be None
        self.recording = recording    # a capture being recorded, or None
        self.resp: web.StreamResponse | None = None
        self._keepalive_task: asyncio.Task | None = None

    def abort(self, fault: Fault) -> None:
        """Stop the stream from outside (timeout, shutdown): the pump ends it with ``fault``."""
        if self.fault is None:
            self.fault = fault
            self.upstream.content.set_exception(Aborted(fault.message))

    def keepalive(self) -> None:
        if self.resp is not None and (self._keepalive_task is None or self._keepalive_task.done()):
            # a dialect has its own (an NDJSON reader cannot skip an SSE comment)
            beat = getattr(self.transform.stages[-1], "keepalive", KEEPALIVE)
            self._keepalive_task = asyncio.ensure_future(self._write_quietly(beat))

    async def _write_quietly(self, data: bytes) -> None:
        try:
            await self.resp.write(data)
        except (ConnectionError, RuntimeError, aiohttp.ClientConnectionResetError):
            pass                    # the client left; the pump notices on its own

    async def run(self) -> web.StreamResponse:
        upstream = self.upstream
        transform = self.transform
        headers = response_headers(upstream.headers, streaming=True)
        dialect = getattr(transform.stages[-1], "http_headers", None)
        if dialect:                      # a dialect writer's Content-Type and protocol headers
            headers.update(dialect)
        resp = self.resp = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                              headers=headers)
        await resp.prepare(self.request)
        head = transform.head()          # a dialect's start, a status: before the first token
        if head:
            if self.tally is not None:
                self.tally.wrote(head)
            await resp.write(head)
        feed = transform.feed
        endpoint = self.info.endpoint
        log_bodies = self.cfg.log_bodies
        read = upstream.content.readany
        write = resp.write
        tally = self.tally
        wrote = tally.wrote if tally is not None else None
        rec = self.recording
        try:
            while True:
                chunk = await read()
                if not chunk:
                    break
                self.last = time.monotonic()
                if self.first:
                    self.first = False
                    if tally is not None:
                        tally.first_byte_at = self.last
                if rec is not None:
                    rec.read(chunk)
                out = feed(chunk)
                if out:
                    if log_bodies:
                        log.info("stream %s out: %r", self.info.path, out)
                    if wrote is not None:
                        wrote(out)
                    if rec is not None:
                        rec.wrote(out)
                    await write(out)
                if transform.fault is not None:      # the input itself ended the stream
                    self.fault = transform.fault
                    self.metrics.events.labels(endpoint, "too_large").inc()
                    break
        except Aborted:
            pass                                 # self.fault was set by abort()
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError,
                aiohttp.ClientOSError) as exc:
            self.fault = Fault("upstream_disconnected",
                               f"the upstream closed the stream before it was complete ({exc})")
        except TimeoutError:
            self.fault = Fault("upstream_idle_timeout", "the upstream stopped sending")
        except (ConnectionError, asyncio.CancelledError, aiohttp.ClientConnectionResetError):
            self.metrics.client_disconnects.inc()
            upstream.close()          # release the backend's slot now, not at the next read
            self.metrics.stream_done(endpoint, transform.ctx)
            if tally is not None:
                tally.fault = "client_disconnected"
                tally.end(transform.ctx)
            raise
        if self.fault is not None:
            upstream.close()
            self.metrics.upstream_errors.labels(self.fault.code).inc()
            log.warning("stream %s ended early after %d events: %s: %s", self.info.path,
                        transform.ctx.events, self.fault.code, self.fault.message)
        tail = transform.close(self.fault)
        self.metrics.stream_done(endpoint, transform.ctx)
        if tail:
            if wrote is not None:
                wrote(tail)
            if rec is not None:
                rec.wrote(tail)
            await resp.write(tail)
        await resp.write_eof()
        if tally is not None:
            tally.end(transform.ctx)
        return resp


class Watch:
    """Timeouts and keepalives for every open stream, from one task per app."""

    def __init__(self, cfg: Config):
        self.configure(cfg)
        self.pumps: set[Pump] = set()
        self._task: asyncio.Task | None = None

    def configure(self, cfg: Config) -> None:
        """The timeouts (again, after a reload: open streams get the new ones too)."""
        t = cfg.timeouts
        self.first_byte = t.first_byte
        self.idle = t.idle
        self.keepalive = t.keepalive
        limits = [x for x in (t.first_byte, t.idle, t.keepalive) if x]
        self.tick = min(1.0, max(0.02, min(limits) / 5)) if limits else 1.0

    def add(self, pump: Pump) -> None:
        self.pumps.add(pump)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    def discard(self, pump: Pump) -> None:
        self.pumps.discard(pump)

    def abort_all(self, fault: Fault) -> None:
        for pump in list(self.pumps):
            pump.abort(fault)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while self.pumps:
            await asyncio.sleep(self.tick)
            now = time.monotonic()
            for pump in list(self.pumps):
                if pump.fault is not None:
                    continue
                if pump.first:
                    if self.first_byte and now - pump.sent_at >= self.first_byte:
                        pump.abort(Fault("upstream_timeout",
                                         f"no data from the upstream within timeouts.first_byte "
                                         f"({self.first_byte:g} s)"))
                        continue
                elif self.idle and now - pump.last >= self.idle:
                    pump.abort(Fault("upstream_idle_timeout",
                                     f"the upstream sent nothing for timeouts.idle "
                                     f"({self.idle:g} s)"))
                    continue
                if self.keepalive and now - max(pump.last, pump.quiet) >= self.keepalive:
                    pump.quiet = now
                    pump.keepalive()
