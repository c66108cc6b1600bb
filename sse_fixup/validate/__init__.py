"""A strict validator for what a backend (or the proxy) sends, with no client library.

``StreamValidator(endpoint)`` takes a stream's events one by one (``sse.Event`` or
parsed objects) and gives ``Finding``s: each names the event by its position, the field,
what is wrong, the defect id of the catalogue, the clients it breaks and the built-in
rule that repairs it.  ``check_body`` does the same for a non-stream JSON body.  The
field tables are in ``fields.py``, the state machines in ``state.py``; ``live.py`` runs
the validator on a sample of live streams.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import fields as F
from .catalogue import DEFECTS, OPENAI_PY
from .state import ChatState, ResponsesState


@dataclass(frozen=True)
class Finding:
    position: int | None      # the event's position among the stream's data events (None: the stream)
    event: str                # its type ("chunk", "[DONE]", "body", "stream")
    field: str
    problem: str
    defect: str = ""
    clients: tuple = ()
    rule: str = ""

    @property
    def kind(self) -> str:
        """One label per kind of problem (metrics, "first of each kind" logging)."""
        return self.defect or f"{self.event}:{self.field}"

    def where(self) -> str:
        return "stream" if self.position is None else f"#{self.position} {self.event}"

    def describe(self) -> str:
        text = f"{self.where()}: {self.field} {self.problem}"
        if self.defect:
            text += f" [{self.defect}]"
        if self.clients:
            text += f"; breaks {', '.join(self.clients)}"
        text += f"; fixed by {self.rule}" if self.rule else "; no built-in rule fixes it"
        return text

    def as_dict(self) -> dict:
        return {"position": self.position, "event": self.event, "field": self.field,
                "problem": self.problem, "defect": self.defect,
                "defect_title": DEFECTS.get(self.defect.split("(")[0], ""),
                "clients": list(self.clients), "rule": self.rule}


def _findings(position, event, problems) -> list[Finding]:
    return [Finding(position, event, path, what, defect, tuple(clients), rule)
            for path, what, defect, clients, rule in problems]


def check_event(obj, endpoint: str, name: str | None = None) -> list[tuple]:
    """The field problems of one event (no stream state)."""
    if endpoint == "responses":
        return _responses_event(obj, name)
    return _chat_chunk(obj)


def _responses_event(obj, name):
    if not isinstance(obj, dict):
        return [("data", "not a JSON object", "", (OPENAI_PY,), "")]
    typ = obj.get("type")
    if typ is None:
        if "error" in obj:
            return [("type", "missing: a bare error block (no error event, no response.failed)",
                     "llama#13", (OPENAI_PY, *F.BOTH_AISDK, F.SPEC), "responses.error_event")]
        return [("type", "missing", "", (OPENAI_PY, *F.BOTH_AISDK, F.SPEC), "")]
    spec = F.EVENTS.get(typ)
    if spec is None:
        return []          # not a type strict clients model: they skip it, so do we
    out = []
    if name is not None and name != typ:
        out.append(("event", f"SSE event name {name!r} differs from type {typ!r}", "", (F.SPEC,), ""))
    out += F.check(obj, spec, "", F.event_meta(typ))
    if typ == "error":
        out += _error_event(obj)
    if typ in F.LIFECYCLE and isinstance(obj.get("response"), dict):
        out += F.check_response(obj["response"], "response", typ)
    elif typ in ("response.output_item.added", "response.output_item.done") and "item" in obj:
        out += F.check_item(obj["item"], "item", done=typ.endswith(".done"))
    elif typ in ("response.content_part.added", "response.content_part.done") and "part" in obj:
        out += F.check_part(obj["part"], "part")
    return out


def _error_event(obj):
    """Both AI SDK lines read a nested ``error`` object; openai-python the flat fields."""
    err = obj.get("error")
    if not isinstance(err, dict):
        return [("error", "missing: the AI SDK reads error.{type, code, message}", "R16",
                 F.BOTH_AISDK, "responses.error_event")]
    out = F.check(err, "type:str message:str ~code:str? ~param:str?", "error",
                  lambda name: ("R2" if name == "code" else "R16", (*F.BOTH_AISDK, F.SPEC),
                                "responses.error_event"))
    if err.get("code") is None:
        out.append(("error.code", "null or missing: the AI SDK 3.0.41 line requires a string", "R2",
                    (F.AISDK_LEGACY,), "responses.error_event"))
    return out


def _chat_chunk(obj):
    if not isinstance(obj, dict):
        return [("data", "not a JSON object", "", (OPENAI_PY,), "")]
    if "error" in obj and "choices" not in obj:
        err = obj["error"]
        msg = err.get("message") if isinstance(err, dict) else err
        return [("error", f"the stream carries an error: {str(msg)[:80]!r}", "", (OPENAI_PY,), "")]
    out = F.check(obj, F.CHUNK, "", F.chat_meta)
    usage = obj.get("usage")
    if isinstance(usage, dict):
        out += F.check(usage, F.CHAT_USAGE, "usage", lambda n: ("", (OPENAI_PY,), ""))
    for ci, choice in enumerate(obj.get("choices") if isinstance(obj.get("choices"), list) else ()):
        where = f"choices[{ci}]"
        if not isinstance(choice, dict):
            out.append((where, "not an object", "", (OPENAI_PY,), ""))
            continue
        out += F.check(choice, F.CHOICE, where, F.chat_meta)
        delta = choice.get("delta")
        if isinstance(delta, dict):
            role = delta.get("role")
            if role is not None and role not in F.ROLES:
                out.append((f"{where}.delta.role", f"{role!r}, not a role", "", (OPENAI_PY,), ""))
            for key in ("content", "refusal"):
                if delta.get(key) is not None and not isinstance(delta[key], str):
                    out.append((f"{where}.delta.{key}", "not a string", "", (OPENAI_PY,), ""))
            calls = delta.get("tool_calls")
            if calls is not None and not isinstance(calls, list):
                out.append((f"{where}.delta.tool_calls", "not a list", "", (OPENAI_PY,), ""))
            for ti, call in enumerate(calls if isinstance(calls, list) else ()):
                cw = f"{where}.delta.tool_calls[{ti}]"
                if not isinstance(call, dict):
                    out.append((cw, "not an object", "C1", (OPENAI_PY,), "chat.tool_call_deltas"))
                    continue
                out += F.check(call, F.TOOL_DELTA, cw, lambda n: (
                    "C1" if n == "index" else "C8", (OPENAI_PY, *F.BOTH_AISDK, F.COMPAT), "chat.tool_call_deltas"))
                fn = call.get("function")
                if isinstance(fn, dict):
                    for key in ("name", "arguments"):
                        if fn.get(key) is not None and not isinstance(fn[key], str):
                            out.append((f"{cw}.function.{key}", "not a string",
                                        "C13" if key == "arguments" else "C10", (OPENAI_PY, *F.BOTH_AISDK),
                                        "chat.tool_call_deltas"))
    return out


class StreamValidator:
    """One stream: ``add`` each event (an ``sse.Event``), then ``end()`` → findings."""

    def __init__(self, endpoint: str, request: dict | None = None):
        """``request``: the client's request body, when known (its model is the one every
        Responses event must name)."""
        self.endpoint = endpoint
        model = request.get("model") if isinstance(request, dict) else None
        self.state = ResponsesState(model if isinstance(model, str) else None) \
            if endpoint == "responses" else ChatState()
        self.findings: list[Finding] = []
        self.position = 0
        self.labels: dict[int, str] = {}     # position -> event type, for the state machine's findings

    def add(self, ev) -> None:
        data = getattr(ev, "data", None)
        obj = ev.json
        if obj is None and data is None:
            return                                   # a comment or keep-alive
        pos = self.position
        self.position += 1
        if obj is None and data is not None and data.strip() == b"[DONE]":
            self.labels[pos] = "[DONE]"
            if self.endpoint == "chat":
                self.state.add(pos, None, done=True)
            return
        name = ev.event if self.endpoint == "responses" else None
        label = obj.get("type") if isinstance(obj, dict) and isinstance(obj.get("type"), str) else \
            ("chunk" if self.endpoint == "chat" else "event")
        self.labels[pos] = label
        if obj is None:
            self.findings.append(Finding(pos, label, "data", f"not JSON: {bytes(data[:60])!r}", "",
                                         (OPENAI_PY,), ""))
            return
        self.findings += _findings(pos, label, check_event(obj, self.endpoint, name))
        self.state.add(pos, obj)

    def add_all(self, events) -> "StreamValidator":
        for ev in events:
            self.add(ev)
        return self

    def end(self) -> list[Finding]:
        for pos, path, what, defect, clients, rule in self.state.end():
            event = "stream" if pos is None else self.labels.get(pos, "event")
            self.findings.append(Finding(pos, event, path, what, defect, tuple(clients), rule))
        self.findings.sort(key=lambda f: (-1 if f.position is None else f.position))
        return self.findings


def check_stream(data: bytes, endpoint: str, request: dict | None = None) -> list[Finding]:
    """All findings of a whole captured SSE stream."""
    from ..sse import Decoder
    d = Decoder()
    return StreamValidator(endpoint, request).add_all(d.feed(data) + d.close()).end()


def check_body(obj, endpoint: str, request: dict | None = None) -> list[Finding]:
    """The findings of one non-stream JSON body (``obj`` parsed, or the raw bytes)."""
    if isinstance(obj, (bytes, bytearray)):
        import orjson
        try:
            obj = orjson.loads(obj)
        except orjson.JSONDecodeError:
            return [Finding(0, "body", "body", "not JSON", "", (OPENAI_PY,), "")]
    if not isinstance(obj, dict):
        return [Finding(0, "body", "body", "not a JSON object", "", (OPENAI_PY,), "")]
    if "error" in obj and "output" not in obj and "choices" not in obj:
        return [Finding(0, "body", "error", f"an error body: {str(obj['error'])[:80]!r}", "", (OPENAI_PY,), "")]
    if endpoint == "responses":
        out = F.check_response(obj, "", None, body=True)
        model = request.get("model") if isinstance(request, dict) else None
        if isinstance(model, str) and isinstance(obj.get("model"), str) and obj["model"] != model:
            out.append(("model", f"{obj['model']!r}, not the requested {model!r}", "llama#12", (F.SPEC,),
                        "responses.body_model_name"))
        return _findings(0, "body", out)
    out = F.check(obj, F.BODY, "", lambda n: F.chat_meta(n, body=True))
    for ci, choice in enumerate(obj.get("choices") if isinstance(obj.get("choices"), list) else ()):
        where = f"choices[{ci}]"
        if not isinstance(choice, dict):
            continue
        out += F.check(choice, F.BODY_CHOICE, where, lambda n: F.chat_meta(n, body=True))
        msg = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        calls = msg.get("tool_calls")
        if isinstance(calls, list) and not calls:
            out.append((f"{where}.message.tool_calls", "[] on a plain answer", "C14", F.BOTH_AISDK, "chat.body"))
        for ti, call in enumerate(calls if isinstance(calls, list) else ()):
            cw = f"{where}.message.tool_calls[{ti}]"
            if isinstance(call, dict):
                out += F.check(call, F.BODY_CALL, cw, lambda n: ("C5", (OPENAI_PY, *F.BOTH_AISDK), "chat.body"))
                fn = call.get("function") if isinstance(call.get("function"), dict) else {}
                out += F.check(fn, "name:str arguments:str", f"{cw}.function",
                               lambda n: ("C13", (OPENAI_PY, *F.BOTH_AISDK), "chat.body"))
        if calls and choice.get("finish_reason") == "stop":
            out.append((f"{where}.finish_reason", "'stop' although the message has tool calls", "E4",
                        (*F.BOTH_AISDK, F.COMPAT), "chat.body"))
        if choice.get("finish_reason") is not None and choice["finish_reason"] not in F.FINISH:
            out.append((f"{where}.finish_reason", f"{choice['finish_reason']!r}, not a finish reason", "E2",
                        (OPENAI_PY,), "chat.body"))
    return _findings(0, "body", out)


from .live import LiveCheck, first_of_kind  # noqa: E402  (live imports Finding from here)

__all__ = ["Finding", "StreamValidator", "check_stream", "check_body", "check_event", "LiveCheck",
           "first_of_kind"]
