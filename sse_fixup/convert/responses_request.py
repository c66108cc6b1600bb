"""upstream_api: chat, the request side: a ``/v1/responses`` body → a ``/v1/chat/completions`` one.

Codex CLI (``wire_api = "responses"`` is all it speaks), the AI SDK's ``.responses()`` and
openai-python's ``responses.*`` send Responses requests; many backends and gateways serve
only chat completions.  ``chat_request`` maps every field the chat API can express and
refuses, with a 400 that names the field (``TranslationError``), what it cannot - rather
than dropping a client's intent in silence:

    instructions               a system message, first
    input (string | items)     messages: message items by role (developer → system), their
                               input_text/output_text/input_image/input_file parts; a run of
                               function_call items → one assistant message's tool_calls;
                               function_call_output → a tool message; reasoning items are
                               dropped (a chat backend takes no reasoning as input)
    tools                      function tools → {"type": "function", "function": {...}};
                               hosted tools (web_search, file_search, namespace, ...) → 400,
                               or dropped with the route's ``drop_unsupported_tools: true``
    tool_choice                "auto"/"none"/"required", a named function, allowed_tools
    max_output_tokens          max_tokens
    reasoning.effort           reasoning_effort (llama-server, vLLM, OpenAI take it)
    text.format                response_format (json_schema, json_object)
    stream                     stream, with stream_options.include_usage (the usage of
                               response.completed comes from the chat stream's usage chunk)
    previous_response_id       expanded by the response store (responses_store) before
                               this runs; without a store, 400 (``stateful_check``)

Fields of the Responses API only (store, include, truncation, prompt_cache_key, metadata,
client_metadata...) are left out; any other field (a backend's own: top_k, cache_prompt)
goes to the backend as it came.
"""

from __future__ import annotations

import orjson

from . import TranslationError

# Responses fields with no chat counterpart that change nothing a chat backend could do
DROPPED = frozenset({"store", "include", "truncation", "prompt_cache_key", "prompt_cache_retention",
                     "metadata", "client_metadata", "safety_identifier", "service_tier", "stream_options",
                     "text", "reasoning", "max_output_tokens", "instructions", "input", "tools",
                     "tool_choice", "previous_response_id", "conversation", "background", "prompt",
                     "max_tool_calls", "top_logprobs"})
COPIED = ("model", "temperature", "top_p", "parallel_tool_calls", "user", "stream")
# features a chat completion cannot have: named, refused
REFUSED = {
    "background": "background responses need a response store; a chat backend answers in the request",
    "prompt": "stored prompt templates live on OpenAI's platform; send the prompt as input",
    "max_tool_calls": "a chat backend has no limit on tool calls per response",
}
HOSTED_HINT = ("a chat-completions backend can run only function tools; set "
               "drop_unsupported_tools: true on the route to drop the others instead")


def stateful_check(body: dict) -> None:
    """``previous_response_id``/``conversation`` name state kept by the server; a chat
    backend keeps none.  Refuse, never ignore (the client would get answers that forgot the
    conversation).  On a route with ``responses_store`` the proxy has already expanded
    ``previous_response_id`` into input items (``sse_fixup/store``, before the translation),
    so it arrives here only from a route without a store; ``conversation`` (OpenAI's
    Conversations API) is not emulated."""
    for key in ("previous_response_id", "conversation"):
        if body.get(key) is not None:
            raise TranslationError(key, f"sse-fixup keeps no conversation state for this route: "
                                   f"{key} cannot be resolved for a chat-completions backend "
                                   f"(upstream_api: chat); send the whole conversation as input, "
                                   f"or set responses_store in the config so that the proxy "
                                   f"keeps responses", "previous_response_not_supported")


def chat_request(body: dict, *, drop_unsupported_tools: bool = False,
                 upstream_stream: str = "as_requested") -> dict:
    """The chat completions body for the Responses body ``body`` (see the module docstring)."""
    stateful_check(body)
    for key, why in REFUSED.items():
        if body.get(key) not in (None, False):
            raise TranslationError(key, f"{key} is not supported with upstream_api: chat: {why}")
    out = {k: v for k, v in body.items() if k not in DROPPED}
    messages = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    elif instructions is not None and not isinstance(instructions, str):
        messages += _input(instructions, "instructions")
    messages += _input(body.get("input"), "input")
    out["messages"] = messages
    tools, dropped = _tools(body.get("tools"), drop_unsupported_tools)
    if tools:
        out["tools"] = tools
    else:
        out.pop("parallel_tool_calls", None)    # OpenAI refuses it without tools
    choice = _tool_choice(body.get("tool_choice"), tools, dropped)
    if choice is not None:
        out["tool_choice"] = choice
        if isinstance(choice, str) and choice != "none" and not tools:
            out.pop("tool_choice")      # nothing left to choose from (all tools dropped)
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        out["reasoning_effort"] = reasoning["effort"]
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        out["response_format"] = {"type": "json_schema", "json_schema": {
            k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        out["response_format"] = {"type": "json_object"}
    streams = {"always": True, "never": False}.get(upstream_stream, bool(body.get("stream")))
    if streams:
        out["stream_options"] = {"include_usage": True}
    if body.get("top_logprobs") is not None:
        out["logprobs"] = True
        out["top_logprobs"] = body["top_logprobs"]
    return out


def _input(value, where: str) -> list[dict]:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise TranslationError(where, f"{where} must be a string or a list of items")
    messages: list[dict] = []
    pending: list[tuple[str, str]] = []        # (call_id, name) of calls without their output yet
    for n, item in enumerate(value):
        at = f"{where}[{n}]"
        if not isinstance(item, dict):
            raise TranslationError(at, f"{at} must be an object (an input item)")
        typ = item.get("type", "message" if "role" in item else None)
        if typ == "message":
            messages.append(_message(item, at))
        elif typ == "function_call":
            call = {"id": _str(item, "call_id", at), "type": "function",
                    "function": {"name": _str(item, "name", at), "arguments": item.get("arguments") or ""}}
            pending.append((call["id"], call["function"]["name"]))
            last = messages[-1] if messages else None
            # parallel calls are one assistant turn; so are a text and the calls after it
            if last is not None and last["role"] == "assistant" and "_closed" not in last:
                last.setdefault("tool_calls", []).append(call)
                if last.get("content") == "":
                    last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif typ == "function_call_output":
            if messages and messages[-1]["role"] == "assistant":
                messages[-1]["_closed"] = True
            call_id = _output_call_id(item, pending, at)
            if call_id is None:           # a note that answers no call (see _output_call_id)
                label = ".".join(str(x) for x in (item.get("namespace"), item.get("name")) if x)
                messages.append({"role": "user", "content": f"[{label}] {_tool_output(item.get('output'), at)}"})
                continue
            messages.append({"role": "tool", "tool_call_id": call_id,
                             "content": _tool_output(item.get("output"), at)})
        elif typ == "reasoning":
            continue            # chat backends take no reasoning input (DeepSeek refuses it)
        elif typ == "item_reference":
            raise TranslationError(at, f"{at}: item_reference needs the response store "
                                   f"(responses_store), which this route has not")
        else:
            raise TranslationError(f"{at}.type", f"{at}: an input item of type {typ!r} has no "
                                   f"chat-completions equivalent (upstream_api: chat)")
    for m in messages:
        m.pop("_closed", None)
    return messages


def _message(item: dict, at: str) -> dict:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise TranslationError(f"{at}.role", f"{at}.role must be user, assistant, system or developer")
    role = "system" if role == "developer" else role     # many chat templates know no developer
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise TranslationError(f"{at}.content", f"{at}.content must be a string or a list of parts")
    parts = [_part(p, f"{at}.content[{k}]") for k, p in enumerate(content)]
    if role == "user":
        one = len(parts) == 1 and parts[0]["type"] == "text"
        return {"role": role, "content": parts[0]["text"] if one else parts}
    if any(p["type"] != "text" for p in parts):
        raise TranslationError(f"{at}.content", f"{at}: only a user message may carry images "
                               f"or files in chat completions")
    # system and assistant content as one string: what every chat template accepts
    return {"role": role, "content": "".join(p["text"] for p in parts)}


def _part(part, at: str) -> dict:
    if not isinstance(part, dict):
        raise TranslationError(at, f"{at} must be an object (a content part)")
    typ = part.get("type")
    if typ in ("input_text", "output_text", "text", "refusal", "summary_text", "reasoning_text"):
        text = part.get("refusal" if typ == "refusal" else "text")
        if not isinstance(text, str):
            raise TranslationError(at, f"{at}: a {typ} part needs a string")
        return {"type": "text", "text": text}
    if typ == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise TranslationError(at, f"{at}: an input_image needs image_url (a file_id needs "
                                   f"OpenAI's file store, which a chat backend has not)")
        image = {"url": url}
        if isinstance(part.get("detail"), str):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if typ == "input_file":
        if not isinstance(part.get("file_data"), str):
            raise TranslationError(at, f"{at}: an input_file needs file_data (file_id and file_url "
                                   f"need OpenAI's file store)")
        return {"type": "file", "file": {k: part[k] for k in ("file_data", "filename") if k in part}}
    raise TranslationError(f"{at}.type", f"{at}: a content part of type {typ!r} has no "
                           f"chat-completions equivalent")


def _tool_output(output, at: str) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):        # text parts (images cannot go into a tool message)
        return "".join(_part(p, f"{at}.output[{k}]")["text"] if isinstance(p, dict)
                       and p.get("type") in ("input_text", "output_text") else _no_image(at, k)
                       for k, p in enumerate(output))
    if output is None:
        raise TranslationError(f"{at}.output", f"{at}: function_call_output needs output")
    return orjson.dumps(output).decode()


def _no_image(at: str, k: int) -> str:
    raise TranslationError(f"{at}.output[{k}]", f"{at}.output[{k}]: a chat tool message carries "
                           f"only text")


def _output_call_id(item: dict, pending: list, at: str) -> str | None:
    """The call an output answers.  An output with a ``name`` but no ``call_id`` answers the
    open call of that name.  Codex 0.171 also adds such an item that answers no call at all
    (after ``create_goal``: ``{"type": "function_call_output", "namespace": "agent", "name":
    "goal_objective", "output": ...}``, a note for the server): None, and it goes to a chat
    backend as a user message naming it, since a tool message must answer a call."""
    call_id = item.get("call_id")
    if not call_id:
        name = item.get("name")
        if not isinstance(name, str) or not name:
            return _str(item, "call_id", at)            # the 400, naming the field
        match = [c for c in pending if c[1] == name]
        if not match:
            return None
        call_id = match[0][0]
    for c in pending:
        if c[0] == call_id:
            pending.remove(c)
            break
    return call_id


def _str(item: dict, key: str, at: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise TranslationError(f"{at}.{key}", f"{at}.{key} must be a non-empty string")
    return value


def _tools(tools, drop: bool) -> tuple[list[dict], set[str]]:
    """Chat tools, and the types of the hosted tools dropped."""
    if tools is None:
        return [], set()
    if not isinstance(tools, list):
        raise TranslationError("tools", "tools must be a list")
    out, dropped = [], set()
    for n, tool in enumerate(tools):
        typ = tool.get("type") if isinstance(tool, dict) else None
        if typ == "function":
            fn = {"name": _str(tool, "name", f"tools[{n}]")}
            fn.update((k, tool[k]) for k in ("description", "parameters", "strict") if tool.get(k) is not None)
            out.append({"type": "function", "function": fn})
        elif drop:
            dropped.add(str(typ))
        else:
            raise TranslationError(f"tools[{n}].type", f"tools[{n}]: a tool of type {typ!r} "
                                   f"cannot be used with upstream_api: chat: {HOSTED_HINT}",
                                   "unsupported_tool")
    return out, dropped


def _tool_choice(choice, tools: list[dict], dropped: set[str]):
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if not isinstance(choice, dict):
        raise TranslationError("tool_choice", "tool_choice must be auto, none, required or an object")
    typ = choice.get("type")
    if typ == "function":
        return {"type": "function", "function": {"name": _str(choice, "name", "tool_choice")}}
    if typ == "allowed_tools":
        # the chat API's allowed_tools is not widely served: the allowed subset, and the mode
        allowed = {t.get("name") for t in choice.get("tools") or () if isinstance(t, dict)}
        tools[:] = [t for t in tools if t["function"]["name"] in allowed]
        return "required" if choice.get("mode") == "required" else "auto"
    if typ in dropped:
        return "auto"
    raise TranslationError("tool_choice", f"tool_choice of type {typ!r} names a tool a chat "
                           f"backend cannot run: {HOSTED_HINT}", "unsupported_tool")
