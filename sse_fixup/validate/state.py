"""The stream state machines: what no single event shows.

Responses (openai-python ``ResponseStreamState``, the AI SDK's ``ongoingToolCalls``, the
Open Responses ordering rules): ``response.created`` first; ``sequence_number`` strictly
increasing; an item added (at the next ``output_index``) before its deltas and closed
once; ``output_index`` / ``content_index`` consistent across an item's events; one
terminal event, nothing after it; one id and model on every lifecycle event.

Chat (openai-python's ``accumulate_delta``, the AI SDK's tool-call assembly): one id /
created / model; per tool index the id and name on the first delta only; one id per
index; ``finish_reason`` ``tool_calls`` when tool calls were sent; ``[DONE]`` last.
"""

from __future__ import annotations

from . import fields as F
from .catalogue import AISDK, AISDK_LEGACY, BOTH_AISDK, CHAT_SPEC, CODEX, COMPAT, OPENAI_PY, SPEC

ITEM_SCOPED = frozenset(t for t, spec in F.EVENTS.items() if "item_id:" in spec)
PARTED = frozenset({"response.output_text.delta", "response.output_text.done",
                    "response.refusal.delta", "response.refusal.done",
                    "response.output_text.annotation.added",
                    "response.reasoning_text.delta", "response.reasoning_text.done",
                    "response.content_part.done"})


class Item:
    __slots__ = ("index", "type", "done", "parts", "args", "args_done")

    def __init__(self, index: int, typ):
        self.index = index
        self.type = typ
        self.done = False
        self.parts = 0
        self.args: list[str] = []
        self.args_done = False


class ResponsesState:
    """Feed each parsed event (``add``), then ``end``; problems come back as
    (position, field, what, defect, clients, rule) tuples."""

    def __init__(self, model: str | None = None):
        self.out: list[tuple] = []
        self.pos = -1
        self.model = model              # the requested model, when known
        self.first = True
        self.seq: int | None = None
        self.items: dict[str, Item] = {}
        self.added = 0
        self.terminal: int | None = None
        self.ids: dict[str, set] = {"id": set(), "model": set(), "created_at": set()}
        self.done_ids: list[str] = []

    def _p(self, field, what, defect, clients, rule):
        self.out.append((self.pos, field, what, defect, clients, rule))

    def add(self, pos: int, obj: dict) -> None:
        self.pos = pos
        typ = obj.get("type")
        if self.first:
            self.first = False
            if typ != "response.created":
                self._p("type", f"the first event is {typ!r}, not response.created", "R11",
                        (OPENAI_PY, SPEC), "")
        if self.terminal is not None:
            self._p("type", f"{typ!r} after the terminal event (#{self.terminal})", "R7",
                    (OPENAI_PY, SPEC), "")
        seq = obj.get("sequence_number")
        if F.kind_ok(seq, "int"):
            if self.seq is not None and seq <= self.seq:
                self._p("sequence_number", f"{seq} after {self.seq}: not strictly increasing", "R13",
                        (OPENAI_PY, SPEC), "responses.sequence_number")
            self.seq = seq
        if typ in F.LIFECYCLE:
            self._lifecycle(typ, obj)
        elif typ in ("response.output_item.added", "response.output_item.done"):
            self._item(typ, obj)
        elif typ in ITEM_SCOPED:
            self._scoped(typ, obj)

    def _lifecycle(self, typ, obj):
        resp = obj.get("response")
        if not isinstance(resp, dict):
            return
        for key, rule, defect, clients in (
                ("id", "responses.response_skeleton", "R11", (OPENAI_PY, SPEC)),
                ("model", "responses.model_name", "llama#12", (SPEC,)),
                ("created_at", "responses.response_skeleton", "OR", (SPEC,))):
            value = resp.get(key)
            if value is None:
                continue
            seen = self.ids[key]
            if seen and value not in seen:
                self._p(f"response.{key}", f"{value!r}, not {sorted(map(str, seen))[0]!r} as on the "
                        "earlier events", defect, clients, rule)
            seen.add(value)
        model = resp.get("model")
        if self.model is not None and isinstance(model, str) and model != self.model:
            self._p("response.model", f"{model!r}, not the requested {self.model!r}", "llama#12", (SPEC,),
                    "responses.model_name")
        if typ in F.TERMINAL:
            if self.terminal is not None:
                self._p("type", f"a second terminal event (first: #{self.terminal})", "R7",
                        (OPENAI_PY, SPEC), "")
            self.terminal = self.pos
            for item_id, item in self.items.items():
                if not item.done:
                    self._p("response", f"item {item_id!r} (output_index {item.index}) was never closed by "
                            "response.output_item.done", "R11", (CODEX, SPEC), "")
            output = resp.get("output")
            if isinstance(output, list) and not output and self.done_ids:
                self._p("response.output", f"[] although {len(self.done_ids)} items were done", "R11",
                        (CODEX, SPEC), "")

    def _item(self, typ, obj):
        item = obj.get("item")
        if not isinstance(item, dict):
            return
        key = item.get("id") if isinstance(item.get("id"), str) else item.get("call_id")
        index = obj.get("output_index")
        if typ == "response.output_item.added":
            if key in self.items:
                self._p("item.id", f"{key!r} added twice", "R18", (OPENAI_PY, *BOTH_AISDK, SPEC),
                        "responses.output_index")
            if F.kind_ok(index, "int") and index != self.added:
                self._p("output_index", f"{index}, not {self.added} (the item's position)", "R18",
                        (OPENAI_PY, *BOTH_AISDK, SPEC), "responses.output_index")
            if isinstance(key, str):
                self.items[key] = Item(index if F.kind_ok(index, "int") else self.added, item.get("type"))
            self.added += 1
            return
        known = self.items.get(key) if isinstance(key, str) else None
        if known is None:
            self._p("item.id", f"output_item.done for {key!r}, never added", "R18", (OPENAI_PY, SPEC),
                    "")
            return
        if known.done:
            self._p("item.id", f"{key!r} closed twice", "R11", (OPENAI_PY, SPEC), "")
        known.done = True
        self.done_ids.append(key)
        if F.kind_ok(index, "int") and index != known.index:
            self._p("output_index", f"{index}, not {known.index} as when {key!r} was added", "R1",
                    (OPENAI_PY, *BOTH_AISDK, SPEC), "responses.output_index")
        if item.get("type") == "function_call":
            args = "".join(known.args)
            final = item.get("arguments")
            if final == "" and args:
                self._p("item.arguments", "'' although the deltas carried the arguments (the AI SDK "
                        "calls the tool with no input)", "R11", BOTH_AISDK, "responses.function_call_items")
            elif isinstance(final, str) and known.args and final != args:
                self._p("item.arguments", "differs from the joined argument deltas", "R11",
                        (SPEC,), "")
            if not known.args_done:
                self._p("type", "no response.function_call_arguments.done before output_item.done",
                        "llama#6", (SPEC,), "responses.function_call_items")

    def _scoped(self, typ, obj):
        item_id = obj.get("item_id")
        known = self.items.get(item_id) if isinstance(item_id, str) else None
        if known is None:
            if isinstance(item_id, str):
                self._p("item_id", f"{item_id!r}: no output_item.added before it", "R11",
                        (OPENAI_PY, *BOTH_AISDK, SPEC),
                        "responses.function_call_items" if "function_call" in typ else "")
            return
        if known.done:
            self._p("item_id", f"{item_id!r} after its output_item.done", "R11", (OPENAI_PY, SPEC), "")
        index = obj.get("output_index")
        if F.kind_ok(index, "int") and index != known.index:
            self._p("output_index", f"{index}, not {known.index} (item {item_id!r})", "R1",
                    (OPENAI_PY, AISDK, SPEC), "responses.output_index")
        ci = obj.get("content_index")
        if typ == "response.content_part.added":
            if F.kind_ok(ci, "int") and ci != known.parts:
                self._p("content_index", f"{ci}, not {known.parts} (parts of {item_id!r} so far)", "R6",
                        (OPENAI_PY, SPEC), "responses.content_index")
            known.parts += 1
        elif typ in PARTED and F.kind_ok(ci, "int") and known.parts and ci >= known.parts:
            self._p("content_index", f"{ci}: item {item_id!r} has {known.parts} part(s)", "R6",
                    (OPENAI_PY, SPEC), "responses.content_index")
        if typ == "response.function_call_arguments.delta" and isinstance(obj.get("delta"), str):
            known.args.append(obj["delta"])
        elif typ == "response.function_call_arguments.done":
            known.args_done = True

    def end(self, cut: bool = False) -> list[tuple]:
        self.pos = None
        if self.terminal is None:
            self._p("type", "the stream ended without response.completed / incomplete / failed", "R7",
                    (OPENAI_PY, *BOTH_AISDK, CODEX, SPEC), "responses.terminal")
        return self.out



class ChatState:
    """The chat stream state machine (see the module docstring)."""

    def __init__(self):
        self.out: list[tuple] = []
        self.pos = -1
        self.envelope: dict = {}
        self.calls: dict = {}          # (choice, tool index) -> id
        self.tool_seen: set = set()    # choices that sent tool calls
        self.finish: dict = {}         # choice -> finish_reason
        self.done: int | None = None
        self.chunks = 0

    def _p(self, field, what, defect, clients, rule):
        self.out.append((self.pos, field, what, defect, clients, rule))

    def add(self, pos: int, obj: dict | None, done: bool = False) -> None:
        self.pos = pos
        if self.done is not None:
            self._p("data", f"{'[DONE]' if done else 'a chunk'} after data: [DONE] (#{self.done})", "E7",
                    (OPENAI_PY, COMPAT), "chat.done")
        if done:
            self.done = pos if self.done is None else self.done
            return
        if obj is None or "error" in obj and "choices" not in obj:
            return
        self.chunks += 1
        for key in ("id", "created", "model"):
            value = obj.get(key)
            if value is None:
                continue
            if key in self.envelope and self.envelope[key] != value:
                self._p(key, f"{value!r}, not {self.envelope[key]!r} as on the first chunk", "E13",
                        (CHAT_SPEC,), "chat.envelope")
            self.envelope.setdefault(key, value)
        for ci, choice in enumerate(obj.get("choices") if isinstance(obj.get("choices"), list) else ()):
            if isinstance(choice, dict):
                self._choice(choice.get("index", ci), choice, f"choices[{ci}]")

    def _choice(self, cidx, choice, where):
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        if "role" in delta and delta["role"] is None:
            self._p(f"{where}.delta.role", "null", "E1", (AISDK, COMPAT), "")
        calls = delta.get("tool_calls")
        if isinstance(calls, list) and not calls:
            self._p(f"{where}.delta.tool_calls", "[] (an empty list: clients wait for a tool call)", "C14",
                    BOTH_AISDK, "chat.tool_call_deltas")
        for ti, call in enumerate(calls if isinstance(calls, list) else ()):
            if isinstance(call, dict):
                self._call(cidx, call, f"{where}.delta.tool_calls[{ti}]")
        if isinstance(calls, list) and calls:
            self.tool_seen.add(cidx)
        reason = choice.get("finish_reason")
        if reason is not None:
            if reason not in F.FINISH:
                self._p(f"{where}.finish_reason", f"{reason!r}, not stop|length|tool_calls|content_filter",
                        "E2", (OPENAI_PY, *BOTH_AISDK), "chat.finish_reason")
            elif reason == "stop" and cidx in self.tool_seen:
                self._p(f"{where}.finish_reason", "'stop' although tool calls were sent (the agent "
                        "never runs them)", "E4", (*BOTH_AISDK, COMPAT, OPENAI_PY), "chat.finish_reason")
            self.finish[cidx] = reason

    def _call(self, cidx, call, where):
        index = call.get("index")
        if not F.kind_ok(index, "int"):
            return                      # the field table reports it (C1)
        fn = call.get("function") if isinstance(call.get("function"), dict) else {}
        key = (cidx, index)
        cid = call.get("id")
        if key not in self.calls:
            self.calls[key] = cid
            if not isinstance(cid, str) or not cid:
                self._p(f"{where}.id", "missing on the first delta of this call", "C5",
                        (*BOTH_AISDK, COMPAT), "chat.tool_call_deltas")
            if not isinstance(fn.get("name"), str) or not fn.get("name"):
                self._p(f"{where}.function.name", "missing on the first delta of this call", "C5",
                        (*BOTH_AISDK, COMPAT), "chat.tool_call_deltas")
        else:
            first = self.calls[key]
            if isinstance(cid, str) and cid and first is not None and cid != first:
                self._p(f"{where}.index", f"{index} again for another call ({cid!r} after {first!r})", "C2",
                        (OPENAI_PY, *BOTH_AISDK, COMPAT), "chat.tool_call_deltas")
                self.calls[key] = cid
            elif isinstance(cid, str) and cid:
                self._p(f"{where}.id", "repeated on a continuation delta (openai-python concatenates it)",
                        "C8", (OPENAI_PY,), "chat.tool_call_deltas")
            if "name" in fn:
                name = fn["name"]
                if name is None:
                    self._p(f"{where}.function.name", "null on a continuation delta", "C10",
                            (AISDK_LEGACY, COMPAT), "chat.tool_call_deltas")
                elif name == "":
                    self._p(f"{where}.function.name", "'' on a continuation delta", "C9",
                            (OPENAI_PY, COMPAT), "chat.tool_call_deltas")
                else:
                    self._p(f"{where}.function.name", "repeated on a continuation delta (openai-python "
                            "concatenates it)", "C8", (OPENAI_PY,), "chat.tool_call_deltas")
        if "arguments" in fn and not isinstance(fn["arguments"], str):
            self._p(f"{where}.function.arguments", "not a JSON string", "C13",
                    (OPENAI_PY, *BOTH_AISDK, COMPAT), "chat.tool_call_deltas")

    def end(self, cut: bool = False) -> list[tuple]:
        self.pos = None
        if self.chunks and not self.finish:
            self._p("finish_reason", "no chunk of the stream has a finish_reason", "E5",
                    (*BOTH_AISDK, COMPAT), "chat.finish_reason")
        if self.done is None:
            self._p("data", "the stream ended without data: [DONE]", "E7", (OPENAI_PY, COMPAT), "chat.done")
        return self.out
