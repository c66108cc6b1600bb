"""Per-event field tables: what strict clients require of each event, chunk and body.

A table line is ``"name:kind"``: kind ``str int num bool list dict any`` or ``=value``
(a constant), ``?`` after it: nullable (present, may be null), ``~`` before the name:
optional (may be absent; checked when present).  Required means what the client's own
schema says: openai-python's pydantic types (``openai.types.responses`` / ``.chat``, as
listed in the OpenAI stream spec notes), the AI SDK's Zod schemas, the Open Responses
``ResponseResource``.  Which clients, defect and rule go with a field: ``META``.
"""

from __future__ import annotations

from .catalogue import AISDK_LEGACY, BOTH_AISDK, CODEX, COMPAT, OPENAI_PY, SPEC

Problem = tuple  # (field path, what is wrong, defect, clients, rule)


def table(spec: str) -> list[tuple[str, str, bool, bool]]:
    """``"a:str b:int? ~c:list"`` → [(name, kind, nullable, optional)]."""
    out = []
    for word in spec.split():
        name, kind = word.split(":", 1)
        optional = name.startswith("~")
        out.append((name.lstrip("~"), kind.rstrip("?"), kind.endswith("?"), optional))
    return out


def kind_ok(value, kind: str) -> bool:
    if kind == "any":
        return True
    if kind.startswith("="):
        return value == kind[1:]
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "num":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list)
    if kind == "dict":
        return isinstance(value, dict)
    raise ValueError(kind)


def lax_ok(value, kind: str) -> bool:
    """What pydantic (openai-python) accepts for ``kind`` in lax mode besides the type itself."""
    if kind == "int":
        if isinstance(value, float):
            return value.is_integer()
        return isinstance(value, str) and value.strip().lstrip("+-").isdigit()
    if kind == "num" and isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    if kind == "bool":
        return value in (0, 1, "true", "false", "True", "False", "0", "1", "yes", "no", "on", "off")
    return False


def check(obj: dict, spec, where: str, meta) -> list[Problem]:
    """The problems of ``obj`` against a table; ``meta(name)`` gives (defect, clients, rule)."""
    out = []
    for name, kind, nullable, optional in (table(spec) if isinstance(spec, str) else spec):
        path = f"{where}.{name}" if where else name
        if name not in obj:
            if not optional:
                out.append((path, "missing", *meta(name)))
            continue
        value = obj[name]
        if value is None:
            if not nullable:
                out.append((path, "null" if optional or kind != "any" else "missing", *meta(name)))
            continue
        if not kind_ok(value, kind):
            want = f"{kind[1:]!r}" if kind.startswith("=") else f"a {kind}"
            defect, clients, rule = meta(name)
            if lax_ok(value, kind):
                # pydantic's lax mode turns "3" or 3.0 into 3: openai-python takes it, Zod does not
                clients = tuple(c for c in clients if c != OPENAI_PY)
                want += " (openai-python coerces it)"
            out.append((path, f"{_shown(value)}, not {want}", defect, clients, rule))
    return out


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- Responses: events ------------------------------------------------------------------

SEQ = "sequence_number:int"
ITEM = "item_id:str output_index:int"
EVENTS: dict[str, str] = {
    "error": f"message:str {SEQ} ~code:str? ~param:str?",
    "response.created": f"response:dict {SEQ}",
    "response.in_progress": f"response:dict {SEQ}",
    "response.queued": f"response:dict {SEQ}",
    "response.completed": f"response:dict {SEQ}",
    "response.incomplete": f"response:dict {SEQ}",
    "response.failed": f"response:dict {SEQ}",
    "response.output_item.added": f"item:dict output_index:int {SEQ}",
    "response.output_item.done": f"item:dict output_index:int {SEQ}",
    "response.content_part.added": f"{ITEM} content_index:int part:dict {SEQ}",
    "response.content_part.done": f"{ITEM} content_index:int part:dict {SEQ}",
    "response.output_text.delta": f"{ITEM} content_index:int delta:str logprobs:list {SEQ}",
    "response.output_text.done": f"{ITEM} content_index:int text:str logprobs:list {SEQ}",
    "response.output_text.annotation.added": f"{ITEM} content_index:int annotation_index:int {SEQ}",
    "response.refusal.delta": f"{ITEM} content_index:int delta:str {SEQ}",
    "response.refusal.done": f"{ITEM} content_index:int refusal:str {SEQ}",
    "response.function_call_arguments.delta": f"{ITEM} delta:str {SEQ}",
    "response.function_call_arguments.done": f"{ITEM} name:str arguments:str {SEQ}",
    "response.custom_tool_call_input.delta": f"{ITEM} delta:str {SEQ}",
    "response.custom_tool_call_input.done": f"{ITEM} input:str {SEQ}",
    "response.reasoning_text.delta": f"{ITEM} content_index:int delta:str {SEQ}",
    "response.reasoning_text.done": f"{ITEM} content_index:int text:str {SEQ}",
    "response.reasoning_summary_part.added": f"{ITEM} summary_index:int part:dict {SEQ}",
    "response.reasoning_summary_part.done": f"{ITEM} summary_index:int part:dict {SEQ}",
    "response.reasoning_summary_text.delta": f"{ITEM} summary_index:int delta:str {SEQ}",
    "response.reasoning_summary_text.done": f"{ITEM} summary_index:int text:str {SEQ}",
}
LIFECYCLE = frozenset(t for t in EVENTS if EVENTS[t].startswith("response:"))
TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})

# the fields each AI SDK line requires of an event (beyond type); the rest it ignores
AISDK_EVENT = {
    "error": {"sequence_number"}, "response.failed": {"sequence_number", "response"},
    "response.created": {"response"}, "response.completed": {"response"},
    "response.incomplete": {"response"},
    "response.output_item.added": {"output_index", "item"}, "response.output_item.done": {"output_index", "item"},
    "response.output_text.delta": {"item_id", "delta"},
    "response.function_call_arguments.delta": {"item_id", "output_index", "delta"},
    "response.function_call_arguments.done": {"item_id", "output_index", "arguments"},
    "response.reasoning_summary_part.added": {"item_id", "summary_index"},
    "response.reasoning_summary_part.done": {"item_id", "summary_index"},
    "response.reasoning_summary_text.delta": {"item_id", "summary_index", "delta"},
}

# field -> (defect, rule) on Responses events
EVENT_FIELD = {
    "sequence_number": ("R13", "responses.sequence_number"),
    "output_index": ("R1", "responses.output_index"),
    "content_index": ("R5", "responses.content_index"),
    "logprobs": ("R14", "responses.text_parts"),
    "item_id": ("R18", "responses.function_call_items"),
    "arguments": ("llama#6", "responses.function_call_items"),
    "name": ("llama#6", "responses.function_call_items"),
    "response": ("R3", "responses.response_skeleton"),
    "message": ("R16", "responses.error_event"),
    "code": ("R2", "responses.error_event"),
    "param": ("R16", "responses.error_event"),
}


def event_meta(typ: str):
    aisdk = AISDK_EVENT.get(typ, ())

    def meta(name: str):
        defect, rule = EVENT_FIELD.get(name, ("", ""))
        clients = (OPENAI_PY, *(BOTH_AISDK if name in aisdk else ()), SPEC)
        return defect, clients, rule
    return meta


# -- Responses: the response object -----------------------------------------------------

RESPONSE = ("id:str created_at:num model:str object:=response output:list parallel_tool_calls:bool "
            "tool_choice:any tools:list ~status:str ~usage:dict?")
# what the Open Responses ResponseResource requires on top (issue 16 item 0)
RESPONSE_SPEC = ("status:str completed_at:int? incomplete_details:dict? previous_response_id:str? "
                 "instructions:str? error:dict? truncation:str text:dict top_p:num temperature:num "
                 "presence_penalty:num frequency_penalty:num top_logprobs:int reasoning:dict? usage:dict? "
                 "max_output_tokens:int? max_tool_calls:int? store:bool background:bool service_tier:str "
                 "metadata:any safety_identifier:str? prompt_cache_key:str?")
USAGE = "input_tokens:int output_tokens:int total_tokens:int input_tokens_details:dict output_tokens_details:dict"
FUNCTION_TOOL = "name:str description:str? parameters:dict? strict:bool?"

RESPONSE_FIELD = {
    "created_at": ("R1", "responses.response_skeleton"), "model": ("R1", "responses.response_skeleton"),
    "tools": ("R10", "responses.response_skeleton"), "output": ("R15", "responses.response_skeleton"),
    "id": ("R11", "responses.response_skeleton"),
}


def check_response(resp: dict, where: str, typ: str | None, body: bool = False) -> list[Problem]:
    """The response object of a lifecycle event (``typ``) or a JSON body (``body``)."""
    rule_of = "responses.body" if body else "responses.response_skeleton"
    aisdk_needs = {"id", "created_at", "model"} if typ == "response.created" else set()

    def meta(name):
        defect, rule = RESPONSE_FIELD.get(name, ("R3", rule_of))
        clients = (OPENAI_PY, *(BOTH_AISDK if name in aisdk_needs else ()), SPEC)
        return defect, clients, rule_of if body else rule

    out = check(resp, RESPONSE, where, meta)
    out += check(resp, RESPONSE_SPEC, where, lambda name: ("OR", (SPEC,), rule_of))
    if typ == "response.completed" or body and resp.get("status") == "completed":
        if not kind_ok(resp.get("completed_at"), "int"):
            out.append((f"{where}.completed_at" if where else "completed_at",
                        "missing on a completed response", "OR", (SPEC,), rule_of))
    usage = resp.get("usage")
    usage_rule = "responses.body" if body else "responses.usage"
    if isinstance(usage, dict):
        upath = f"{where}.usage" if where else "usage"
        out += check(usage, USAGE, upath, lambda name: (
            "R12" if name in ("input_tokens", "total_tokens") else "R4",
            (OPENAI_PY, CODEX, SPEC) + (BOTH_AISDK if name in ("input_tokens", "output_tokens") else ()),
            usage_rule))
        for key, inner, clients in (("input_tokens_details", "cached_tokens", (OPENAI_PY, CODEX, SPEC)),
                                    # openai-python's InputTokensDetails requires it too (cross-check)
                                    ("input_tokens_details", "cache_write_tokens", (OPENAI_PY,)),
                                    ("output_tokens_details", "reasoning_tokens", (OPENAI_PY, CODEX, SPEC))):
            d = usage.get(key)
            if isinstance(d, dict) and not kind_ok(d.get(inner), "int"):
                out.append((f"{upath}.{key}.{inner}", "missing" if inner not in d else "not an int",
                            "R4", clients, usage_rule))
    elif typ in ("response.completed", "response.incomplete") and usage is None:
        out.append((f"{where}.usage", "missing (the AI SDK 3.0.41 line drops the event)", "R2",
                    (AISDK_LEGACY,), usage_rule))
    if isinstance(resp.get("tools"), list):
        for i, tool in enumerate(resp["tools"]):
            if isinstance(tool, dict) and tool.get("type") == "function":
                out += check(tool, FUNCTION_TOOL, f"{where}.tools[{i}]" if where else f"tools[{i}]",
                             lambda name: ("OR", (SPEC,), rule_of))
    if isinstance(resp.get("output"), list):
        for i, item in enumerate(resp["output"]):
            out += check_item(item, f"{where}.output[{i}]" if where else f"output[{i}]", done=True,
                              aisdk=False, rule=rule_of if body else "responses.function_call_items")
    return out


# -- Responses: output items ------------------------------------------------------------

ITEMS = {
    "message": "id:str content:list role:=assistant status:str",
    "function_call": "arguments:str call_id:str name:str ~id:str ~status:str",
    "reasoning": "id:str summary:list ~content:list?",
}
STATUSES = frozenset({"in_progress", "completed", "incomplete"})


def check_item(item, where: str, *, done: bool, aisdk: bool = True, rule: str = "") -> list[Problem]:
    if not isinstance(item, dict):
        return [(where, "not an object", "R15", (OPENAI_PY, *BOTH_AISDK, SPEC), "")]
    typ = item.get("type")
    spec = ITEMS.get(typ)
    if spec is None:
        return [] if isinstance(typ, str) else [(f"{where}.type", "missing", "", (OPENAI_PY, SPEC), "")]
    fc = typ == "function_call"
    rule = rule or ("responses.function_call_items" if fc else "responses.text_parts")

    def meta(name):
        ai = aisdk and (name == "id" or fc and name in ("call_id", "name", "arguments"))
        return ("R1" if fc and name == "id" else "R11"), (OPENAI_PY, *(BOTH_AISDK if ai else ()), SPEC), rule

    out = check(item, spec, where, meta)
    if fc:
        if aisdk and not isinstance(item.get("id"), str):
            out.append((f"{where}.id", "missing (the AI SDK drops the tool call)", "R1", (*BOTH_AISDK, SPEC), rule))
        status = item.get("status")
        if status is not None and status not in STATUSES:
            out.append((f"{where}.status", f"{status!r}, not in_progress|completed|incomplete", "R11",
                        (OPENAI_PY, *BOTH_AISDK, SPEC), rule))
        elif done and status is None:
            out.append((f"{where}.status", "missing on output_item.done", "R1",
                        (*BOTH_AISDK, SPEC) if aisdk else (SPEC,), rule))
        elif done and aisdk and status != "completed":
            out.append((f"{where}.status", f"{status!r}: the AI SDK 3.0.41 line needs 'completed'", "R1",
                        (AISDK_LEGACY,), rule))
    elif typ == "message":
        if item.get("status") is not None and item.get("status") not in STATUSES:
            out.append((f"{where}.status", f"{item['status']!r}, not in_progress|completed|incomplete", "R11",
                        (OPENAI_PY, SPEC), rule))
        for i, part in enumerate(item.get("content") if isinstance(item.get("content"), list) else ()):
            out += check_part(part, f"{where}.content[{i}]")
    elif typ == "reasoning":
        for i, part in enumerate(item.get("summary") if isinstance(item.get("summary"), list) else ()):
            out += check_part(part, f"{where}.summary[{i}]")
    return out


PARTS = {"output_text": "text:str annotations:list", "refusal": "refusal:str",
         "reasoning_text": "text:str", "summary_text": "text:str"}


def check_part(part, where: str) -> list[Problem]:
    if not isinstance(part, dict):
        return [(where, "not an object", "R14", (OPENAI_PY, SPEC), "responses.text_parts")]
    spec = PARTS.get(part.get("type"))
    if spec is None:
        return [(f"{where}.type", f"{_shown(part.get('type'))}, not a content part type", "",
                 (OPENAI_PY, SPEC), "")]
    return check(part, spec, where, lambda name: ("R14", (OPENAI_PY, SPEC), "responses.text_parts"))


# -- chat -------------------------------------------------------------------------------

CHUNK = "id:str choices:list created:int model:str object:=chat.completion.chunk ~usage:dict?"
CHOICE = "delta:dict index:int ~finish_reason:str?"
TOOL_DELTA = "index:int ~id:str? ~type:=function? ~function:dict?"
CHAT_USAGE = "prompt_tokens:int completion_tokens:int total_tokens:int"
FINISH = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
ROLES = frozenset({"developer", "system", "user", "assistant", "tool"})
BODY = "id:str choices:list created:int model:str object:=chat.completion ~usage:dict?"
BODY_CHOICE = "finish_reason:str index:int message:dict"
BODY_CALL = "id:str type:=function function:dict"

CHAT_FIELD = {
    "id": ("E13", "chat.envelope"), "created": ("E13", "chat.envelope"), "model": ("E13", "chat.envelope"),
    "object": ("E13", "chat.envelope"), "choices": ("E9", ""), "index": ("E3", "chat.choice_index"),
    "delta": ("E3", ""), "finish_reason": ("E2", "chat.finish_reason"),
}


def chat_meta(name, body=False):
    defect, rule = CHAT_FIELD.get(name, ("", ""))
    if body:
        rule = "chat.body"
    clients = (OPENAI_PY, COMPAT) if name in ("index", "choices") else (OPENAI_PY,)
    return defect, clients, rule
