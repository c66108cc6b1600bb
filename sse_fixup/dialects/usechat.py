"""The request ``useChat`` posts, made into a streaming chat completions request.

``DefaultChatTransport`` POSTs ``{id, messages: UIMessage[], trigger, messageId, ...body}``
to ``/api/chat``; a ``UIMessage`` is ``{id, role, parts}`` with parts ``text``,
``reasoning``, ``file``, ``step-start``, and tool parts (``tool-<name>`` or ``dynamic-tool``
with ``toolCallId``, ``state``, ``input``, ``output`` / ``errorText``).  The backend wants
OpenAI chat messages: an assistant message per step (its text and its tool calls), then a
``tool`` message per call that has a result.  Every other body field (``model``, ``tools``,
``temperature``, ...: ``useChat``'s ``body`` option) goes into the chat request as it is.
Reasoning parts are not sent back (chat templates drop them anyway).

``responses_request`` is the same for a Responses backend (``ui_endpoint: responses``):
``input`` items - messages, ``function_call`` and ``function_call_output`` - instead of
chat messages; the extra fields (``tools`` in the Responses shape) go as they are.
"""

from __future__ import annotations

import orjson

UI_FIELDS = frozenset({"id", "messages", "trigger", "messageId"})


class UIRequestError(ValueError):
    """The body is not a useChat request; ``param`` names the place."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message, self.param = message, param


def _text(parts) -> str:
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text"
                   and isinstance(p.get("text"), str))


def _tool_name(part: dict) -> str | None:
    kind = part.get("type", "")
    if kind == "dynamic-tool":
        return part.get("toolName")
    return kind[5:] if kind.startswith("tool-") else None


def _user_content(parts):
    files = [p for p in parts if isinstance(p, dict) and p.get("type") == "file"
             and str(p.get("mediaType", "")).startswith("image/") and p.get("url")]
    if not files:
        return _text(parts)
    content = [{"type": "text", "text": _text(parts)}] if _text(parts) else []
    return content + [{"type": "image_url", "image_url": {"url": p["url"]}} for p in files]


def _assistant(parts) -> list[dict]:
    """One assistant message per step, each followed by its tool results."""
    out: list[dict] = []
    steps: list[list] = [[]]
    for p in parts:
        if isinstance(p, dict) and p.get("type") == "step-start":
            if steps[-1]:
                steps.append([])
        else:
            steps[-1].append(p)
    for step in steps:
        text = _text(step)
        calls, results = [], []
        for p in step:
            if not isinstance(p, dict) or _tool_name(p) is None or not p.get("toolCallId"):
                continue
            if p.get("state") in ("input-streaming",):
                continue                   # never finished: not a call the backend made
            call_id = p["toolCallId"]
            calls.append({"id": call_id, "type": "function",
                          "function": {"name": _tool_name(p),
                                       "arguments": orjson.dumps(p.get("input") or {}).decode()}})
            if p.get("state") == "output-available":
                output = p.get("output")
                results.append({"role": "tool", "tool_call_id": call_id,
                                "content": output if isinstance(output, str) else orjson.dumps(output).decode()})
            elif p.get("state") == "output-error":
                results.append({"role": "tool", "tool_call_id": call_id,
                                "content": f"error: {p.get('errorText') or 'the tool failed'}"})
        if not text and not calls:
            continue
        msg: dict = {"role": "assistant", "content": text or None}
        if calls:
            msg["tool_calls"] = calls
        out.append(msg)
        out += results
    return out


def _checked(body) -> list:
    """The UI messages of a useChat body, each with its parts (raises UIRequestError)."""
    if not isinstance(body, dict):
        raise UIRequestError("the body must be a JSON object {messages: [...]} (what useChat posts)")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise UIRequestError("messages must be a list of UI messages", "messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise UIRequestError(f"messages[{i}] must be a UI message with role system, user or "
                                 "assistant", f"messages[{i}]")
        parts = m.get("parts")
        if parts is None and isinstance(m.get("content"), str):      # AI SDK 4's shape
            parts = [{"type": "text", "text": m["content"]}]
        if not isinstance(parts, list):
            raise UIRequestError(f"messages[{i}].parts must be a list", f"messages[{i}].parts")
        out.append((m["role"], parts))
    return out


def _extra(body: dict, route_model: str | None) -> dict:
    req = {k: v for k, v in body.items() if k not in UI_FIELDS}
    if not isinstance(req.get("model"), str) and route_model:
        req["model"] = route_model
    req["stream"] = True
    return req


def chat_request(body, route_model: str | None = None) -> dict:
    """The chat completions request for a useChat body (raises UIRequestError)."""
    out: list[dict] = []
    for role, parts in _checked(body):
        if role == "assistant":
            out += _assistant(parts)
        elif role == "user":
            out.append({"role": "user", "content": _user_content(parts)})
        else:
            out.append({"role": "system", "content": _text(parts)})
    return {**_extra(body, route_model), "messages": out}


def responses_request(body, route_model: str | None = None) -> dict:
    """The Responses request for a useChat body: the chat messages as ``input`` items."""
    items: list[dict] = []
    for msg in chat_request(body)["messages"]:
        role = msg["role"]
        if role == "tool":
            items.append({"type": "function_call_output", "call_id": msg["tool_call_id"],
                          "output": msg["content"]})
        elif role == "assistant":
            if msg.get("content"):
                items.append({"type": "message", "role": "assistant",
                              "content": [{"type": "output_text", "text": msg["content"]}]})
            for tc in msg.get("tool_calls") or ():
                items.append({"type": "function_call", "call_id": tc["id"], "name": tc["function"]["name"],
                              "arguments": tc["function"]["arguments"]})
        else:
            content = msg["content"]
            if isinstance(content, list):
                content = [{"type": "input_text", "text": p["text"]} if p["type"] == "text" else
                           {"type": "input_image", "image_url": p["image_url"]["url"]} for p in content]
            items.append({"role": role, "content": content})
    return {**_extra(body, route_model), "input": items}
