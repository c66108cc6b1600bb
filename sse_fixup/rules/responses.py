"""Built-in rules for ``/v1/responses`` streams.

Each class fixes one family of defects from ``stream-defects.md`` (ids in ``fixes``).
The target is the event contract of openai-python's ``ResponseStreamEvent`` types and
the AI SDK's ``openaiResponsesChunkSchema``: both reject llama-server's stream as is.
"""

from __future__ import annotations

import orjson

from .base import Rule, StreamContext, mint_id, now
from .touch import Lacks, Touch

LIFECYCLE_START = frozenset({"response.created", "response.in_progress", "response.queued"})
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
ITEM_EVENTS = frozenset({"response.output_item.added", "response.output_item.done"})
ARGS_EVENTS = frozenset({"response.function_call_arguments.delta",
                         "response.function_call_arguments.done"})
# every event that names an item by ``item_id`` and must carry its ``output_index``
ITEM_SCOPED = frozenset({
    "response.content_part.added", "response.content_part.done",
    "response.output_text.delta", "response.output_text.done",
    "response.output_text.annotation.added",
    "response.refusal.delta", "response.refusal.done",
    "response.function_call_arguments.delta", "response.function_call_arguments.done",
    "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done",
    "response.reasoning_text.delta", "response.reasoning_text.done",
    "response.reasoning_summary_part.added", "response.reasoning_summary_part.done",
    "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
})
# events whose ``content_index`` points into the item's content parts
CONTENT_SCOPED = frozenset({
    "response.output_text.delta", "response.output_text.done",
    "response.output_text.annotation.added",
    "response.refusal.delta", "response.refusal.done",
    "response.reasoning_text.delta", "response.reasoning_text.done",
})
TEXT_EVENTS = frozenset({"response.output_text.delta", "response.output_text.done"})
PART_EVENTS = frozenset({"response.content_part.added", "response.content_part.done"})


def _id(value):
    """An id as a dict key: only strings count (anything else is garbage, treated as absent)."""
    return value if isinstance(value, str) and value else None


def _missing(obj: dict, key: str) -> bool:
    return obj.get(key) is None


def response_defaults(ctx: StreamContext) -> dict:
    """Every field the Open Responses ``ResponseResource`` requires (openai-python's
    ``Response`` needs a subset), each the value the request implies, else the documented
    default or null.  llama-server sends a bare ``{id, object, status}`` on created."""
    return spec_defaults(ctx.request, ctx.started)


def _number(value, default):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _of(value, kind, default=None):
    """``value`` when it is of ``kind`` (a bool is no int here), else ``default``."""
    if kind is bool:
        return value if isinstance(value, bool) else default
    return value if isinstance(value, kind) and not isinstance(value, bool) else default


def echoed_tools(tools) -> list:
    """The request's tools as a response echoes them: function tools with the keys the
    Open Responses ``FunctionTool`` requires (``description``, ``parameters``, ``strict``:
    null when the request left them out); other tools as they came."""
    out = []
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict) and tool.get("type") == "function" and \
                any(k not in tool for k in ("description", "parameters", "strict")):
            tool = {**tool}
            for key in ("description", "parameters", "strict"):
                tool.setdefault(key, None)
        out.append(tool)
    return out


def fix_tools(resp: dict) -> bool:
    """An upstream's own echo of the tools, completed the same way (llama-server: no strict)."""
    tools = resp.get("tools")
    if not isinstance(tools, list):
        return False
    fixed = echoed_tools(tools)
    if fixed == tools:
        return False
    resp["tools"] = fixed
    return True


def spec_defaults(req, created_at: int) -> dict:
    get = req.get
    text = get("text") if isinstance(get("text"), dict) else {}
    if not isinstance(text.get("format"), dict):
        text = {**text, "format": {"type": "text"}}
    reasoning = get("reasoning") if isinstance(get("reasoning"), dict) else None
    if reasoning is not None:
        reasoning = {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")}
    metadata = get("metadata")
    return {
        "object": "response", "created_at": created_at, "model": req.model or "unknown",
        "completed_at": None, "incomplete_details": None, "error": None,
        "previous_response_id": _of(get("previous_response_id"), str),
        # the request's instructions are not kept for the stream (RequestInfo drops the
        # conversation): the documented null, never a made-up string
        "instructions": None,
        "tools": echoed_tools(req.tools), "tool_choice": get("tool_choice") or "auto",
        "parallel_tool_calls": _of(get("parallel_tool_calls"), bool, True),
        "truncation": get("truncation") if get("truncation") in ("auto", "disabled") else "disabled",
        "text": text,
        # OpenAI's defaults for the sampling knobs the request did not set
        "top_p": _number(get("top_p"), 1.0), "temperature": _number(get("temperature"), 1.0),
        "presence_penalty": _number(get("presence_penalty"), 0.0),
        "frequency_penalty": _number(get("frequency_penalty"), 0.0),
        "top_logprobs": _of(get("top_logprobs"), int, 0),
        "reasoning": reasoning,
        "max_output_tokens": _of(get("max_output_tokens"), int),
        "max_tool_calls": _of(get("max_tool_calls"), int),
        # a plain backend stores nothing and runs nothing in the background
        "store": False, "background": False,
        "service_tier": get("service_tier") if isinstance(get("service_tier"), str) else "default",
        "metadata": metadata if isinstance(metadata, dict) else {},
        "safety_identifier": _of(get("safety_identifier"), str),
        "prompt_cache_key": _of(get("prompt_cache_key"), str),
    }


class ResponseSkeleton(Rule):
    """The response object of created/in_progress/completed gets every field the Open Responses schema requires."""

    name = "responses.response_skeleton"
    endpoint = "responses"
    touches = (Touch(LIFECYCLE_START | TERMINAL),)
    fixes = "R1(c), R3, R10, R11, Open Responses ResponseResource"

    def __init__(self):
        self.created_at: int | None = None   # pinned by the first lifecycle event

    def apply(self, obj: dict, ctx: StreamContext):
        resp = obj.get("response")
        if resp is None:
            resp = obj["response"] = {}
            changed = True
        elif not isinstance(resp, dict):
            return False
        else:
            changed = False
        # one id for the whole stream: openai-python checks lifecycle identity
        if ctx.response_id is None:
            ctx.response_id = resp.get("id") if isinstance(resp.get("id"), str) else mint_id("resp_")
        typ = obj.get("type")
        upstream_created = resp.get("created_at")
        if self.created_at is None:
            self.created_at = upstream_created if isinstance(upstream_created, int) else ctx.started
        defaults = response_defaults(ctx)
        defaults["id"] = ctx.response_id
        defaults["created_at"] = self.created_at
        if typ in LIFECYCLE_START:
            defaults.update({"status": "in_progress", "output": [], "usage": None})
        elif typ == "response.completed" and not isinstance(resp.get("completed_at"), int):
            # llama-server puts the completion time in created_at: that is completed_at
            resp["completed_at"] = upstream_created if isinstance(upstream_created, int) \
                and upstream_created >= self.created_at else now()
            changed = True
        if resp.get("created_at") != self.created_at:
            resp["created_at"] = self.created_at    # one creation time on every event
            changed = True
        for key, value in defaults.items():
            if key not in resp or (resp[key] is None and value is not None and key != "usage"):
                resp[key] = value
                changed = True
        changed |= fix_tools(resp)
        return changed


class OutputIndex(Rule):
    """Every item event gets output_index = the item's position, the same on all its events."""

    name = "responses.output_index"
    endpoint = "responses"
    touches = (Touch(ITEM_EVENTS | ITEM_SCOPED),)
    fixes = "R1(a), R3, R5, R18"

    def __init__(self):
        self.by_item: dict = {}      # item id (or call_id) -> its output_index
        self.next = 0

    def apply(self, obj: dict, ctx: StreamContext):
        by_item = self.by_item
        if obj.get("type") in ITEM_EVENTS:
            item = obj.get("item")
            if not isinstance(item, dict):
                return False
            key = _id(item.get("id")) or _id(item.get("call_id"))
            if key in by_item:
                index = by_item[key]
            elif isinstance(obj.get("output_index"), int):
                index = obj["output_index"]
            else:
                index = self.next
            if key is not None:
                by_item[key] = index
                if _id(item.get("call_id")):
                    by_item.setdefault(item["call_id"], index)
            self.next = max(self.next, index + 1)
        else:
            index = by_item.get(_id(obj.get("item_id")))
            if index is None:
                return False
        if obj.get("output_index") == index:
            return False
        if isinstance(obj.get("output_index"), int) and obj.get("type") not in ITEM_EVENTS:
            return False  # upstream gave one for a known item: trust it
        obj["output_index"] = index
        return True


class ContentIndex(Rule):
    """content_part.*, output_text.*, refusal.*, reasoning_text.* get a per-item content_index."""

    name = "responses.content_index"
    endpoint = "responses"
    touches = (Touch(PART_EVENTS | CONTENT_SCOPED),)
    fixes = "R3, R5, R6"

    def __init__(self):
        self.parts: dict = {}        # item_id -> index of its current part

    def apply(self, obj: dict, ctx: StreamContext):
        parts = self.parts
        item_id = _id(obj.get("item_id"))
        if obj.get("type") == "response.content_part.added":
            index = parts[item_id] + 1 if item_id in parts else 0
            parts[item_id] = index
        else:
            index = parts.get(item_id, 0)
        if isinstance(obj.get("content_index"), int):
            return False
        obj["content_index"] = index
        return True


class FunctionCallItems(Rule):
    """function_call items get an id, argument deltas its item_id; .done is completed with full arguments."""

    name = "responses.function_call_items"
    endpoint = "responses"
    touches = (Touch(ITEM_EVENTS, Lacks(b'"function_call"')), Touch(ARGS_EVENTS))
    fixes = "R1(b), R3, AI SDK checklist 3-4"

    def __init__(self):
        # alias (upstream id or call_id) -> our id; our id -> {"args": [...], "done": bool, "name"}
        self.st = {"alias": {}, "calls": {}, "last": None}

    def apply(self, obj: dict, ctx: StreamContext):
        st = self.st
        typ = obj.get("type")
        if typ in ITEM_EVENTS:
            item = obj.get("item")
            if not isinstance(item, dict) or item.get("type") != "function_call":
                return False
            return self._item(obj, item, typ == "response.output_item.done", st)
        alias = st["alias"]
        item_id = _id(obj.get("item_id"))
        fc_id = alias.get(item_id) if item_id is not None else st["last"]
        if fc_id is None:
            fc_id = st["last"]
        if fc_id is None:
            return False
        call = st["calls"][fc_id]
        changed = False
        if item_id != fc_id:
            obj["item_id"] = fc_id
            changed = True
        if typ == "response.function_call_arguments.delta":
            if isinstance(obj.get("delta"), str):
                call["args"].append(obj["delta"])
        else:
            call["done"] = True
            if not isinstance(obj.get("arguments"), str):
                obj["arguments"] = "".join(call["args"])
                changed = True
            if not isinstance(obj.get("name"), str) and call["name"]:
                obj["name"] = call["name"]
                changed = True
        return changed

    def _item(self, obj: dict, item: dict, done: bool, st: dict):
        alias, calls = st["alias"], st["calls"]
        changed = False
        up_id, call_id = _id(item.get("id")), _id(item.get("call_id"))
        fc_id = alias.get(up_id) or alias.get(call_id)
        if fc_id is None:
            if isinstance(up_id, str) and up_id:
                fc_id = up_id
            elif isinstance(call_id, str) and call_id:
                fc_id = "fc_" + call_id.removeprefix("call_")
            else:
                fc_id = mint_id("fc_")
        if not isinstance(call_id, str) or not call_id:
            call_id = item["call_id"] = "call_" + fc_id.removeprefix("fc_")
            changed = True
        if item.get("id") != fc_id:
            item["id"] = fc_id
            changed = True
        for key in (up_id, call_id, fc_id):
            if key:
                alias[key] = fc_id
        call = calls.get(fc_id)
        if call is None:
            call = calls[fc_id] = {"args": [], "done": False, "name": item.get("name"),
                                   "added": not done}
        st["last"] = fc_id
        if not isinstance(item.get("arguments"), str):
            item["arguments"] = "".join(call["args"]) if done else ""
            changed = True
        if not done:
            return changed
        if item["arguments"] == "" and call["args"]:
            item["arguments"] = "".join(call["args"])
            changed = True
        if item.get("status") not in ("completed", "incomplete"):
            item["status"] = "completed"
            changed = True
        if call["done"] or not call["added"]:
            return changed   # without an added event no output_index could be given to it
        call["done"] = True
        # the spec has arguments.done before output_item.done; llama-server never sends it
        args_done = {"type": "response.function_call_arguments.done", "item_id": fc_id,
                     "name": item.get("name") or "", "arguments": item["arguments"]}
        if isinstance(obj.get("output_index"), int):
            args_done["output_index"] = obj["output_index"]
        return [args_done, obj]


class TextParts(Rule):
    """output_text events get logprobs: [], output_text parts get annotations: []."""

    name = "responses.text_parts"
    endpoint = "responses"
    touches = (Touch(TEXT_EVENTS | PART_EVENTS), Touch(ITEM_EVENTS, Lacks(b'"output_text"')))
    fixes = "R14, R15 (openai-python requires both lists)"

    def apply(self, obj: dict, ctx: StreamContext):
        typ = obj.get("type")
        if typ in TEXT_EVENTS:
            if isinstance(obj.get("logprobs"), list):
                return False
            obj["logprobs"] = []
            return True
        if typ in PART_EVENTS:
            return _fix_part(obj.get("part"))
        item = obj.get("item")
        if not isinstance(item, dict) or item.get("type") != "message":
            return False
        changed = False
        for part in item.get("content") or ():
            changed |= _fix_part(part)
        return changed


def _fix_part(part) -> bool:
    if not isinstance(part, dict) or part.get("type") != "output_text":
        return False
    if isinstance(part.get("annotations"), list):
        return False
    part["annotations"] = []
    return True


def fix_usage(resp: dict) -> bool:
    """usage with the five fields strict clients (openai-python, Codex, legacy AI SDK) need."""
    usage = resp.get("usage")
    changed = False
    if not isinstance(usage, dict):
        usage = resp["usage"] = {}
        changed = True
    for key in ("input_tokens", "output_tokens"):
        if not isinstance(usage.get(key), int):
            usage[key] = 0
            changed = True
    if not isinstance(usage.get("total_tokens"), int):
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        changed = True
    for key, inners in (("input_tokens_details", ("cached_tokens", "cache_write_tokens")),
                        ("output_tokens_details", ("reasoning_tokens",))):
        details = usage.get(key)
        if not isinstance(details, dict):
            details = usage[key] = {}
        for inner in inners:
            if not isinstance(details.get(inner), int):
                details[inner] = 0
                changed = True
    return changed


class CompletedUsage(Rule):
    """response.completed/incomplete get usage with input_tokens, output_tokens, total_tokens."""

    name = "responses.usage"
    endpoint = "responses"
    touches = (Touch(frozenset({"response.completed", "response.incomplete"})),)
    fixes = "R2, R4, R12"

    def apply(self, obj: dict, ctx: StreamContext):
        resp = obj.get("response")
        return isinstance(resp, dict) and fix_usage(resp)


class ErrorEvent(Rule):
    """Upstream error blocks become an error event both AI SDK lines and openai-python accept."""

    name = "responses.error_event"
    endpoint = "responses"
    # llama-server's error block has no event name and no type at all
    touches = (Touch(frozenset({None, "error"}), Lacks(b'"error"')),)
    fixes = "R2, R16, llama-server #13"

    def apply(self, obj: dict, ctx: StreamContext):
        typ = obj.get("type")
        if typ is None and isinstance(obj.get("error"), (dict, str)):
            err = obj["error"]
            if isinstance(err, str):
                err = {"message": err}
        elif typ == "error":
            err = obj.get("error") if isinstance(obj.get("error"), dict) else obj
        else:
            return False
        message = err.get("message")
        if not isinstance(message, str):
            message = orjson.dumps(err).decode() if err else "upstream error"
        code = err.get("code", obj.get("code"))
        code = None if code is None else str(code)
        etype = err.get("type") if isinstance(err.get("type"), str) else "server_error"
        param = err.get("param") if isinstance(err.get("param"), str) else None
        fixed = {"type": "error", "code": code, "message": message, "param": param,
                 "error": {"type": etype, "code": code, "message": message, "param": param}}
        if isinstance(obj.get("sequence_number"), int):
            fixed["sequence_number"] = obj["sequence_number"]
        if fixed == obj:
            return False
        obj.clear()
        obj.update(fixed)
        return True


class SequenceNumber(Rule):
    """Every event gets sequence_number, strictly increasing, stepping past upstream values."""

    name = "responses.sequence_number"
    endpoint = "responses"
    touches = (Touch(),)
    fixes = "R3, R13"

    def __init__(self):
        self.next = 0

    def apply(self, obj: dict, ctx: StreamContext):
        seq = obj.get("sequence_number")
        if isinstance(seq, int) and seq >= self.next:
            self.next = seq + 1
            return False
        obj["sequence_number"] = self.next
        self.next += 1
        return True


STREAM_RULES = [ResponseSkeleton, ErrorEvent, FunctionCallItems, OutputIndex, ContentIndex,
                TextParts, CompletedUsage, SequenceNumber]
