"""One response, one transform: upstream bytes in, the client's bytes out.

    reader  ──▶  stages: converters, the rule chain, … the writer
    bytes → events          events → events            events → bytes

``feed(chunk)`` returns at once what is ready for one upstream read; ``close(fault)``
returns the rest at the end (the terminal events of a stream cut short by ``fault``).
The proxy's pump, ``sse-fixup replay`` and the tests all drive this object, so what
the proxy sends is what they see.

Readers (``sse.Decoder``, ``BodyReader``) turn bytes into ``sse.Event``s.  Every stage -
a converter from one dialect to another, the rule chain, and last the writer of the
client's dialect - is one kind of object: ``push(events)`` and ``end()``,
returning events (the writer: bytes).  The fast path: when the stages hand back the very list they got (no event changed) and
the read held exactly those events, the read goes out as it came.  That is the byte
string the writer would have joined, so the fast path cannot differ from the slow one.
Plain ``data:`` events may even skip decoding (``ChainStage.skim``): the chain asks
the same per-event question of each event where it lies in the read.
"""

from __future__ import annotations

import orjson

from .rules.base import Fault, StreamContext
from .sse import Event, encode, reencode


class BodyReader:
    """A complete (non-stream) body is one event, read when the body has ended."""

    __slots__ = ("_parts", "overflow", "tiled", "idle", "max_event")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.overflow = False
        self.tiled = False
        self.idle = False
        self.max_event = None

    def feed(self, chunk: bytes) -> list[Event]:
        self._parts.append(chunk)
        return []

    def close(self) -> list[Event]:
        body = b"".join(self._parts)
        return [Event(body, None, body)]


class SSEWriter:
    """Events as SSE: untouched ones as their upstream bytes, changed ones re-encoded
    (only their ``data:`` line replaced), new ones encoded (Responses with ``event:``)."""

    __slots__ = ("named", "_open")

    def __init__(self, named: bool):
        self.named = named
        self._open = False          # the last bytes were an unterminated upstream tail

    def end(self) -> bytes:
        return b""

    def push(self, events: list[Event]) -> bytes:
        pieces = []
        for ev in events:
            if self._open:
                pieces.append(b"\n\n")   # what follows must not run into that tail
            if not ev.changed:
                pieces.append(ev.raw)
                self._open = not ev.terminated
                continue
            self._open = False
            if ev.raw is None:
                pieces.append(encode(orjson.dumps(ev.json), ev.event if self.named else None))
            else:
                pieces.append(reencode(ev, orjson.dumps(ev.json)))
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


class JSONWriter:
    """One JSON body: as it came unless a rule changed it."""

    __slots__ = ()

    def end(self) -> bytes:
        return b""

    def push(self, events: list[Event]) -> bytes:
        return b"".join(ev.raw if not ev.changed else orjson.dumps(ev.json) for ev in events)


class Transform:
    """One response: ``feed`` each upstream read, ``close`` at the end.  ``stages`` end
    with the writer."""

    __slots__ = ("reader", "stages", "ctx", "fault", "closed", "_skim", "verbatim")

    def __init__(self, reader, stages: list, ctx: StreamContext):
        self.reader = reader
        self.stages = stages
        self.ctx = ctx
        self.fault: Fault | None = None     # set when the input itself ends the stream
        self.closed = False
        self.verbatim = True                # the writer writes unchanged events as they came
        # SSE in, the rule chain alone, SSE out: a read may be vouched for undecoded
        self._skim = stages[0].skim if len(stages) == 2 and isinstance(stages[1], SSEWriter) \
            and hasattr(stages[0], "skim") else None

    def head(self) -> bytes:
        """What the writer sends before any upstream byte (a dialect's start, a status)."""
        head = getattr(self.stages[-1], "head", None)
        return head() if head is not None else b""

    def tapped(self) -> None:
        """Stages were added after construction (taps): every event must reach them."""
        self._skim = None

    def feed(self, chunk: bytes) -> bytes:
        if self.fault is not None or self.closed:
            return b""
        if self._skim is None:
            return self._decoded(chunk)
        # the read in three parts: the end of an event begun in an earlier read (decoded),
        # whole events (as they came while no rule can need them), the rest (decoded)
        reader = self.reader
        start = reader.pending_end(chunk)
        end = chunk.rfind(b"\n\n") + 2
        if start < 0 or end <= start:
            return self._decoded(chunk)
        head = self._decoded(chunk[:start]) if start else b""
        if self.fault is not None or not reader.idle:
            return head + self._decoded(chunk[start:])
        pos = self._skim(chunk, start, end, reader.max_event)
        if pos == start:
            return head + self._decoded(chunk[start:])
        body = chunk if start == 0 and pos == len(chunk) else chunk[start:pos]
        if pos < len(chunk):
            return head + body + self._decoded(chunk[pos:])
        return head + body if head else body

    def _decoded(self, chunk: bytes) -> bytes:
        reader = self.reader
        events = reader.feed(chunk)
        if reader.overflow:
            self.fault = Fault("event_too_large", f"an upstream event exceeded "
                               f"limits.max_event_bytes ({reader.max_event} bytes)")
        if not events:
            return b""
        out = events
        for stage in self.stages[:-1]:
            out = stage.push(out)
            if not out:
                return b""
        if out is events and reader.tiled and self.verbatim:
            return chunk                    # no event changed: the bytes as they came
        return self.stages[-1].push(out)

    def close(self, fault: Fault | None = None) -> bytes:
        """The rest, at the end of the upstream body: its unterminated tail - unless the
        stream was cut short (a partial event would only break the client) - then what
        the stages add (terminal events)."""
        if self.closed:
            return b""
        self.closed = True
        fault = self.fault or fault
        self.ctx.fault = fault
        events = self.reader.close() if fault is None else []
        for stage in self.stages[:-1]:
            if events:
                events = stage.push(events)
            tail = stage.end()
            if tail:
                events = events + tail
        writer = self.stages[-1]
        return (writer.push(events) if events else b"") + writer.end()
