"""Built-in rules for complete (non-stream) JSON bodies.

The same guarantees as the stream rules, for ``stream: false``: the AI SDK's
``openaiResponsesResponseSchema`` / ``openaiChatResponseSchema`` and openai-python's
``Response`` / ``ChatCompletion``.
"""

from __future__ import annotations

import orjson

from .base import Rule, StreamContext, mint_id
from .responses import fix_tools, fix_usage, response_defaults


def _default(obj: dict, key: str, value) -> bool:
    if obj.get(key) is None:
        obj[key] = value
        return True
    return False


class ResponsesBody(Rule):
    """Responses bodies: every field the Open Responses schema requires, output[].id, function_call status."""

    name = "responses.body"
    endpoint = "responses"
    mode = "body"
    fixes = "AI SDK checklist 10, R10, R12, Open Responses ResponseResource"

    def apply(self, obj: dict, ctx: StreamContext):
        if "error" in obj and "output" not in obj:
            return False
        changed = False
        if obj.get("id") is None:
            obj["id"] = mint_id("resp_")
            changed = True
        for key, value in response_defaults(ctx).items():
            changed |= _default(obj, key, value)
        changed |= _default(obj, "status", "completed")
        if obj["status"] == "completed" and not isinstance(obj.get("completed_at"), int):
            obj["completed_at"] = obj["created_at"] if isinstance(obj["created_at"], int) else ctx.started
            changed = True
        changed |= fix_tools(obj)
        changed |= _default(obj, "output", [])
        for item in obj["output"] if isinstance(obj["output"], list) else ():
            if isinstance(item, dict):
                changed |= self._item(item)
        changed |= fix_usage(obj)
        return changed

    def _item(self, item: dict) -> bool:
        typ = item.get("type")
        changed = False
        if typ == "function_call":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                call_id = item["call_id"] = mint_id("call_")
                changed = True
            changed |= _default(item, "id", "fc_" + call_id.removeprefix("call_"))
            if isinstance(item.get("arguments"), (dict, list)):
                item["arguments"] = orjson.dumps(item["arguments"]).decode()
                changed = True
            changed |= _default(item, "arguments", "")
            changed |= _default(item, "status", "completed")
        elif typ == "message":
            changed |= _default(item, "id", mint_id("msg_"))
            changed |= _default(item, "role", "assistant")
            changed |= _default(item, "status", "completed")
            for part in item.get("content") or ():
                if isinstance(part, dict) and part.get("type") == "output_text":
                    changed |= _default(part, "annotations", [])
        elif typ == "reasoning":
            changed |= _default(item, "id", mint_id("rs_"))
            changed |= _default(item, "summary", [])
        return changed


class ChatBody(Rule):
    """Chat bodies: choices[].index, tool_calls[].type/id, finish_reason tool_calls, envelope."""

    name = "chat.body"
    endpoint = "chat"
    mode = "body"
    fixes = "E3, E4, C13, AI SDK 5.2"

    def apply(self, obj: dict, ctx: StreamContext):
        if not isinstance(obj.get("choices"), list):
            return False
        changed = False
        for key, value in (("object", "chat.completion"), ("created", ctx.started),
                           ("model", ctx.request.model or "unknown")):
            changed |= _default(obj, key, value)
        if obj.get("id") is None:
            obj["id"] = mint_id("chatcmpl-")
            changed = True
        for i, choice in enumerate(obj["choices"]):
            if not isinstance(choice, dict):
                continue
            changed |= _default(choice, "index", i)
            msg = choice.get("message")
            if not isinstance(msg, dict):
                continue
            calls = msg.get("tool_calls")
            if isinstance(calls, list) and not calls:
                del msg["tool_calls"]            # C14
                changed = True
                continue
            for call in calls if isinstance(calls, list) else ():
                if not isinstance(call, dict):
                    continue
                changed |= _default(call, "type", "function")
                changed |= _default(call, "id", mint_id("call_"))
                fn = call.get("function")
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), (dict, list)):
                    fn["arguments"] = orjson.dumps(fn["arguments"]).decode()
                    changed = True
            if calls and choice.get("finish_reason") == "stop":
                choice["finish_reason"] = "tool_calls"
                changed = True
        return changed


BODY_RULES = [ResponsesBody, ChatBody]
