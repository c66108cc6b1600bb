"""What an answer says, read from the client endpoint's events after every rule.

The dialect writers (``ndjson``, ``ui_stream``) and the answer assembly (``answers``) all
need the same facts from a chat stream or a Responses stream - text, reasoning, tool calls
and their arguments, the finish, the usage, an error - however the backend spelled them.
``Reading`` turns each event into a few plain steps and keeps the tool calls' arguments
until they are complete:

    ("text", delta)            ("reasoning", delta)
    ("tool_start", key)        ("tool_args", key, delta)       ("tool_done", key)
    ("usage", dict)            ("finish", reason)               ("error", code, message)
    ("done",)                  the stream says it is over ([DONE], response.completed ...)

Finish reasons are chat's words (stop, length, tool_calls, content_filter); a Responses
stream's status is mapped to them.  Unknown events give no step: nothing here changes an
event, the writers decide what to do with what is not understood.
"""

from __future__ import annotations

import orjson


class Call:
    """One tool call: its id, name and arguments so far."""

    __slots__ = ("id", "name", "args", "done")

    def __init__(self, id, name):
        self.id = id
        self.name = name
        self.args: list[str] = []
        self.done = False

    @property
    def arguments(self) -> str:
        return "".join(self.args)

    def parsed(self):
        """The arguments as JSON (an object), or None when they do not parse."""
        text = self.arguments.strip() or "{}"
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return None


_INCOMPLETE = {"max_output_tokens": "length", "max_tokens": "length", "content_filter": "content_filter"}


class Reading:
    """The steps of one answer, event by event (``endpoint``: chat or responses)."""

    __slots__ = ("endpoint", "calls", "finish", "usage", "error", "over", "_by_index")

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.calls: dict = {}             # key -> Call, in the order they began
        self.finish: str | None = None
        self.usage: dict | None = None
        self.error: tuple[str, str] | None = None
        self.over = False
        self._by_index: dict = {}         # Responses: output_index -> item key

    def read(self, ev) -> list[tuple]:
        data = ev.data
        if data is None:
            if ev.raw is not None:
                return []                 # a comment or a stray blank line
        elif data == b"[DONE]":
            return self._over()
        obj = ev.json                     # an event a rule made has only its object
        if obj is None:
            return []
        return self._chat(obj) if self.endpoint == "chat" else self._responses(obj)

    def _over(self) -> list[tuple]:
        if self.over:
            return []
        self.over = True
        if self.finish is None and self.error is None:
            # a chat stream complete by its usage chunk or [DONE] alone (issue #10)
            self.finish = "tool_calls" if self.calls else "stop"
        return [("tool_done", k) for k in self.close_calls()] + [("done",)]

    def close_calls(self) -> list:
        keys = [k for k, c in self.calls.items() if not c.done]
        for k in keys:
            self.calls[k].done = True
        return keys

    def _fail(self, err) -> list[tuple]:
        if self.error is not None or self.over:
            return []
        err = err if isinstance(err, dict) else {"message": str(err)}
        self.error = (str(err.get("code") or err.get("type") or "upstream_error"),
                      str(err.get("message") or "the upstream reported an error"))
        self.over = True
        return [("error", *self.error)]

    # -- chat.completion.chunk ------------------------------------------------------------

    def _chat(self, obj: dict) -> list[tuple]:
        out: list[tuple] = []
        choices = obj.get("choices")
        if "error" in obj and not choices:
            return self._fail(obj["error"])
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue                  # n > 1: the first choice is the answer
            delta = choice.get("delta")
            if isinstance(delta, dict):
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if isinstance(reasoning, str) and reasoning:
                    out.append(("reasoning", reasoning))
                content = delta.get("content")
                if isinstance(content, str) and content:
                    out.append(("text", content))
                for tc in delta.get("tool_calls") or ():
                    if isinstance(tc, dict):
                        out += self._chat_call(tc)
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                self.finish = reason
                out += [("tool_done", k) for k in self.close_calls()]
                out.append(("finish", reason))
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
            out.append(("usage", usage))
        return out

    def _chat_call(self, tc: dict) -> list[tuple]:
        key = tc.get("index", 0)
        fn = tc.get("function") if isinstance(tc.get("function"), dict) else {}
        out = []
        call = self.calls.get(key)
        if call is None:
            call = self.calls[key] = Call(tc.get("id") or f"call_{key}", fn.get("name") or "")
            out.append(("tool_start", key))
        elif fn.get("name") and not call.name:
            call.name = fn["name"]
        args = fn.get("arguments")
        if isinstance(args, dict):        # some backends send an object (defect C13)
            args = orjson.dumps(args).decode()
        if isinstance(args, str) and args:
            call.args.append(args)
            out.append(("tool_args", key, args))
        return out

    # -- Responses events -----------------------------------------------------------------

    def _responses(self, obj: dict) -> list[tuple]:
        kind = obj.get("type")
        if not isinstance(kind, str):
            return []
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            delta = obj.get("delta")
            return [("text", delta)] if isinstance(delta, str) and delta else []
        if kind in ("response.reasoning_text.delta", "response.reasoning_summary_text.delta"):
            delta = obj.get("delta")
            return [("reasoning", delta)] if isinstance(delta, str) and delta else []
        if kind == "response.output_item.added":
            item = obj.get("item")
            if isinstance(item, dict) and item.get("type") == "function_call":
                key = item.get("id") or item.get("call_id") or f"fc_{len(self.calls)}"
                self._by_index[obj.get("output_index")] = key
                if key not in self.calls:
                    self.calls[key] = Call(item.get("call_id") or key, item.get("name") or "")
                    return [("tool_start", key)]
            return []
        if kind == "response.function_call_arguments.delta":
            key = obj.get("item_id")
            if key not in self.calls:
                key = self._by_index.get(obj.get("output_index"), key)
            call = self.calls.get(key)
            delta = obj.get("delta")
            if call is None or call.done or not isinstance(delta, str) or not delta:
                return []
            call.args.append(delta)
            return [("tool_args", key, delta)]
        if kind == "response.output_item.done":
            item = obj.get("item")
            if not (isinstance(item, dict) and item.get("type") == "function_call"):
                return []
            key = item.get("id") or item.get("call_id")
            if key not in self.calls:
                key = self._by_index.get(obj.get("output_index"), key)
            out = []
            call = self.calls.get(key)
            if call is None:
                call = self.calls[key] = Call(item.get("call_id") or key, item.get("name") or "")
                out.append(("tool_start", key))
            if call.done:
                return out
            whole = item.get("arguments")
            if isinstance(whole, str) and whole != call.arguments:
                rest = whole[len(call.arguments):] if whole.startswith(call.arguments) else None
                if rest is None:
                    call.args = [whole]   # the final arguments win over the deltas
                elif rest:
                    call.args.append(rest)
                    out.append(("tool_args", key, rest))
            call.done = True
            return out + [("tool_done", key)]
        if kind in ("response.completed", "response.incomplete"):
            resp = obj.get("response") if isinstance(obj.get("response"), dict) else {}
            out = []
            usage = resp.get("usage")
            if isinstance(usage, dict):
                self.usage = usage
                out.append(("usage", usage))
            if kind == "response.incomplete":
                details = resp.get("incomplete_details") or {}
                reason = _INCOMPLETE.get(details.get("reason") if isinstance(details, dict) else None, "length")
            else:
                reason = "tool_calls" if self.calls else "stop"
            self.finish = reason
            out += [("tool_done", k) for k in self.close_calls()]
            return out + [("finish", reason)] + self._over()
        if kind == "response.failed":
            resp = obj.get("response") if isinstance(obj.get("response"), dict) else {}
            return self._fail(resp.get("error") or {"code": "response_failed",
                                                    "message": "the response failed"})
        if kind == "error":
            err = obj.get("error") if isinstance(obj.get("error"), dict) else obj
            return self._fail(err)
        return []
