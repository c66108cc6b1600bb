"""Incremental Server-Sent Events decoder and encoder.

Follows the WHATWG HTML "event stream" interpretation rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
lines end in CRLF, LF or CR; a blank line dispatches the event; ``data:`` lines are
joined with LF; a line starting with ``:`` is a comment; a field name without a colon
has an empty value; one leading space after the colon is dropped.

Unlike a client-side parser, this decoder is for a proxy: every ``Event`` keeps the
exact bytes it was decoded from (``raw``), comments and unknown fields included, so
an event no rule touches is written out byte for byte.  The concatenation of all
``raw`` values always equals the input, however it is split into chunks: a CR at the
very end of a chunk is held until the next byte says whether it began a CRLF.

Most streams are LF-only and start each read on an event boundary; ``_feed_lf`` takes
those a whole event at a time, ``_feed`` (line by line) everything else.
"""

from __future__ import annotations

import re

import orjson

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"
_NOT_PARSED = object()
_NAMES: dict[bytes, str] = {}   # event names seen, decoded once (a stream repeats a few dozen)


class Event:
    """One dispatched SSE event (or, at EOF, an unterminated tail).

    ``data`` is the joined ``data:`` payload as bytes (``None`` when the block had no
    data field: a comment-only block or stray blank line).  ``json`` parses ``data``
    once, lazily; it is ``None`` for anything that is not a JSON object.  ``raw`` is
    ``None`` for an event made by the proxy (``Event.new``).
    """

    __slots__ = ("raw", "event", "data", "id", "retry", "terminated", "_json", "changed")

    def __init__(self, raw: bytes, event: str | None = None, data: bytes | None = None,
                 id: str | None = None, retry: int | None = None, terminated: bool = True):
        self.raw = raw
        self.event = event
        self.data = data
        self.id = id
        self.retry = retry
        self.terminated = terminated
        self._json = _NOT_PARSED
        self.changed = False     # a rule changed ``json``: the writer encodes it anew

    @classmethod
    def new(cls, obj: dict, event: str | None = None) -> "Event":
        """An event made by a rule or converter: no upstream bytes, only ``obj``."""
        ev = cls(None, event)
        ev._json = obj
        ev.changed = True
        return ev

    @property
    def json(self) -> dict | None:
        if self._json is _NOT_PARSED:
            obj = None
            data = self.data
            if data and (data[0] == 0x7B or data.lstrip()[:1] == b"{"):
                try:
                    obj = orjson.loads(data)
                except orjson.JSONDecodeError:
                    obj = None
                if not isinstance(obj, dict):
                    obj = None
            self._json = obj
        return self._json

    def __repr__(self) -> str:
        return f"Event(event={self.event!r}, data={self.data!r})"


class Decoder:
    """Feed bytes in any chunking; get complete events out as soon as they end."""

    __slots__ = ("_tail", "_raw", "_event", "_data", "_id", "_retry", "_started",
                 "max_event", "overflow", "tiled")

    def __init__(self, max_event: int | None = None) -> None:
        # past max_event bytes in one event the decoder stops: ``overflow`` is set, the
        # oversized event and everything after it are discarded (the caller ends the stream)
        self.max_event = max_event
        self.overflow = False
        self._tail = b""        # an incomplete line carried to the next chunk
        self._raw: list[bytes] = []   # complete lines of the event being built
        self._event: str | None = None
        self._data: list[bytes] | None = None
        self._id: str | None = None
        self._retry: int | None = None
        self._started = False   # BOM check done
        # the last feed's events are exactly its chunk, byte for byte: nothing was
        # pending before it and nothing is left after it (a writer may pass the chunk on)
        self.tiled = False

    @property
    def idle(self) -> bool:
        """On an event boundary with nothing pending: a read may start a new event."""
        return self._started and not self._tail and not self._raw and not self.overflow

    def pending_end(self, chunk: bytes) -> int:
        """Where in ``chunk`` (LF line ends only) the event in progress ends: after
        ``feed(chunk[:i])`` the decoder is ``idle``.  0 when it is already; -1 when that
        end is not in ``chunk``, or cannot be told from it (CR, no BOM check yet)."""
        if not self._started or self.overflow or b"\r" in chunk:
            return -1
        if not self._tail and not self._raw:
            return 0
        if not self._tail and chunk[:1] == b"\n":
            return 1                          # the blank line that ends the pending event
        i = chunk.find(b"\n\n")
        return i + 2 if i >= 0 else -1

    def feed(self, chunk: bytes) -> list[Event]:
        self.tiled = False
        if not chunk or self.overflow:
            return []
        i = self.pending_end(chunk)
        if i == 0:
            events = self._feed_lf(chunk)
            self.tiled = not self._tail and not self._raw and not self.overflow
            return events
        if 0 < i < len(chunk):                # finish the pending event, then block-wise
            events = self._feed(chunk[:i])
            if not self.overflow:
                events.extend(self._feed_lf(chunk[i:]))
            return events
        return self._feed(chunk)

    def _feed_lf(self, buf: bytes) -> list[Event]:
        """The common case - LF line ends, starting on an event boundary - a block at a time.

        Same events and raws as ``_feed``: a block is everything up to a blank line; a
        blank line on its own is an event of its own.
        """
        events: list[Event] = []
        pos = 0
        end = buf.rfind(b"\n\n")
        limit = self.max_event
        while pos <= end:
            if buf[pos] == 10:                      # a stray blank line
                events.append(Event(b"\n"))
                pos += 1
                continue
            i = buf.find(b"\n\n", pos)
            raw = buf[pos:i + 2]
            if limit is not None and len(raw) > limit:
                return self._overflow(events)
            j = buf.find(b"\n", pos, i)
            if j < 0 and raw[:6] == b"data: ":                  # one data: line
                events.append(Event(raw, None, buf[pos + 6:i], self._id))
            elif j >= 0 and raw[:7] == b"event: " and buf.startswith(b"data: ", j + 1) \
                    and buf.find(b"\n", j + 1, i) < 0:          # event: + one data: line
                name = buf[pos + 7:j]
                event = _NAMES.get(name)
                if event is None:
                    event = name.decode("utf-8", "replace")
                    if len(_NAMES) < 1024:
                        _NAMES[name] = event
                events.append(Event(raw, event, buf[j + 7:i], self._id))
            else:
                for line in buf[pos:i].split(b"\n"):
                    self._field(line)
                data = self._data
                events.append(Event(raw, self._event, b"\n".join(data) if data is not None else None,
                                    self._id, self._retry))
                self._event = self._data = self._retry = None
            pos = i + 2
        if pos < len(buf):
            events.extend(self._feed(buf[pos:]))
        return events

    def _feed(self, chunk: bytes, final: bool = False) -> list[Event]:
        events: list[Event] = []
        buf = self._tail + chunk if self._tail else chunk
        pos = 0
        if not self._started:
            if not final and len(buf) < 3 and _BOM.startswith(buf):
                self._tail = buf
                return events
            self._started = True
            if buf.startswith(_BOM):
                self._raw.append(_BOM)
                pos = 3
        # a CR at the very end may be the first half of a CRLF: wait for the next byte
        stop = len(buf) - 1 if not final and buf[-1:] == b"\r" else len(buf)
        for m in _LINE_END.finditer(buf, pos, stop):
            start = m.start()
            end = m.end()
            self._raw.append(buf[pos:end])
            if start == pos:
                ev = self._dispatch()
                if ev is not None:
                    if self.max_event is not None and len(ev.raw) > self.max_event:
                        return self._overflow(events)
                    events.append(ev)
            else:
                self._field(buf[pos:start])
            pos = end
        self._tail = buf[pos:]
        if self.max_event is not None and \
                len(self._tail) + sum(map(len, self._raw)) > self.max_event:
            return self._overflow(events)
        return events

    def _overflow(self, events: list[Event]) -> list[Event]:
        self.overflow = True
        self._tail = b""
        self._raw = []
        self._data = None
        return events

    def close(self) -> list[Event]:
        """At EOF: whatever was not dispatched, as one unterminated event (never dropped)."""
        if self.overflow:
            return []
        events = self._feed(b"", final=True) if self._tail else []
        if self._tail:                      # a last line without its line end
            self._field(self._tail)
            self._raw.append(self._tail)
            self._tail = b""
        if self._raw:
            ev = self._dispatch()
            ev.terminated = False
            events.append(ev)
        return events

    def _field(self, line: bytes) -> None:
        if line[:1] == b":":
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            if self._data is None:
                self._data = [value]
            else:
                self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\0" not in value:
                self._id = value.decode("utf-8", "replace")
        elif name == b"retry":
            if value.isdigit():
                self._retry = int(value)

    def _dispatch(self) -> Event | None:
        raw = b"".join(self._raw)
        self._raw = []
        data = self._data
        ev = Event(raw, self._event, b"\n".join(data) if data is not None else None,
                   self._id, self._retry)
        self._event = None
        self._data = None
        self._retry = None
        return ev if raw else None


def encode(data: bytes, event: str | None = None) -> bytes:
    """A new event: ``event:`` line (if any), one ``data:`` line per payload line."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    if b"\n" in data or b"\r" in data:
        lines = _LINE_END.split(data)
        return head + b"".join(b"data: " + ln + b"\n" for ln in lines) + b"\n"
    return head + b"data: " + data + b"\n\n"


def reencode(ev: Event, data: bytes) -> bytes:
    """``ev`` with its payload replaced by ``data``; every other line kept as it was.

    The new payload takes the place of the first ``data:`` line; later ``data:`` lines
    of the same event are dropped.  An unterminated tail gets its blank line.
    """
    raw = ev.raw
    old = ev.data
    # the common shape: LF endings, one data: line, last in the event - splice it
    if old is not None and raw[-2:] == b"\n\n" and b"\n" not in old:
        start = len(raw) - len(old) - 2
        if start >= 6 and raw[start - 6:start] == b"data: " and (start == 6 or raw[start - 7] == 10) \
                and b"\r" not in raw and b"\n" not in data:
            return raw[:start] + data + b"\n\n"
    out: list[bytes] = []
    placed = False
    pos = 0
    if raw.startswith(_BOM):
        out.append(_BOM)
        pos = 3
    for m in _LINE_END.finditer(raw, pos):
        line = raw[pos:m.start()]
        if line == b"":
            pos = m.end()
            continue
        if line[:5] == b"data:" or line == b"data":
            if not placed:
                out.append(encode(data)[:-1])
                placed = True
        else:
            out.append(raw[pos:m.end()])
        pos = m.end()
    tail = raw[pos:]
    if tail and not (tail[:5] == b"data:" or tail == b"data"):
        out.append(tail + b"\n")
    if not placed:
        out.append(encode(data)[:-1])
    out.append(b"\n")
    return b"".join(out)
