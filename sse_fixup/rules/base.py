"""What every rule is, and what it gets to see.

A rule is a small class: ``name`` (its YAML name), a docstring whose first line is
its one-line description, the ``endpoint`` and ``mode`` it serves, and ``touches``:
the events it may touch and the byte evidence that an event cannot need it
(``touch.py``).  Two hooks: ``apply`` patches one parsed event, ``finish`` adds events at
the end of the stream.  A rule with state of its own sets it up in ``__init__``, and the
chain makes one object of it per response (a rule without ``__init__`` is made once and
shared); facts several rules share live on the ``StreamContext``.
"""

from __future__ import annotations

import secrets
import time
from contextvars import ContextVar
from typing import Any, ClassVar

import orjson

from .touch import Touch

Result = bool | list | None
"""``apply`` returns None/False (unchanged), True (changed in place) or a list of
replacement events (dicts) - 0..n, the event itself included where it should stay."""


CONVERSATION = frozenset({"messages", "input", "instructions", "prompt"})


class RequestInfo:
    """The parts of the client's request that rules may use (all but the conversation)."""

    __slots__ = ("endpoint", "path", "model", "stream", "tools", "body")

    def __init__(self, endpoint: str, path: str = "", body: dict | None = None):
        self.endpoint = endpoint
        self.path = path
        body = body if isinstance(body, dict) else {}
        # the conversation can be megabytes and no rule reads it: not kept for the stream
        self.body = {k: v for k, v in body.items() if k not in CONVERSATION} \
            if CONVERSATION.intersection(body) else body
        model = self.body.get("model")
        self.model = model if isinstance(model, str) else None
        self.stream = bool(self.body.get("stream"))
        tools = self.body.get("tools")
        self.tools = tools if isinstance(tools, list) else []

    def get(self, field: str, default: Any = None) -> Any:
        return self.body.get(field, default)


class Fault:
    """Why a stream could not end normally: a code for clients and metrics, and a message."""

    __slots__ = ("code", "message")

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"Fault({self.code!r}, {self.message!r})"


class StreamContext:
    """Per-stream state: one per proxied response, shared by the rules of one chain."""

    __slots__ = ("request", "started", "applied", "failures", "non_json", "fault", "events",
                 "patched", "done_seen", "finished", "chunk_seen", "response_id", "envelope", "counters",
                 "status")

    def __init__(self, request: RequestInfo):
        self.request = request
        self.started = now()
        self.applied: dict[str, int] = {}     # rule name -> events it changed
        self.failures: dict[str, str] = {}    # rule name -> first error (logged once)
        self.non_json = 0                     # events passed on because they were not JSON
        self.fault: Fault | None = None       # why the stream was cut short (at close)
        self.events = 0                       # data events seen
        self.patched = 0                      # events sent changed
        # facts several rules share
        self.done_seen = False                # upstream sent data: [DONE]
        self.finished = False                 # chat: a finish_reason was sent (or added)
        self.chunk_seen = False               # chat: a chunk with choices was parsed
        self.response_id: str | None = None   # responses: the one id of this stream
        self.envelope: Envelope | None = None  # chat: id, created, model of the stream
        self.counters: dict[str, int] = {}    # YAML ``counter`` actions, by counter name
        self.status = 200                     # the HTTP status of an answer made by the proxy

    def mark(self, rule_name: str) -> None:
        self.applied[rule_name] = self.applied.get(rule_name, 0) + 1


class Envelope:
    """A chat stream's envelope, fixed by its first chunk (``chat.envelope``)."""

    __slots__ = ("id", "created", "model", "needles")

    def __init__(self, id: str, created: int, model: str, order=()):
        self.id = id
        self.created = created
        self.model = model
        # a chunk holding these exact bytes carries the envelope already (compact JSON);
        # fields that sit side by side in the first chunk (``order``: its keys) make one
        # needle, so that the usual chunk is vouched for by one or two scans, not four
        fields = {"id": b'"id":' + orjson.dumps(id), "created": b'"created":%d' % created,
                  "object": b'"object":"chat.completion.chunk"', "model": b'"model":' + orjson.dumps(model)}
        runs: list[list[bytes]] = []
        last = None
        for key in order:
            if key in fields:
                if last is None:
                    runs.append([])
                runs[-1].append(fields.pop(key))
                last = key
            else:
                last = None
        self.needles = tuple(b",".join(run) for run in runs) + tuple(fields.values())


def choices_of(obj: dict) -> list:
    """``obj["choices"]`` when it is a list, else nothing to iterate."""
    choices = obj.get("choices")
    return choices if isinstance(choices, list) else []


class Minting:
    """The clock readings and random ids one response's rules took, in order: recorded for
    a capture, and given back in the same order when it is replayed, so that the replay
    sends the very bytes the proxy sent."""

    __slots__ = ("taken", "replay")

    def __init__(self, replay: list | None = None):
        self.taken: list = []
        self.replay = list(reversed(replay)) if replay else []

    def value(self, kind: str, make):
        if self.replay:
            got_kind, value = self.replay.pop()
            if got_kind == kind:
                return value
        value = make()
        self.taken.append((kind, value))
        return value


MINTING: ContextVar[Minting | None] = ContextVar("sse_fixup_minting", default=None)


def now() -> int:
    """Unix seconds; one seam for tests that need a fixed clock (and for captures)."""
    rec = MINTING.get()
    return int(time.time()) if rec is None else rec.value("now", lambda: int(time.time()))


def token() -> str:
    """Random hex for minted ids; one seam for tests that need fixed ids (and for captures)."""
    rec = MINTING.get()
    return secrets.token_hex(12) if rec is None else rec.value("token", lambda: secrets.token_hex(12))


def mint_id(prefix: str) -> str:
    return prefix + token()


class Rule:
    """Base class; see the module docstring."""

    name: ClassVar[str] = ""
    endpoint: ClassVar[str] = ""            # "responses" | "chat"
    mode: ClassVar[str] = "stream"          # "stream" | "body"
    touches: ClassVar[tuple[Touch, ...]] = (Touch(),)   # default: every event, always parsed
    fixes: ClassVar[str] = ""               # defect ids of stream-defects.md

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def apply(self, obj: dict, ctx: StreamContext) -> Result:
        """Patch one parsed event in place (return True), leave it (None), or return the
        events to send instead (dicts; ``obj`` itself among them where it stays)."""
        return None

    def finish(self, ctx: StreamContext) -> list:
        """Once, at the end: before upstream's ``data: [DONE]`` (``ctx.done_seen``) or at
        the end of the upstream stream (``ctx.fault`` set when it was cut short).  Events
        to add there (dicts, or ``sse.Event``)."""
        return []
