"""Rules for Realtime API server events (the WebSocket's JSON messages), endpoint ``realtime``.

A ``realtime: forward`` route runs each upstream server event through these rules, as a
chain over one connection (``sse_fixup/realtime/forward.py``: one ``ChainStage`` per
WebSocket, each message an ``sse.Event`` whose ``data`` is the message).  They exist
for local Realtime servers whose events LiveKit's OpenAI plugin 1.x rejects (it asserts
``response.id``, ``item.id``, ``item.type`` and ``item_id``, and reads ``usage`` with its
token details for its metrics) and openai-python's ``RealtimeServerEvent`` does not
validate (``event_id``, ``response_id``, ``output_index``, ``content_index`` required).

Order: ``event_id`` first (every event), then the response's identity, then items and
positions (which read the response's id), then usage and the error shape.
"""

from __future__ import annotations

from .base import Rule, StreamContext, mint_id
from .touch import Touch

# events of one response that name it (GA names and the beta ones)
RESPONSE_EVENTS = frozenset({
    "response.output_item.added", "response.output_item.done",
    "response.content_part.added", "response.content_part.done",
    "response.output_text.delta", "response.output_text.done",
    "response.output_audio.delta", "response.output_audio.done",
    "response.output_audio_transcript.delta", "response.output_audio_transcript.done",
    "response.text.delta", "response.text.done", "response.audio.delta", "response.audio.done",
    "response.audio_transcript.delta", "response.audio_transcript.done",
    "response.function_call_arguments.delta", "response.function_call_arguments.done",
    "response.mcp_call_arguments.delta", "response.mcp_call_arguments.done",
})
# events about one content part of an item: item_id, output_index and content_index
PART_EVENTS = frozenset(t for t in RESPONSE_EVENTS if "function_call" not in t and "mcp" not in t
                        and not t.startswith("response.output_item."))
CALL_EVENTS = frozenset({"response.function_call_arguments.delta", "response.function_call_arguments.done"})
# events that carry a whole conversation item
ITEM_EVENTS = frozenset({"response.output_item.added", "response.output_item.done",
                         "conversation.item.added", "conversation.item.done",
                         "conversation.item.created", "conversation.item.retrieved"})
STATUSES = frozenset({"completed", "cancelled", "failed", "incomplete", "in_progress"})


class EventId(Rule):
    """Every server event has an event_id (openai-python's models require it)."""

    name = "realtime.event_id"
    endpoint = "realtime"

    def apply(self, obj: dict, ctx: StreamContext):
        if isinstance(obj.get("event_id"), str) and obj["event_id"]:
            return None
        obj["event_id"] = mint_id("event_")
        return True


class ResponseIds(Rule):
    """response.created/done carry response.id and object; every event of it names it in response_id.

    LiveKit asserts ``response.id``; openai-python requires ``response_id``.  The id minted
    for a response.created is the one its events and its response.done get."""

    name = "realtime.response_ids"
    endpoint = "realtime"
    touches = (Touch(RESPONSE_EVENTS | {"response.created", "response.done"}),)

    def apply(self, obj: dict, ctx: StreamContext):
        typ = obj.get("type")
        if typ in ("response.created", "response.done"):
            resp = obj.get("response")
            if not isinstance(resp, dict):
                resp = obj["response"] = {}
            changed = False
            rid = resp.get("id")
            if not isinstance(rid, str) or not rid:
                # response.done of the response we saw created keeps that id
                resp["id"] = rid = (ctx.response_id if typ == "response.done" and ctx.response_id
                                    else mint_id("resp_"))
                changed = True
            ctx.response_id = rid
            if resp.get("object") != "realtime.response":
                resp["object"] = "realtime.response"
                changed = True
            return changed
        if isinstance(obj.get("response_id"), str) and obj["response_id"]:
            return None
        if ctx.response_id is None:       # an event before any response.created: one made up
            ctx.response_id = mint_id("resp_")
        obj["response_id"] = ctx.response_id
        return True


def _item_type(item: dict) -> str:
    """The item type its fields say (LiveKit asserts ``item.type``)."""
    if "call_id" in item and "output" in item:
        return "function_call_output"
    if "name" in item or "arguments" in item or "call_id" in item:
        return "function_call"
    return "message"


def fix_item(item: dict, known_id: str | None = None) -> bool:
    """``id``, ``type``, ``object`` on a conversation item; True when one was missing."""
    changed = False
    if not isinstance(item.get("id"), str) or not item["id"]:
        item["id"] = known_id or mint_id("item_")
        changed = True
    if not isinstance(item.get("type"), str) or not item["type"]:
        item["type"] = _item_type(item)
        changed = True
    if item.get("object") != "realtime.item":
        item["object"] = "realtime.item"
        changed = True
    if item["type"] == "message" and not isinstance(item.get("content"), list):
        item["content"] = []
        changed = True
    if item["type"] == "message" and item.get("role") not in ("user", "assistant", "system"):
        item["role"] = "assistant"
        changed = True
    if item["type"] == "function_call" and not isinstance(item.get("arguments"), str):
        item["arguments"] = ""
        changed = True
    return changed


class Items(Rule):
    """Items have id, type and object; output_index, item_id, content_index follow the items seen.

    A call's ``call_id``/``name`` come from its output item too.  LiveKit asserts ``item.id``/``item.type`` and looks text deltas up by ``item_id``;
    openai-python requires the indexes.  A value the upstream sent is kept."""

    name = "realtime.items"
    endpoint = "realtime"
    touches = (Touch(RESPONSE_EVENTS | ITEM_EVENTS | {"response.created", "response.done"}),)

    def __init__(self):
        self.outputs: list[dict] = []        # the current response's items, by output_index
        self.parts: dict[str, int] = {}      # item id -> content parts added

    def _index(self, item_id) -> int | None:
        for i, it in enumerate(self.outputs):
            if it.get("id") == item_id:
                return i
        return None

    def apply(self, obj: dict, ctx: StreamContext):
        typ = obj.get("type")
        if typ == "response.created":
            self.outputs, self.parts = [], {}
            return None
        if typ == "response.done":
            return self._done(obj)
        changed = False
        if typ in ITEM_EVENTS:
            item = obj.get("item")
            if not isinstance(item, dict):
                item = obj["item"] = {}
                changed = True
            if typ == "response.output_item.added":
                if not isinstance(obj.get("output_index"), int):
                    obj["output_index"] = len(self.outputs)
                    changed = True
                changed |= fix_item(item)
                index = obj["output_index"]
                while len(self.outputs) <= index:
                    self.outputs.append({})
                self.outputs[index] = {"id": item["id"], "type": item["type"],
                                       "call_id": item.get("call_id"), "name": item.get("name")}
                return changed
            if typ == "response.output_item.done":
                index = obj.get("output_index")
                if not isinstance(index, int):
                    index = self._index(item.get("id"))
                    if index is None:
                        index = max(len(self.outputs) - 1, 0)
                    obj["output_index"] = index
                    changed = True
                known = self.outputs[index].get("id") if index < len(self.outputs) else None
                return fix_item(item, known) | changed
            return fix_item(item) | changed
        # an event about a part or a call of an item: the last item added when unnamed
        item_id = obj.get("item_id")
        if not isinstance(item_id, str) or not item_id:
            index = obj.get("output_index")
            it = self.outputs[index] if isinstance(index, int) and 0 <= index < len(self.outputs) \
                else self.outputs[-1] if self.outputs else None
            obj["item_id"] = item_id = it["id"] if it and it.get("id") else mint_id("item_")
            changed = True
        if not isinstance(obj.get("output_index"), int):
            index = self._index(item_id)
            obj["output_index"] = index if index is not None else max(len(self.outputs) - 1, 0)
            changed = True
        if typ in PART_EVENTS and not isinstance(obj.get("content_index"), int):
            added = self.parts.get(item_id, 0)
            obj["content_index"] = added if typ == "response.content_part.added" else max(added - 1, 0)
            changed = True
        if typ == "response.content_part.added":
            self.parts[item_id] = max(self.parts.get(item_id, 0), obj["content_index"] + 1)
            if not isinstance(obj.get("part"), dict):
                obj["part"] = {"type": "text", "text": ""}
                changed = True
            elif not obj["part"].get("type"):
                obj["part"]["type"] = "audio" if "audio" in obj["part"] or "transcript" in obj["part"] \
                    else "text"
                changed = True
        if typ in CALL_EVENTS:
            index = obj["output_index"]
            it = self.outputs[index] if 0 <= index < len(self.outputs) else {}
            for key in ("call_id", "name") if typ.endswith(".done") else ("call_id",):
                if not isinstance(obj.get(key), str):
                    obj[key] = it.get(key) or (mint_id("call_") if key == "call_id" else "")
                    changed = True
            if typ.endswith(".done") and not isinstance(obj.get("arguments"), str):
                obj["arguments"] = ""
                changed = True
        return changed

    def _done(self, obj: dict) -> bool:
        resp = obj.get("response")
        if not isinstance(resp, dict):
            return False
        changed = False
        output = resp.get("output")
        if not isinstance(output, list):
            resp["output"] = output = []
            changed = True
        for i, item in enumerate(output):
            if isinstance(item, dict):
                known = self.outputs[i].get("id") if i < len(self.outputs) else None
                changed |= fix_item(item, known)
        return changed


def _details(given, keys: tuple[str, ...]) -> tuple[dict, bool]:
    out = dict(given) if isinstance(given, dict) else {}
    changed = not isinstance(given, dict)
    for key in keys:
        if not isinstance(out.get(key), int):
            out[key] = 0
            changed = True
    return out, changed


def realtime_usage(usage) -> tuple[dict, bool]:
    """A Realtime ``usage`` with every count and both token details (zeros where unknown);
    chat-style ``prompt_tokens``/``completion_tokens`` are read too.  Also whether it changed."""
    u = dict(usage) if isinstance(usage, dict) else {}
    changed = not isinstance(usage, dict)
    for key, alt in (("input_tokens", "prompt_tokens"), ("output_tokens", "completion_tokens")):
        if not isinstance(u.get(key), int):
            u[key] = u.pop(alt, 0) if isinstance(u.get(alt), int) else 0
            changed = True
    if not isinstance(u.get("total_tokens"), int):
        u["total_tokens"] = u["input_tokens"] + u["output_tokens"]
        changed = True
    inp, c1 = _details(u.get("input_token_details"),
                       ("text_tokens", "audio_tokens", "image_tokens", "cached_tokens"))
    cached, c2 = _details(inp.get("cached_tokens_details"), ("text_tokens", "audio_tokens", "image_tokens"))
    inp["cached_tokens_details"] = cached
    out, c3 = _details(u.get("output_token_details"), ("text_tokens", "audio_tokens"))
    u["input_token_details"], u["output_token_details"] = inp, out
    return u, changed or c1 or c2 or c3


class ResponseDone(Rule):
    """response.done has a status and a usage with input/output_token_details (zeros if none given).

    LiveKit reads the details for its ``RealtimeModelMetrics`` and treats a missing status
    as an unknown outcome."""

    name = "realtime.response_done"
    endpoint = "realtime"
    touches = (Touch({"response.done"}),)

    def apply(self, obj: dict, ctx: StreamContext):
        resp = obj.get("response")
        if not isinstance(resp, dict):
            return None
        changed = False
        if resp.get("status") not in STATUSES or resp.get("status") == "in_progress":
            details = resp.get("status_details")
            failed = isinstance(details, dict) and details.get("error")
            resp["status"] = "failed" if failed else "completed"
            changed = True
        resp["usage"], c = realtime_usage(resp.get("usage"))
        return changed or c


class ErrorEvent(Rule):
    """error events in the documented shape: error an object with type, code, message, param, event_id.

    Servers send a bare string, or the fields flat; openai-python then fails to validate
    and LiveKit raises on ``event.error.message``."""

    name = "realtime.error_event"
    endpoint = "realtime"
    touches = (Touch({"error"}),)

    def apply(self, obj: dict, ctx: StreamContext):
        err = obj.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str) \
                and isinstance(err.get("type"), str) and all(k in err for k in ("code", "param", "event_id")):
            return None
        out = dict(err) if isinstance(err, dict) else {}
        if isinstance(err, str):
            out["message"] = err
        for key in ("message", "type", "code", "param"):    # flat fields move in
            if key in obj and key != "type" and key not in out:
                out[key] = obj.pop(key)
        if not isinstance(out.get("message"), str):
            out["message"] = str(out.get("message") or "the upstream reported an error without a message")
        if not isinstance(out.get("type"), str):
            out["type"] = "server_error"
        out.setdefault("code", None)
        out.setdefault("param", None)
        out.setdefault("event_id", None)
        obj["error"] = out
        return True


RULES: list = [EventId, ResponseIds, Items, ResponseDone, ErrorEvent]
