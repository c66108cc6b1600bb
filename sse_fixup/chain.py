"""The rule chain: where an event is patched.

``StreamChain.process`` takes one decoded event and returns the bytes to send for it.
The common case costs no parse at all: if no rule ``wants`` the event, its raw bytes
go out as they came.  Otherwise the JSON is parsed once, every interested rule runs on
the same dict, and it is encoded once.  A rule that raises leaves the event as it came
(logged once per stream, counted).
"""

from __future__ import annotations

import logging

import orjson

from .rules.base import RequestInfo, Rule, StreamContext
from .sse import Decoder, Event, encode, reencode

log = logging.getLogger("sse_fixup.chain")

DONE = b"data: [DONE]\n\n"


class RuleFailed(Exception):
    pass


def _fail(ctx: StreamContext, rule: Rule, exc: Exception) -> None:
    if rule.name not in ctx.failures:
        ctx.failures[rule.name] = f"{type(exc).__name__}: {exc}"
        log.warning("rule %s failed on %s %s (event passed unchanged; logged once per stream): %s",
                    rule.name, ctx.request.endpoint, ctx.request.path, ctx.failures[rule.name])


class StreamChain:
    """An ordered list of stream rules for one endpoint."""

    def __init__(self, endpoint: str, rules: list[Rule]):
        self.endpoint = endpoint
        self.rules = list(rules)
        self.named_events = endpoint == "responses"   # Responses events carry an event: line

    def start(self, request: RequestInfo) -> StreamContext:
        return StreamContext(request)

    def process(self, ev: Event, ctx: StreamContext) -> bytes:
        if ev.data is None:
            return ev.raw                               # comment, blank line, retry/id only
        if ev.data == b"[DONE]":
            ctx.done_seen = True
            return self._before_done(ev, ctx)
        wanted = [r for r in self.rules if r.wants(ev, ctx)]
        if not wanted:
            return ev.raw
        obj = ev.json
        if obj is None:
            ctx.non_json += 1
            return ev.raw
        try:
            out = self._run(obj, wanted, 0, ctx)
        except RuleFailed:
            return ev.raw
        if out is None:
            return ev.raw
        return self._encode(out, ev, obj)

    def finish(self, ctx: StreamContext, last: Event | None = None) -> bytes:
        """Events the rules add at upstream EOF."""
        pieces: list[bytes] = []
        for i, rule in enumerate(self.rules):
            try:
                extra = rule.finish(ctx)
            except Exception as exc:  # noqa: BLE001 - a rule never breaks the stream
                _fail(ctx, rule, exc)
                continue
            for item in extra:
                pieces.append(self._emit_one(item, ctx, i + 1))
        if not pieces:
            return b""
        # an unterminated tail must not swallow what we add after it
        lead = b"\n\n" if last is not None and not last.terminated else b""
        return lead + b"".join(pieces)

    def replay(self, chunks, request: RequestInfo):
        """Offline use (``sse-fixup replay``, tests): yield the output for each chunk."""
        ctx = self.start(request)
        decoder = Decoder()
        last = None
        for chunk in chunks:
            out = [self.process(ev, ctx) for ev in decoder.feed(chunk)]
            if out:
                yield b"".join(out)
        for ev in decoder.close():
            last = ev
            yield self.process(ev, ctx)
        yield self.finish(ctx, last)

    # -- internals -------------------------------------------------------------------

    def _before_done(self, ev: Event, ctx: StreamContext) -> bytes:
        pieces: list[bytes] = []
        for i, rule in enumerate(self.rules):
            try:
                extra = rule.on_done(ctx)
            except Exception as exc:  # noqa: BLE001
                _fail(ctx, rule, exc)
                continue
            for item in extra:
                pieces.append(self._emit_one(item, ctx, i + 1))
        if not pieces:
            return ev.raw
        pieces.append(ev.raw)
        return b"".join(pieces)

    def _emit_one(self, item, ctx: StreamContext, start: int) -> bytes:
        if isinstance(item, bytes):
            return item
        try:
            out = self._run(item, self.rules, start, ctx)
        except RuleFailed:
            out = None
        return b"".join(self._encode_new(o) for o in (out if out is not None else [item]))

    def _run(self, obj: dict, rules: list[Rule], start: int, ctx: StreamContext) -> list | None:
        """Apply ``rules[start:]`` to ``obj``; None if nothing changed, else the events."""
        changed = False
        typ = obj.get("type")
        for j in range(start, len(rules)):
            rule = rules[j]
            types = rule.types
            if types is not None and typ not in types:
                continue
            try:
                res = rule.apply(obj, ctx)
            except Exception as exc:  # noqa: BLE001
                _fail(ctx, rule, exc)
                raise RuleFailed from exc
            if res is True:
                changed = True
                ctx.mark(rule.name)
                typ = obj.get("type")
            elif isinstance(res, list):
                ctx.mark(rule.name)
                out: list = []
                for item in res:
                    if isinstance(item, dict):
                        sub = self._run(item, rules, j + 1, ctx)
                        if sub is None:
                            out.append(item if item is not obj or changed else _Unchanged(item))
                        else:
                            out.extend(sub)
                    else:
                        out.append(item)
                return out
        return [obj] if changed else None

    def _encode(self, out: list, ev: Event, obj: dict) -> bytes:
        pieces = []
        for item in out:
            if isinstance(item, _Unchanged):
                pieces.append(ev.raw)
            elif item is obj:
                pieces.append(reencode(ev, orjson.dumps(obj)))
            else:
                pieces.append(self._encode_new(item))
        return b"".join(pieces)

    def _encode_new(self, item) -> bytes:
        if isinstance(item, bytes):
            return item
        if isinstance(item, _Unchanged):
            item = item.obj
        name = item.get("type") if self.named_events else None
        return encode(orjson.dumps(item), name if isinstance(name, str) else None)


class _Unchanged:
    """Marks the original event inside a replacement list when no rule changed it."""

    __slots__ = ("obj",)

    def __init__(self, obj: dict):
        self.obj = obj


class BodyChain:
    """Rules for complete (non-stream) JSON bodies: the body is one event."""

    def __init__(self, endpoint: str, rules: list[Rule]):
        self.endpoint = endpoint
        self.rules = list(rules)

    def process(self, body: bytes, request: RequestInfo) -> tuple[bytes, StreamContext]:
        ctx = StreamContext(request)
        if not self.rules:
            return body, ctx
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            ctx.non_json += 1
            return body, ctx
        if not isinstance(obj, dict):
            ctx.non_json += 1
            return body, ctx
        changed = False
        for rule in self.rules:
            try:
                res = rule.apply(obj, ctx)
            except Exception as exc:  # noqa: BLE001
                _fail(ctx, rule, exc)
                return body, ctx
            if res:
                changed = True
                ctx.mark(rule.name)
        return (orjson.dumps(obj) if changed else body), ctx
