"""Captures: keep a bad response whole, so that a user can hand it to a bug report.

Off unless ``capture.dir`` is set.  A request that matches ``capture.match`` and the
``sample`` draw is recorded while it is answered (a copy of each upstream read and of
each piece sent, up to ``max_stream_bytes`` each - the stream itself is never held
back); when the answer ends, ``on`` decides whether it is kept: ``fault`` (the stream
was cut short), ``rule_failure`` (a rule raised), or ``always``.  A kept capture is a
directory, written off the event loop:

    capture.json   endpoint, path, model, shapes, read boundaries, fault, rules applied,
                   the clock readings and minted ids the rules took (so a replay is exact)
    request.json   method, path, query, headers (never Authorization, cookies or keys), body
    upstream.bin   the upstream body as it came (capture.json "reads" gives each read's size)
    sent.bin       what the proxy sent (its keepalive comments aside)

``sse-fixup replay DIR --check`` runs ``upstream.bin`` through the same transform, read
by read, and compares with ``sent.bin``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import random
import re
import secrets
import time
from pathlib import Path

import orjson

from .rules.base import Minting

log = logging.getLogger("sse_fixup.capture")

SECRET_HEADER = re.compile(r"authorization|cookie|key|token|secret|password", re.I)


class Capturer:
    """One per app: decides which requests are recorded, and writes the kept ones."""

    def __init__(self, cfg, metrics):
        self.top = cfg                # the whole config (a reload changes it in place)
        self.metrics = metrics
        self.total: int | None = None  # bytes in the directory, counted at the first write
        self.pending: set[asyncio.Task] = set()

    def start(self, method: str, path: str, query: str, headers, body: bytes | None,
              endpoint: str, model: str | None) -> Recording | None:
        c = self.cfg
        if not c.dir:
            return None
        m = c.match
        if m.path is not None and not fnmatch.fnmatchcase(path, m.path):
            return None
        if m.model is not None and not (model and fnmatch.fnmatchcase(model, m.model)):
            return None
        if c.sample < 1.0 and random.random() >= c.sample:
            return None
        request = {"method": method, "path": path, "query": query,
                   "headers": {str(k): v for k, v in headers.items() if not SECRET_HEADER.search(k)},
                   "body": _json_or_text(body)}
        return Recording(self, request, endpoint, model, c.max_stream_bytes)

    @property
    def cfg(self):
        return self.top.capture

    def keep(self, rec: Recording) -> None:
        task = asyncio.ensure_future(asyncio.to_thread(self._write, rec))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    def _write(self, rec: Recording) -> None:
        root = Path(self.cfg.dir)
        try:
            root.mkdir(parents=True, exist_ok=True)
            if self.total is None:
                self.total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
            size = sum(map(len, rec.upstream)) + sum(map(len, rec.sent))
            if self.total + size > self.cfg.max_total_bytes:
                self.metrics.captures_skipped.labels("total_cap").inc()
                log.warning("capture not written: %s holds capture.max_total_bytes already", root)
                return
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            where = root / f"{stamp}-{rec.endpoint}-{secrets.token_hex(4)}"   # not the rules' token()
            where.mkdir()
            (where / "request.json").write_bytes(orjson.dumps(rec.request, option=orjson.OPT_INDENT_2))
            (where / "upstream.bin").write_bytes(b"".join(rec.upstream))
            (where / "sent.bin").write_bytes(b"".join(rec.sent))
            (where / "capture.json").write_bytes(orjson.dumps(rec.meta(), option=orjson.OPT_INDENT_2))
            self.total += size
            self.metrics.captures.labels(rec.trigger).inc()
            log.info("captured %s %s (%s) to %s", rec.request["method"], rec.request["path"],
                     rec.trigger, where)
        except OSError as exc:
            self.metrics.captures_skipped.labels("write_error").inc()
            log.warning("capture not written to %s: %s", root, exc)


class Recording:
    """One response being recorded."""

    __slots__ = ("capturer", "request", "endpoint", "model", "limit", "upstream", "sent",
                 "reads", "sizes", "truncated", "shape", "minting", "trigger", "result")

    def __init__(self, capturer: Capturer, request: dict, endpoint: str, model, limit: int):
        self.capturer = capturer
        self.request = request
        self.endpoint, self.model, self.limit = endpoint, model, limit
        self.upstream: list[bytes] = []
        self.sent: list[bytes] = []
        self.reads: list[int] = []
        self.sizes = [0, 0]
        self.truncated = False
        self.shape = ("stream", "stream")
        self.minting = Minting()
        self.trigger = ""
        self.result: dict = {}

    def read(self, chunk: bytes) -> None:
        if self.sizes[0] + len(chunk) > self.limit:
            self.truncated = True
            return
        self.sizes[0] += len(chunk)
        self.upstream.append(chunk)
        self.reads.append(len(chunk))

    def wrote(self, out: bytes) -> None:
        if self.sizes[1] + len(out) > self.limit:
            self.truncated = True
            return
        self.sizes[1] += len(out)
        self.sent.append(out)

    def finish(self, ctx, status: int) -> None:
        """The answer ended: keep it when ``capture.on`` says so."""
        on = self.capturer.cfg.on
        if on == "fault" and (ctx is None or ctx.fault is None):
            return
        if on == "rule_failure" and (ctx is None or not ctx.failures):
            return
        self.trigger = on
        fault = ctx.fault if ctx is not None else None
        self.result = {"status": status,
                       "fault": {"code": fault.code, "message": fault.message} if fault else None,
                       "rule_failures": dict(ctx.failures) if ctx else {},
                       "rules_applied": dict(ctx.applied) if ctx else {},
                       "events": ctx.events if ctx else None}
        self.capturer.keep(self)

    def meta(self) -> dict:
        return {"format": "sse-fixup-capture/1", "endpoint": self.endpoint, "model": self.model,
                "upstream": self.shape[0], "client": self.shape[1], "reads": self.reads,
                "truncated": self.truncated, "minted": [list(x) for x in self.minting.taken],
                "trigger": self.trigger, "config": self.capturer.top.source,
                **self.result}


def _json_or_text(body: bytes | None):
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")


def load(path: str) -> dict:
    """A capture directory as replay needs it: meta, request body, upstream reads, sent."""
    root = Path(path)
    meta = orjson.loads((root / "capture.json").read_bytes())
    data = (root / "upstream.bin").read_bytes()
    reads, pos = [], 0
    for n in meta["reads"]:
        reads.append(data[pos:pos + n])
        pos += n
    request = orjson.loads((root / "request.json").read_bytes())
    return {"meta": meta, "request": request, "reads": reads, "sent": (root / "sent.bin").read_bytes()}
