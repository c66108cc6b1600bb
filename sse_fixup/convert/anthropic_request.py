"""An OpenAI ``/v1/chat/completions`` request as an Anthropic ``/v1/messages`` request.

For chat-only clients (voice platforms such as Vapi, the AI SDK's chat providers,
openai-python) in front of a backend that speaks the Messages API (Anthropic, llama-server's
``/v1/messages``).  What the Messages API has no way to say is refused with a 400 naming
the field (``TranslationError``) rather than dropped: a client must not get an answer to a
question it did not ask (n > 1, logprobs, a JSON response format, audio, penalties).
Fields that only describe the caller (user, store, metadata, seed, ...) are dropped.

    messages: system/developer (leading)   → system
              user text, image_url          → user text / image blocks (base64 or url)
              assistant content, tool_calls → assistant text / tool_use blocks
              tool (consecutive ones)       → one user message of tool_result blocks
    tools (function)       → tools with input_schema
    tool_choice            → auto / any (required) / tool (named) / none
    parallel_tool_calls    → tool_choice.disable_parallel_tool_use
    max_(completion_)tokens → max_tokens (the route's default_max_tokens when absent)
    stop                   → stop_sequences
    temperature, top_p, stream (and top_k, thinking sent as extra fields) → as they are
"""

from __future__ import annotations

import re

import orjson

from . import TranslationError

PASSED = ("temperature", "top_p", "top_k", "thinking")     # same name, same meaning
DROPPED = frozenset({"model", "messages", "user", "store", "metadata", "seed", "service_tier",
                     "stream_options", "prompt_cache_key", "safety_identifier", "stream",
                     "max_tokens", "max_completion_tokens", "stop", "tools", "tool_choice",
                     "parallel_tool_calls", *PASSED})
# fields accepted at their "does nothing" value; anything else cannot be expressed
NEUTRAL = {"n": (1, None), "logprobs": (False, None), "top_logprobs": (0, None),
           "presence_penalty": (0, 0.0, None), "frequency_penalty": (0, 0.0, None),
           "logit_bias": ({}, None), "response_format": ({"type": "text"}, None),
           "modalities": (["text"], None), "audio": (None,), "prediction": (None,),
           "reasoning_effort": (None,), "web_search_options": (None,), "verbosity": (None,),
           "function_call": (None,), "functions": (None, [])}
DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)", re.S)


def _bad(param: str, message: str, code: str = "unsupported_parameter") -> TranslationError:
    return TranslationError(param, f"{param}: {message} (this route's backend speaks the "
                            "Anthropic Messages API, upstream_api: anthropic)", code)


def translate(body: dict, default_max_tokens: int) -> dict:
    """The Messages request for the chat request ``body``; raises ``TranslationError``."""
    for key, value in body.items():
        if key in DROPPED:
            continue
        if key in NEUTRAL:
            if value not in NEUTRAL[key]:
                raise _bad(key, f"{orjson.dumps(value).decode()[:80]} cannot be translated")
            continue
        raise _bad(key, "this field has no Anthropic Messages counterpart")
    system, messages = _messages(body.get("messages"))
    out: dict = {"model": body.get("model"), "messages": messages,
                 "max_tokens": _max_tokens(body, default_max_tokens)}
    if system:
        out["system"] = system
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("stop", "must be a string or a list of strings", "invalid_value")
        if stops:
            out["stop_sequences"] = stops
    out.update((k, body[k]) for k in PASSED if body.get(k) is not None)
    tools = _tools(body.get("tools"))
    if tools:
        out["tools"] = tools
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"), bool(tools))
    if choice is not None:
        out["tool_choice"] = choice
    if body.get("stream") is not None:
        out["stream"] = bool(body["stream"])
    return out


def _max_tokens(body: dict, default: int) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _bad(key, "must be a positive integer", "invalid_value")
        return value
    return default


def _text_of(content, where: str, what: str) -> str:
    """A system/tool content (a string or text parts) as one string."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(where, f"the content of a {what} message must be a string or a list of text parts",
                   "invalid_value")
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise _bad(f"{where}[{j}]", f"a {what} message can hold only text parts here")
        texts.append(part["text"])
    return "".join(texts)


def _messages(messages) -> tuple[list, list]:
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "must be a non-empty list of messages", "invalid_value")
    system: list = []
    out: list = []
    results: list | None = None         # the tool_result blocks of the current run of tool messages
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(where, "must be an object", "invalid_value")
        role = msg.get("role")
        if role != "tool":
            results = None
        if role in ("system", "developer"):
            if out:             # the Messages API has one system prompt, before the turns
                raise _bad(f"{where}.role", f"a {role} message after the first user or assistant "
                           "message cannot be translated (Anthropic has one system prompt)")
            system.append({"type": "text", "text": _text_of(msg.get("content"), f"{where}.content", role)})
        elif role == "user":
            out.append({"role": "user", "content": _user_content(msg.get("content"), f"{where}.content")})
        elif role == "assistant":
            content = _assistant_content(msg, where)
            if content:         # an empty assistant turn is refused by the Messages API
                out.append({"role": "assistant", "content": content})
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise _bad(f"{where}.tool_call_id", "a tool message needs the id of its tool call",
                           "invalid_value")
            block = {"type": "tool_result", "tool_use_id": call_id,
                     "content": _text_of(msg.get("content"), f"{where}.content", "tool")}
            if results is None:     # consecutive tool messages answer one assistant turn
                results = []
                out.append({"role": "user", "content": results})
            results.append(block)
        else:
            raise _bad(f"{where}.role", f"role {role!r} cannot be translated", "invalid_value")
    return system, out


def _user_content(content, where: str):
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(where, "must be a string or a list of content parts", "invalid_value")
    blocks = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url"), f"{at}.image_url"))
        else:
            raise _bad(f"{at}.type", f"content part type {kind!r} cannot be translated "
                       "(text and image_url can)")
    return blocks


def _image(image, where: str) -> dict:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise _bad(f"{where}.url", "must be a string", "invalid_value")
    m = DATA_URL.fullmatch(url)
    if m:
        source = {"type": "base64", "media_type": m["type"], "data": m["data"]}
    elif url.startswith(("http://", "https://")):
        source = {"type": "url", "url": url}
    else:
        raise _bad(f"{where}.url", "must be an http(s) URL or a base64 data: URL", "invalid_value")
    return {"type": "image", "source": source}


def _assistant_content(msg: dict, where: str) -> list:
    content = msg.get("content")
    blocks: list = []
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    elif isinstance(content, list):
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            text = part.get(kind) if kind in ("text", "refusal") else None
            if not isinstance(text, str):
                raise _bad(f"{where}.content[{j}].type", f"assistant content part {kind!r} cannot be translated")
            if text:
                blocks.append({"type": "text", "text": text})
    elif content is not None:
        raise _bad(f"{where}.content", "must be a string, a list of parts or null", "invalid_value")
    # (reasoning_content of earlier turns is not sent: Anthropic needs the signature it
    # gave with a thinking block, which no chat client keeps)
    calls = msg.get("tool_calls")
    if calls is not None and not isinstance(calls, list):
        raise _bad(f"{where}.tool_calls", "must be a list", "invalid_value")
    for k, call in enumerate(calls or ()):
        at = f"{where}.tool_calls[{k}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(call.get("id"), str):
            raise _bad(at, "a tool call needs an id and function.name", "invalid_value")
        args = fn.get("arguments")
        try:
            value = orjson.loads(args) if isinstance(args, str) and args.strip() else {}
        except orjson.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            raise _bad(f"{at}.function.arguments", "must be a JSON object (tool_use input is one)",
                       "invalid_value")
        blocks.append({"type": "tool_use", "id": call["id"], "name": fn["name"], "input": value})
    return blocks


def _tools(tools) -> list:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _bad("tools", "must be a list", "invalid_value")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise _bad(f"tools[{i}].type", f"tool type {kind!r} cannot be translated (function can)")
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(f"tools[{i}].function.name", "must be a string", "invalid_value")
        schema = fn.get("parameters")
        if schema is None:
            schema = {"type": "object", "properties": {}}     # input_schema is required
        elif not isinstance(schema, dict):
            raise _bad(f"tools[{i}].function.parameters", "must be a JSON Schema object", "invalid_value")
        entry = {"name": fn["name"], "input_schema": schema}
        if isinstance(fn.get("description"), str):
            entry["description"] = fn["description"]
        out.append(entry)
    return out


def _tool_choice(choice, parallel, has_tools: bool):
    if choice is None or choice == "auto":
        out = {"type": "auto"} if has_tools and parallel is False else None
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        return {"type": "none"} if has_tools else None
    elif isinstance(choice, dict) and choice.get("type") == "function" \
            and isinstance(choice.get("function"), dict) and isinstance(choice["function"].get("name"), str):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise _bad("tool_choice", f"{orjson.dumps(choice).decode()[:80]} cannot be translated "
                   "(auto, required, none and a named function can)", "invalid_value")
    if out is not None and parallel is False:
        out["disable_parallel_tool_use"] = True
    return out
