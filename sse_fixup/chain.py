"""The rule chain: where an event is patched.

``StreamChain.feed`` takes one upstream read and returns the bytes to send for it, at
three costs, cheapest first:

1. byte copy - the rules vouch from the raw bytes that they touch none of the read's
   complete events (``Rule.region_ok``): they go out undecoded;
2. decoded, not parsed - no rule ``wants`` an event (by its name or a byte needle):
   its raw bytes go out;
3. patched - the JSON is parsed once, every interested rule runs on the same dict, and
   it is encoded once, replacing only the ``data:`` line.

A rule that raises leaves the event as it came (logged once per stream, counted).
"""

from __future__ import annotations

import logging

import orjson

from .rules.base import RequestInfo, Rule, StreamContext
from .sse import Decoder, Event, Region, encode, reencode

log = logging.getLogger("sse_fixup.chain")


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
        # event name -> the rules that may want it, in chain order, each with "must ask":
        # a rule with only the default wants() is decided by its types, without a call
        self._plans: dict[str | None, tuple] = {}
        # every rule can vouch for a whole read at once: then the read may skip decoding
        self._regional = all(r.region_ok is not None for r in self.rules)

    def start(self, request: RequestInfo) -> StreamContext:
        return StreamContext(request)

    def feed(self, decoder: Decoder, chunk: bytes, ctx: StreamContext) -> bytes:
        """One upstream read in, the bytes to send for it out (possibly empty).

        The byte-copy path: the read's complete events (from the decoder's next event
        boundary on) go out as they came, undecoded, if every rule vouches from the raw
        bytes that it would touch none of them (``Rule.region_ok``); a run that fails is
        halved until the events that need the rules are found.
        """
        first = chunk.find(b"\n\n")
        # (a read of one event is cheaper decoded: the rules' byte checks are the same)
        if self._regional and first >= 0 and chunk.find(b"\n\n", first + 2) >= 0 \
                and b"\r" not in chunk:
            start = decoder.boundary(chunk)
            # complete events only, and not [DONE]: the rules' on_done hooks run before it
            done = chunk.find(b"data: [DONE]")
            end = chunk.rfind(b"\n\n", 0, done if done >= 0 else len(chunk)) + 2
            # (a run longer than limits.max_event_bytes may hold an oversized event: the
            # decoder is the one that enforces the limit)
            limit = decoder.max_event
            if 0 <= start < end and (limit is None or end - start <= limit):
                head = self._decode(decoder, chunk[:start], ctx) if start else b""
                body = self._span(decoder, chunk[start:end] if start or end < len(chunk) else chunk, ctx)
                tail = self._decode(decoder, chunk[end:], ctx) if end < len(chunk) else b""
                return head + body + tail if head or tail else body
        return self._decode(decoder, chunk, ctx)

    def _span(self, decoder: Decoder, span: bytes, ctx: StreamContext, depth: int = 0) -> bytes:
        """Complete events from a boundary: as they are if every rule vouches for them, else
        halved until the events that need the rules are found (and decoded)."""
        region = Region(span)
        n = region.n
        if n and all(r.region_ok(region, ctx) for r in self.rules):
            ctx.events += n
            return span
        if n > 4 and depth < 16:
            mid = span.find(b"\n\n", len(span) // 2) + 2
            if 1 < mid < len(span):
                left = self._span(decoder, span[:mid], ctx, depth + 1)   # its state first
                return left + self._span(decoder, span[mid:], ctx, depth + 1)
        return self._decode(decoder, span, ctx)

    def _decode(self, decoder: Decoder, chunk: bytes, ctx: StreamContext) -> bytes:
        evs = decoder.feed(chunk)
        return self._process_all(evs, ctx) if evs else b""

    def _process_all(self, evs: list[Event], ctx: StreamContext) -> bytes:
        process = self.process
        if len(evs) == 1:
            ev = evs[0]
            out = process(ev, ctx)
            ctx.events += 1
            ctx.patched += out is not ev.raw
            return out
        pieces = []
        patched = 0
        for ev in evs:
            piece = process(ev, ctx)
            patched += piece is not ev.raw
            pieces.append(piece)
        ctx.events += len(evs)
        ctx.patched += patched
        return b"".join(pieces)

    def process(self, ev: Event, ctx: StreamContext) -> bytes:
        data = ev.data
        if data is None:
            return ev.raw                               # comment, blank line, retry/id only
        if data == b"[DONE]":
            ctx.done_seen = True
            return self._before_done(ev, ctx)
        plan = self._plans.get(ev.event)
        if plan is None:
            plan = self._plan(ev.event)
        if not plan:
            return ev.raw
        wanted = [r for r, ask in plan if not ask or r.wants(ev, ctx)]
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

    def _plan(self, name: str | None) -> tuple:
        plan = []
        for rule in self.rules:
            if type(rule).wants is not Rule.wants:
                plan.append((rule, True))
            elif rule.types is None or name is None or name in rule.types:
                plan.append((rule, False))
        plan = tuple(plan)
        if len(self._plans) < 256:          # names come from upstream: keep the map bounded
            self._plans[name] = plan
        return plan

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
        for chunk in chunks:
            out = self.feed(decoder, chunk, ctx)
            if out:
                yield out
        yield self.end(decoder, ctx)

    def end(self, decoder: Decoder, ctx: StreamContext) -> bytes:
        """At the end of the upstream stream: its unterminated tail - unless the stream was
        cut short (``ctx.fault``), when a partial event would only break the client - then
        what the rules add (``finish``)."""
        evs = decoder.close() if ctx.fault is None else []
        head = self._process_all(evs, ctx) if evs else b""
        return head + self.finish(ctx, evs[-1] if evs else None)

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
        if len(out) == 1 and out[0] is obj:
            return reencode(ev, orjson.dumps(obj))
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
