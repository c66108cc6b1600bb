"""What every rule is, and what it gets to see.

A rule is a small class: ``name`` (its YAML name), a docstring whose first line is
its one-line description, the ``endpoint`` and ``mode`` it serves, and the event
``types`` it can touch.  The chain asks ``wants()`` before parsing anything, so a
rule that cannot touch an event costs one set lookup, not a JSON parse.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, ClassVar

from ..sse import Event

Result = bool | list | None
"""``apply`` returns None/False (unchanged), True (changed in place) or a list of
replacement events (dicts, or ready-made SSE bytes) - 0..n, the event itself included
where it should stay."""


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

    __slots__ = ("request", "started", "state", "applied", "failures", "non_json", "done_seen",
                 "fault", "events", "patched")

    def __init__(self, request: RequestInfo):
        self.request = request
        self.started = now()
        self.state: dict[str, Any] = {}       # rule name -> that rule's per-stream state
        self.applied: dict[str, int] = {}     # rule name -> events it changed
        self.failures: dict[str, str] = {}    # rule name -> first error (logged once)
        self.non_json = 0                     # events passed on because they were not JSON
        self.done_seen = False                # chat: upstream sent data: [DONE]
        self.fault: Fault | None = None       # set when the stream is cut short (see stream.py)
        self.events = 0                       # events seen
        self.patched = 0                      # events sent changed

    def mark(self, rule_name: str) -> None:
        self.applied[rule_name] = self.applied.get(rule_name, 0) + 1


def choices_of(obj: dict) -> list:
    """``obj["choices"]`` when it is a list, else nothing to iterate."""
    choices = obj.get("choices")
    return choices if isinstance(choices, list) else []


def now() -> int:
    """Unix seconds; one seam for tests that need a fixed clock."""
    return int(time.time())


def token() -> str:
    """Random hex for minted ids; one seam for tests that need fixed ids."""
    return secrets.token_hex(12)


def mint_id(prefix: str) -> str:
    return prefix + token()


class Rule:
    """Base class; see the module docstring."""

    name: ClassVar[str] = ""
    endpoint: ClassVar[str] = ""            # "responses" | "chat"
    mode: ClassVar[str] = "stream"          # "stream" | "body"
    types: ClassVar[frozenset[str] | None] = None   # event types touched; None = any JSON event
    fixes: ClassVar[str] = ""               # defect ids of stream-defects.md

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    # Optional, for the byte-copy path: ``region_ok(region, ctx)`` is True when, from the raw
    # bytes alone, the rule would want none of the ``region.n`` data events in ``region`` (a
    # ``sse.Region``: complete LF-terminated events).  None (the default): cannot tell.
    region_ok = None

    def wants(self, ev: Event, ctx: StreamContext) -> bool:
        """Cheap, before parsing: could this rule touch ``ev``?  False must be certain."""
        types = self.types
        return types is None or ev.event is None or ev.event in types

    def state(self, ctx: StreamContext) -> Any:
        st = ctx.state.get(self.name)
        if st is None:
            st = ctx.state[self.name] = self.new_state()
        return st

    def new_state(self) -> Any:
        return {}

    def apply(self, obj: dict, ctx: StreamContext) -> Result:
        raise NotImplementedError

    def on_done(self, ctx: StreamContext) -> list:
        """Chat streams: events to insert before upstream's ``data: [DONE]``."""
        return []

    def finish(self, ctx: StreamContext) -> list:
        """At the end of the upstream stream - normal EOF, or cut short with ``ctx.fault``
        set: events to append (terminal events, closing items)."""
        return []
