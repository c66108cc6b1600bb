"""Built-in rules for ``/v1/chat/completions`` streams (``chat.completion.chunk``).

Targets openai-python's ``ChatCompletionChunk`` and its ``accumulate_delta`` (which
concatenates every repeated string and needs ``index`` on list entries) and the AI
SDK's ``openaiChatChunkSchema`` / ``chunkBaseSchema``.  Defect ids: ``stream-defects.md``.
"""

from __future__ import annotations

import orjson

from ..sse import Event
from .base import Envelope as EnvelopeFact
from .base import Rule, StreamContext, choices_of, mint_id
from .touch import Known, Lacks, NullOnly, Preceded, Touch

TOOL_CALLS = b'"tool_calls":'


def _is_chunk(obj: dict) -> bool:
    return isinstance(obj.get("choices"), list)


def _envelope_needles(ctx: StreamContext):
    env = ctx.envelope
    return env.needles if env is not None else None


class Envelope(Rule):
    """object, id, created (constant within a stream) and model on every chunk."""

    name = "chat.envelope"
    endpoint = "chat"
    touches = (Touch(None, Known(_envelope_needles, "it holds the stream's id, created, object and model")),)
    fixes = "E13, llama-server chat #1 (created changes within a stream)"

    def apply(self, obj: dict, ctx: StreamContext):
        if not _is_chunk(obj):
            return False            # error chunks keep their own shape
        env = ctx.envelope
        if env is None:
            model = obj.get("model")
            env = ctx.envelope = EnvelopeFact(
                obj["id"] if isinstance(obj.get("id"), str) else mint_id("chatcmpl-"),
                obj["created"] if isinstance(obj.get("created"), int) else ctx.started,
                model if isinstance(model, str) else (ctx.request.model or "unknown"), obj)
        changed = False
        if obj.get("id") != env.id:
            obj["id"] = env.id
            changed = True
        if obj.get("created") != env.created:
            obj["created"] = env.created
            changed = True
        if obj.get("object") != "chat.completion.chunk":
            obj["object"] = "chat.completion.chunk"
            changed = True
        if not isinstance(obj.get("model"), str):
            obj["model"] = env.model
            changed = True
        return changed


class ChoiceIndex(Rule):
    """Every choices[] entry has an index."""

    name = "chat.choice_index"
    endpoint = "chat"
    # every choice carries a "delta": right after its "index" (as OpenAI, vLLM and
    # llama-server write them) has one; other layouts and n > 1 are parsed
    touches = (Touch(None, Preceded(b'"delta":', b'"index":0,')),)
    fixes = "E3"

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
    touches = (Touch(None, Lacks(TOOL_CALLS)),)
    fixes = "C1, C2, C4, C5, C6, C8, C9, C10, C13"

    def __init__(self):
        # choice index -> {"by_index": {tool index: id}, "by_id": {id: tool index}, "last": index}
        self.choices: dict = {}

    def apply(self, obj: dict, ctx: StreamContext):
        st = self.choices
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
    """finish_reason becomes tool_calls when tool calls were sent; a complete stream without one gets one."""

    name = "chat.finish_reason"
    endpoint = "chat"
    # (until it has seen a chunk with choices, it looks at every event: a stream of
    # nothing but non-JSON lines gets no finish chunk)
    touches = (Touch(None, Lacks(TOOL_CALLS), NullOnly("finish_reason", "usage"),
                     Known(lambda ctx: () if ctx.chunk_seen else None, "a chunk was seen")),)
    fixes = "E2, E4, E5, E6"

    def __init__(self):
        self.tools: set = set()          # choice indexes that sent tool calls

    def apply(self, obj: dict, ctx: StreamContext):
        choices = obj.get("choices")
        if choices == [] and isinstance(obj.get("usage"), dict) and not ctx.finished \
                and ctx.chunk_seen:
            # the usage chunk comes only after generation ended: the stream is complete,
            # and its missing finish_reason goes before it
            return [self._finish_chunk(ctx), obj]
        changed = False
        for choice in choices_of(obj):
            if not isinstance(choice, dict):
                continue
            ctx.chunk_seen = True
            index = choice.get("index", 0)
            delta = choice.get("delta")
            if isinstance(delta, dict) and delta.get("tool_calls"):
                self.tools.add(index)
            reason = choice.get("finish_reason")
            if reason is None:
                continue
            if reason == "":
                choice["finish_reason"] = None      # E2
                changed = True
                continue
            ctx.finished = True
            if reason == "stop" and index in self.tools:
                choice["finish_reason"] = "tool_calls"
                changed = True
        return changed

    def finish(self, ctx: StreamContext):
        # [DONE] is evidence of a complete stream (a cut one gets chat.terminal's error)
        if not ctx.done_seen or ctx.finished or not ctx.chunk_seen:
            return []
        return [self._finish_chunk(ctx)]

    def _finish_chunk(self, ctx: StreamContext) -> dict:
        ctx.finished = True
        env = ctx.envelope
        return {"id": env.id if env else mint_id("chatcmpl-"), "object": "chat.completion.chunk",
                "created": env.created if env else ctx.started,
                "model": env.model if env else (ctx.request.model or "unknown"),
                "choices": [{"index": 0, "delta": {},
                             "finish_reason": "tool_calls" if self.tools else "stop"}]}


DONE = Event(b"data: [DONE]\n\n", None, b"[DONE]")


class Done(Rule):
    """data: [DONE] at the end of the stream if upstream did not send it."""

    name = "chat.done"
    endpoint = "chat"
    touches = ()               # touches no event; only adds one at the end
    fixes = "E7"

    def finish(self, ctx: StreamContext):
        return [] if ctx.done_seen else [DONE]


def _asked_usage(ctx: StreamContext) -> bool:
    opts = ctx.request.get("stream_options")
    return isinstance(opts, dict) and opts.get("include_usage") is True


class HideUsage(Rule):
    """The usage chunk the proxy asked for (route option include_usage) goes only to clients that asked."""

    name = "chat.hide_usage"
    endpoint = "chat"
    touches = (Touch(None, NullOnly("usage")),)
    fixes = "clients that break on a usage chunk they did not ask for (choices: [])"

    def apply(self, obj: dict, ctx: StreamContext):
        # (a client that asked for one body gets the usage in it: non-stream bodies carry it)
        if obj.get("choices") == [] and isinstance(obj.get("usage"), dict) and ctx.request.stream \
                and not _asked_usage(ctx):
            return []
        return None


STREAM_RULES = [Envelope, ChoiceIndex, ToolCallDeltas, FinishReason, Done, HideUsage]
