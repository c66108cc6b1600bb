"""Built-in rules for ``/v1/chat/completions`` streams (``chat.completion.chunk``).

Targets openai-python's ``ChatCompletionChunk`` and its ``accumulate_delta`` (which
concatenates every repeated string and needs ``index`` on list entries) and the AI
SDK's ``openaiChatChunkSchema`` / ``chunkBaseSchema``.  Defect ids: ``stream-defects.md``.
"""

from __future__ import annotations

import orjson

from .base import Rule, StreamContext, choices_of, mint_id


def _is_chunk(obj: dict) -> bool:
    return isinstance(obj.get("choices"), list)


class Envelope(Rule):
    """object, id, created (constant within a stream) and model on every chunk."""

    name = "chat.envelope"
    endpoint = "chat"
    fixes = "E13, llama-server chat #1 (created changes within a stream)"

    def new_state(self):
        return {"id": None, "created": None, "model": None, "needles": None}

    def wants(self, ev, ctx):
        needles = self.state(ctx)["needles"]
        if needles is None:
            return True
        data = ev.data
        for needle in needles:
            if needle not in data:
                return True
        return False

    def region_ok(self, region, ctx):
        needles = self.state(ctx)["needles"]
        return needles is not None and all(region.each(nd) for nd in needles)

    def apply(self, obj: dict, ctx: StreamContext):
        if not _is_chunk(obj):
            return False            # error chunks keep their own shape
        st = self.state(ctx)
        if st["id"] is None:
            st["id"] = obj["id"] if isinstance(obj.get("id"), str) else mint_id("chatcmpl-")
            st["created"] = obj["created"] if isinstance(obj.get("created"), int) else ctx.started
            model = obj.get("model")
            st["model"] = model if isinstance(model, str) else (ctx.request.model or "unknown")
            # an event holding these exact bytes needs no parse (llama-server's compact JSON)
            st["needles"] = (b'"created":%d' % st["created"], b'"id":' + orjson.dumps(st["id"]),
                             b'"object":"chat.completion.chunk"', b'"model":')
        changed = False
        for key, value in (("id", st["id"]), ("created", st["created"])):
            if obj.get(key) != value:
                obj[key] = value
                changed = True
        if obj.get("object") != "chat.completion.chunk":
            obj["object"] = "chat.completion.chunk"
            changed = True
        if not isinstance(obj.get("model"), str):
            obj["model"] = st["model"]
            changed = True
        return changed


class ChoiceIndex(Rule):
    """Every choices[] entry has an index."""

    name = "chat.choice_index"
    endpoint = "chat"
    fixes = "E3"

    def wants(self, ev, ctx):
        data = ev.data
        return b'"index"' not in data or b'"tool_calls"' in data

    def region_ok(self, region, ctx):
        return not region.has(b'"tool_calls"') and region.each(b'"index"')

    def apply(self, obj: dict, ctx: StreamContext):
        changed = False
        choices = obj.get("choices")
        for i, choice in enumerate(choices if isinstance(choices, list) else ()):
            if isinstance(choice, dict) and not isinstance(choice.get("index"), int):
                choice["index"] = i
                changed = True
        return changed


class ToolCallDeltas(Rule):
    """Tool-call deltas: index and function on each, id/type on the first only, no repeats."""

    name = "chat.tool_call_deltas"
    endpoint = "chat"
    fixes = "C1, C2, C4, C5, C6, C8, C9, C10, C13"

    def wants(self, ev, ctx):
        return b'"tool_calls"' in ev.data

    def region_ok(self, region, ctx):
        return not region.has(b'"tool_calls"')

    def new_state(self):
        # choice index -> {"by_index": {tool index: id}, "by_id": {id: tool index}, "last": index}
        return {}

    def apply(self, obj: dict, ctx: StreamContext):
        st = self.state(ctx)
        changed = False
        for choice in choices_of(obj):
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if not isinstance(delta, dict) or "tool_calls" not in delta:
                continue
            calls = delta["tool_calls"]
            if not isinstance(calls, list) or not calls:
                if calls is not None or "tool_calls" in delta:
                    del delta["tool_calls"]     # C14: an empty list makes clients wait for tools
                    changed = True
                continue
            cst = st.setdefault(choice.get("index", 0), {"by_index": {}, "by_id": {}, "named": set(), "last": None})
            for pos, call in enumerate(calls):
                if isinstance(call, dict):
                    changed |= self._fix(call, pos, cst)
        return changed

    def _fix(self, call: dict, pos: int, cst: dict) -> bool:
        changed = False
        for key in [k for k, v in call.items() if v is None or (v == "" and k in ("id", "type"))]:
            del call[key]                       # C10: absent, not null; C8: no empty ids
            changed = True
        fn = call.get("function")
        if not isinstance(fn, dict):
            fn = call["function"] = {}
            changed = True
        for key in [k for k, v in fn.items() if v is None]:
            del fn[key]
            changed = True
        if isinstance(fn.get("arguments"), (dict, list)):
            fn["arguments"] = orjson.dumps(fn["arguments"]).decode()   # C13
            changed = True
        by_index, by_id = cst["by_index"], cst["by_id"]
        call_id = call.get("id")
        index = call.get("index")
        if not isinstance(index, int):
            if call_id in by_id:
                index = by_id[call_id]
            elif call_id is None and fn.get("name") is None and cst["last"] is not None:
                index = cst["last"]             # a continuation: the open call
            else:
                index = len(by_index) if call_id is not None or fn.get("name") else pos
            call["index"] = index
            changed = True
        elif call_id is not None and index in by_index and by_index[index] != call_id \
                and call_id not in by_id:
            index = call["index"] = max(by_index) + 1     # C2/C3: a new call reusing index k
            changed = True
        elif call_id in by_id and by_id[call_id] != index:
            index = call["index"] = by_id[call_id]
            changed = True
        if index not in by_index:               # first delta of this call
            if call_id is None:
                call_id = call["id"] = mint_id("call_")
                changed = True
            by_index[index] = call_id
            by_id[call_id] = index
            if call.get("type") != "function":
                call["type"] = "function"
                changed = True
        else:                                   # continuation: no identity fields (C8, C9)
            for key in ("id", "type"):
                if key in call:
                    del call[key]
                    changed = True
            if "name" in fn and (fn["name"] == "" or index in cst["named"]):
                del fn["name"]
                changed = True
        if fn.get("name"):
            cst["named"].add(index)
        cst["last"] = index
        return changed


class FinishReason(Rule):
    """finish_reason becomes tool_calls when tool calls were sent; [DONE] without one gets one."""

    name = "chat.finish_reason"
    endpoint = "chat"
    fixes = "E4, E5, E6"

    def new_state(self):
        return {"tools": (), "finished": False, "chunks": 0}   # tools: a set once one is seen

    def wants(self, ev, ctx):
        data = ev.data
        return (b'"tool_calls"' in data or b"finish_reason" in data
                and b'"finish_reason":null' not in data) or not self.state(ctx)["chunks"]

    def region_ok(self, region, ctx):
        return bool(self.state(ctx)["chunks"]) and not region.has(b'"tool_calls"') \
            and region.count(b"finish_reason") == region.count(b'"finish_reason":null')

    def apply(self, obj: dict, ctx: StreamContext):
        st = self.state(ctx)
        changed = False
        for choice in choices_of(obj):
            if not isinstance(choice, dict):
                continue
            st["chunks"] += 1
            index = choice.get("index", 0)
            delta = choice.get("delta")
            if isinstance(delta, dict) and delta.get("tool_calls"):
                if not st["tools"]:
                    st["tools"] = set()
                st["tools"].add(index)
            reason = choice.get("finish_reason")
            if reason is None:
                continue
            if reason == "":
                choice["finish_reason"] = None      # E2
                changed = True
                continue
            st["finished"] = True
            if reason == "stop" and index in st["tools"]:
                choice["finish_reason"] = "tool_calls"
                changed = True
        return changed

    def on_done(self, ctx: StreamContext):
        st = self.state(ctx)
        if st["finished"] or not st["chunks"]:
            return []
        st["finished"] = True
        env = ctx.state.get(Envelope.name) or {}
        return [{"id": env.get("id") or mint_id("chatcmpl-"), "object": "chat.completion.chunk",
                 "created": env.get("created") or ctx.started,
                 "model": env.get("model") or ctx.request.model or "unknown",
                 "choices": [{"index": 0, "delta": {},
                              "finish_reason": "tool_calls" if st["tools"] else "stop"}]}]

class Done(Rule):
    """data: [DONE] at the end of the stream if upstream did not send it."""

    name = "chat.done"
    endpoint = "chat"
    types = frozenset()        # touches no event; only adds one at the end
    fixes = "E7"

    def wants(self, ev, ctx):
        return False

    def region_ok(self, region, ctx):
        return True

    def apply(self, obj: dict, ctx: StreamContext):
        return False

    def finish(self, ctx: StreamContext):
        return [] if ctx.done_seen else [b"data: [DONE]\n\n"]


STREAM_RULES = [Envelope, ChoiceIndex, ToolCallDeltas, FinishReason, Done]
