"""Assembled answers: what each answer came to, handed to sinks off the hot path.

An app in front of a model usually keeps the finished answer - for storage, analytics,
moderation after the fact.  Done in the request handler this is where streams get slow
(a database write before the last byte) or broken (the write fails).  Here an
``Assembly`` stage (a tap, just before the writer) collects the text, the reasoning, the
tool calls, the finish and the usage from the client endpoint's events; when the answer
has ended the proxy adds the timings, the route and the fault and ``Answers.submit`` puts
the record on each sink's bounded queue without waiting.  Each sink drains its queue in
its own task: a slow or dead sink fills its queue, and what does not fit is dropped -
counted in ``sse_fixup_answers_dropped_total{sink,reason}`` and logged - never waited for.

Sinks: ``jsonl`` (one JSON object per line, rotated by size; written in a thread so the
event loop never blocks on the disk) and ``post`` (an HTTP POST per record, with a
timeout and retries with backoff).  The assembly is bounded by
``answers.max_answer_bytes`` per answer; past it the record says ``"truncated": true``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import aiohttp
import orjson
from prometheus_client import Counter

from .dialects.events import Call, Reading
from .rules import base
from .rules.base import CONVERSATION

log = logging.getLogger("sse_fixup.answers")


class Assembly:
    """A tap stage: reads every event the client gets, changes none."""

    __slots__ = ("ctx", "shape", "reading", "text", "reasoning", "size", "cap", "truncated",
                 "first_token_at")

    def __init__(self, ctx, shape: str, cap: int):
        self.ctx = ctx
        self.shape = shape
        self.reading = Reading(ctx.request.endpoint)
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.size = 0
        self.cap = cap
        self.truncated = False
        self.first_token_at: float | None = None

    def push(self, events):
        if self.shape == "body":
            for ev in events:
                if ev.json is not None:
                    self._body(ev.json)
            return events
        read = self.reading.read
        for ev in events:
            for step in read(ev):
                kind = step[0]
                if kind in ("text", "reasoning", "tool_args"):
                    if self.first_token_at is None:
                        self.first_token_at = time.monotonic()
                    piece = step[-1]
                    if self.size + len(piece) > self.cap:
                        self.truncated = True
                        if kind == "tool_args":
                            self.reading.calls[step[1]].args.pop()
                        continue
                    self.size += len(piece)
                    if kind == "text":
                        self.text.append(piece)
                    elif kind == "reasoning":
                        self.reasoning.append(piece)
        return events

    def _keep(self, bucket: list, piece) -> None:
        if isinstance(piece, str) and piece:
            if self.size + len(piece) > self.cap:
                piece = piece[:max(self.cap - self.size, 0)]
                self.truncated = True
            self.size += len(piece)
            bucket.append(piece)

    def _body(self, obj: dict) -> None:
        """A whole answer body: chat.completion or a Responses response object."""
        r = self.reading
        if isinstance(obj.get("error"), dict) and "choices" not in obj and "output" not in obj:
            r._fail(obj["error"])
            return
        if isinstance(obj.get("usage"), dict):
            r.usage = obj["usage"]
        if "choices" in obj:
            choice = (obj.get("choices") or [{}])[0]
            msg = choice.get("message") or {} if isinstance(choice, dict) else {}
            self._keep(self.reasoning, msg.get("reasoning_content") or msg.get("reasoning"))
            self._keep(self.text, msg.get("content"))
            for i, tc in enumerate(msg.get("tool_calls") or ()):
                fn = tc.get("function") or {} if isinstance(tc, dict) else {}
                r._chat_call({"index": i, "id": tc.get("id"), "function": fn})
            r.finish = choice.get("finish_reason") if isinstance(choice, dict) else None
            return
        for item in obj.get("output") or ():
            if not isinstance(item, dict):
                continue
            if item.get("type") == "message":
                for part in item.get("content") or ():
                    if isinstance(part, dict):
                        self._keep(self.text, part.get("text") or part.get("refusal"))
            elif item.get("type") == "reasoning":
                for part in (item.get("content") or []) + (item.get("summary") or []):
                    if isinstance(part, dict):
                        self._keep(self.reasoning, part.get("text"))
            elif item.get("type") == "function_call":
                call = r.calls[item.get("id") or item.get("call_id")] = Call(item.get("call_id"), item.get("name"))
                call.args = [item.get("arguments") or ""]
        status = obj.get("status")
        r.finish = {"completed": "tool_calls" if r.calls else "stop", "incomplete": "length"}.get(status, status)

    def end(self):
        return []

    def record(self, *, tally, route: str, request_id: str, body: dict | None, include_request: bool,
               status: int) -> dict:
        """The answer as one JSON-able object (called once, when the answer has ended)."""
        r = self.reading
        ctx = self.ctx
        sent = tally.sent_at if tally is not None and tally.sent_at is not None else None

        def ms(t):
            return round((t - sent) * 1000, 1) if t is not None and sent is not None else None

        fault = ctx.fault
        if fault is None and tally is not None and tally.fault:
            fault_obj = {"code": tally.fault, "message": "the client disconnected"}
        elif fault is not None:
            fault_obj = {"code": fault.code, "message": fault.message}
        elif r.error is not None:
            fault_obj = {"code": r.error[0], "message": r.error[1]}
        else:
            fault_obj = None
        calls = []
        for call in r.calls.values():
            args = call.parsed()
            calls.append({"id": call.id, "name": call.name, "arguments": args,
                          **({"raw_arguments": call.arguments} if args is None else {})})
        out = {"request_id": request_id, "time": base.now(), "route": route,
               "endpoint": ctx.request.endpoint, "model": ctx.request.model,
               "text": "".join(self.text), "reasoning": "".join(self.reasoning) or None,
               "tool_calls": calls, "finish_reason": r.finish, "status": status, "usage": r.usage,
               "timings": {"ttfb_ms": ms(tally.first_byte_at) if tally is not None else None,
                           "first_token_ms": ms(self.first_token_at),
                           "duration_ms": ms(tally.ended_at if tally is not None and tally.ended_at
                                             else time.monotonic())},
               "fault": fault_obj, "truncated": self.truncated}
        if include_request and body is not None:
            out["request"] = {k: v for k, v in body.items()}
        elif body is not None:
            out["request"] = {k: v for k, v in body.items() if k not in CONVERSATION}
        return out


class Sink:
    """One destination with its own bounded queue and task."""

    kind = ""

    def __init__(self, answers: "Answers", size: int):
        self.answers = answers
        self.queue: asyncio.Queue = asyncio.Queue(size)
        self.task: asyncio.Task | None = None

    def offer(self, line: bytes) -> None:
        try:
            self.queue.put_nowait(line)
        except asyncio.QueueFull:
            self.answers.dropped(self.kind, "queue_full")

    async def run(self) -> None:
        while True:
            line = await self.queue.get()
            try:
                await self.write(line)
                self.answers.written.labels(self.kind).inc()
            except asyncio.CancelledError:
                raise
            except Exception as exc:             # a sink must never take the proxy down
                self.answers.dropped(self.kind, "failed", exc)
            finally:
                self.queue.task_done()

    async def write(self, line: bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class JSONLSink(Sink):
    """Append to a file; past ``max_bytes`` it becomes PATH.1 (PATH.1 -> PATH.2, ...)."""

    kind = "jsonl"

    def __init__(self, answers, size, path: str, max_bytes: int, keep: int):
        super().__init__(answers, size)
        self.path, self.max_bytes, self.keep = path, max_bytes, keep

    async def write(self, line: bytes) -> None:
        await asyncio.to_thread(self._append, line)

    def _append(self, line: bytes) -> None:
        try:
            size = os.path.getsize(self.path)
        except OSError:
            size = 0
        if size and size + len(line) > self.max_bytes:
            self._rotate()
        with open(self.path, "ab") as f:
            f.write(line)

    def _rotate(self) -> None:
        for n in range(self.keep - 1, 0, -1):
            if os.path.exists(f"{self.path}.{n}"):
                os.replace(f"{self.path}.{n}", f"{self.path}.{n + 1}")
        if self.keep:
            os.replace(self.path, f"{self.path}.1")
        else:
            os.remove(self.path)


class PostSink(Sink):
    """POST each record as JSON; retried with backoff (0.5 s, 1 s, 2 s, ...) on failure."""

    kind = "post"

    def __init__(self, answers, size, url: str, timeout: float, retries: int):
        super().__init__(answers, size)
        self.url, self.timeout, self.retries = url, timeout, retries
        self.session: aiohttp.ClientSession | None = None

    async def write(self, line: bytes) -> None:
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        for attempt in range(self.retries + 1):
            try:
                async with self.session.post(self.url, data=line,
                                             headers={"Content-Type": "application/json"}) as resp:
                    if resp.status < 500 and resp.status != 429:
                        if resp.status >= 400:
                            raise RuntimeError(f"{self.url} answered {resp.status}")
                        return
                    why = f"{self.url} answered {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                why = f"{self.url}: {exc!r}"
            if attempt < self.retries:
                await asyncio.sleep(0.5 * 2 ** attempt)
        raise RuntimeError(why)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class Answers:
    """The configured sinks (``answers:``) and their metrics; one per app."""

    def __init__(self, cfg, metrics):
        a = cfg.answers
        self.cfg = a
        r = metrics.registry
        self.dropped_total = Counter("sse_fixup_answers_dropped", "Assembled answers a sink did not "
                                     "take (queue full or the write failed)", ["sink", "reason"], registry=r)
        self.written = Counter("sse_fixup_answers_written", "Assembled answers a sink took",
                               ["sink"], registry=r)
        self.sinks: list[Sink] = []
        if a.jsonl:
            self.sinks.append(JSONLSink(self, a.queue_size, a.jsonl, a.jsonl_max_bytes, a.jsonl_keep))
        if a.post:
            self.sinks.append(PostSink(self, a.queue_size, a.post, a.post_timeout, a.post_retries))
        self._last_log = 0.0

    def __bool__(self):
        return bool(self.sinks)

    def tap(self):
        cap = self.cfg.max_answer_bytes
        return lambda ctx, shape: Assembly(ctx, "stream" if shape == "stream" else "body", cap)

    def dropped(self, sink: str, reason: str, exc=None) -> None:
        self.dropped_total.labels(sink, reason).inc()
        now = time.monotonic()
        if now - self._last_log > 10:            # a dead sink must not flood the log either
            self._last_log = now
            log.warning("answers: %s sink dropped a record (%s)%s", sink, reason, f": {exc}" if exc else "")

    def submit(self, record: dict) -> None:
        """Never waits: a full queue drops the record (counted)."""
        line = orjson.dumps(record, default=str) + b"\n"
        for sink in self.sinks:
            sink.offer(line)

    async def lifecycle(self, app):
        for sink in self.sinks:
            sink.task = asyncio.ensure_future(sink.run())
        yield
        for sink in self.sinks:           # what is queued gets a moment, then is dropped
            try:
                await asyncio.wait_for(sink.queue.join(), 2.0)
            except TimeoutError:
                pass
            sink.task.cancel()
            try:
                await sink.task
            except asyncio.CancelledError:
                pass
            await sink.close()
