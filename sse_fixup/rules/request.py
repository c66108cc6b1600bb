"""Request rules: the YAML rules' operations on the request body, before it goes upstream.

Some defects are in what the client sends, not in what comes back: Codex sends hosted
tool types llama-server refuses (``'type' of tool must be 'function'``, defect R17), one
backend needs ``stream_options`` and another refuses it without ``stream`` (E12), a
history replays tool-call arguments as an object where the backend wants a string (C13).
A request rule matches the client's endpoint and model, checks ``where`` conditions and
runs ``set`` / ``default`` / ``delete`` / ``rename`` / ``copy`` (the response rules' own
operations, ``declarative.py``) on the body as the client sent it - after the useChat
translation, before the route's own rewrites (model, stream, ``upstream_api``).

``where`` can select list items: the conditions on a path with ``[*]`` (``tools[*].type:
{not_equals: function}``) pick the items of that list for which they hold, and the actions
on paths under the same ``tools[*]`` apply to those items only (``delete: "tools[*]"``
drops them).  The rule runs when the body conditions hold and, with item conditions, at
least one item was picked.
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass, field
from types import SimpleNamespace

import orjson

from . import paths
from .base import RequestInfo
from .declarative import DeclarativeRule, Spec

REQUEST_CONDITIONS = ("exists", "missing", "equals", "not_equals", "in", "not_in")
REQUEST_ACTIONS = ("set", "default", "copy", "rename", "delete")


@dataclass
class RequestSpec:
    """A validated request rule (config.py builds the YAML ones; the built-ins are below)."""

    name: str
    endpoint: str | None = None         # responses | chat | None (both)
    model: str | None = None            # glob on the body's model
    where: list = field(default_factory=list)      # [(path tuple, op, value)]
    actions: list = field(default_factory=list)    # [(action, path tuple, argument)]
    doc: str = ""


def holds(found: list, op: str, value) -> bool:
    if op == "exists":
        return any(v is not None for v in found)
    if op == "missing":
        return not any(v is not None for v in found)
    if op == "equals":
        return value in found
    if op == "not_equals":
        return value not in found
    if op == "in":
        return any(v in value for v in found)
    return not any(v in value for v in found)           # not_in


def item_prefix(spec_where) -> tuple | None:
    """The ``list[*]`` the item conditions select from (at most one per rule)."""
    prefixes = {p[:p.index(paths.WILD) + 1] for p, _, _ in spec_where if paths.WILD in p}
    if len(prefixes) > 1:
        raise ValueError("item conditions must all select from one list (one [*] prefix), "
                         f"got {len(prefixes)}")
    return prefixes.pop() if prefixes else None


# one object serves the operations; they need no state of their own
_OPS = DeclarativeRule(Spec(name="request", endpoint="chat"))


class RequestRule:
    def __init__(self, spec: RequestSpec):
        self.spec = spec
        self.name = spec.name
        self.prefix = item_prefix(spec.where)
        n = len(self.prefix) if self.prefix else 0
        self.plain = [w for w in spec.where if self.prefix is None or w[0][:n] != self.prefix]
        self.per_item = [(p[n:], op, v) for p, op, v in spec.where if self.prefix and p[:n] == self.prefix]

    def applies_to(self, endpoint: str, model) -> bool:
        s = self.spec
        if s.endpoint is not None and s.endpoint != endpoint:
            return False
        return s.model is None or (isinstance(model, str) and fnmatch.fnmatchcase(model, s.model))

    def apply(self, body: dict, ctx) -> bool:
        for path, op, value in self.plain:
            if not holds(paths.get_all(body, path), op, value):
                return False
        if self.prefix is None:
            return self._run(body, self.spec.actions, ctx)
        return self._run_items(body, ctx)

    def _run(self, obj, actions, ctx) -> bool:
        changed = False
        for action, path, arg in actions:
            changed |= getattr(_OPS, "_" + action)(obj, path, arg, ctx)
        return changed

    def _run_items(self, body, ctx) -> bool:
        prefix, n = self.prefix, len(self.prefix)
        lists = [v for v in paths.get_all(body, prefix[:-1]) if isinstance(v, list)] if len(prefix) > 1 else []
        picked = []
        for lst in lists:
            chosen = [i for i, item in enumerate(lst)
                      if all(holds(paths.get_all(item, rest) if rest else [item], op, value)
                             for rest, op, value in self.per_item)]
            if chosen:
                picked.append((lst, chosen))
        if not picked:
            return False
        changed = False
        outer = []
        for action, path, arg in self.spec.actions:
            if path[:n] != prefix:
                outer.append((action, path, arg))
                continue
            rest = path[n:]
            other = arg[n:] if isinstance(arg, tuple) and arg[:n] == prefix else arg
            for lst, chosen in picked:
                if not rest:
                    if action == "delete":
                        for i in reversed(chosen):
                            del lst[i]
                        changed = True
                    continue
                for i in chosen:
                    if isinstance(lst[i], dict):
                        changed |= getattr(_OPS, "_" + action)(lst[i], rest, other, ctx)
        return self._run(body, outer, ctx) or changed


class ToolArgumentsAsString:
    """chat: history tool_calls[].function.arguments sent as an object become a JSON string (C13)."""

    name = "chat.tool_args_string"
    spec = SimpleNamespace(endpoint="chat", model=None)
    doc = __doc__

    def applies_to(self, endpoint, model):
        return endpoint == "chat"

    def apply(self, body, ctx) -> bool:
        changed = False
        for msg in body.get("messages") or ():
            for tc in (msg.get("tool_calls") or ()) if isinstance(msg, dict) else ():
                fn = tc.get("function") if isinstance(tc, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), (dict, list)):
                    fn["arguments"] = orjson.dumps(fn["arguments"]).decode()
                    changed = True
        return changed


def _p(text: str) -> tuple:
    return paths.parse(text)


BUILTIN: dict[str, object] = {}
for _spec in (
    RequestSpec("responses.drop_hosted_tools", "responses",
                where=[(_p("tools[*].type"), "not_equals", "function")], actions=[("delete", _p("tools[*]"), None)],
                doc="responses: drop hosted tools (web_search, file_search, ...) llama-server refuses with "
                    "\"'type' of tool must be 'function'\" (R17, Codex)"),
    RequestSpec("responses.default_text_format", "responses", actions=[("default", _p("text.format"), {"type": "text"})],
                doc="responses: text.format defaults to {type: text} (LM Studio: 'text.format Required', R17)"),
    RequestSpec("responses.no_parallel_tool_calls", "responses",
                actions=[("set", _p("parallel_tool_calls"), False)],
                doc="responses: parallel_tool_calls false (vLLM 0.19 crashes on parallel calls, R7)"),
    RequestSpec("chat.drop_hosted_tools", "chat",
                where=[(_p("tools[*].type"), "not_equals", "function")], actions=[("delete", _p("tools[*]"), None)],
                doc="chat: drop tools whose type is not function (llama-server refuses them)"),
    RequestSpec("chat.stream_options_with_stream", "chat", where=[(_p("stream"), "not_equals", True)],
                actions=[("delete", _p("stream_options"), None)],
                doc="chat: drop stream_options from a request that does not stream (backends refuse "
                    "it without stream: true, E12)"),
    RequestSpec("chat.think_off_effort", "chat", where=[(_p("think"), "equals", False)],
                actions=[("default", _p("reasoning_effort"), "none")],
                doc="chat: think: false also sets reasoning_effort: none (Ollama ignores think: false "
                    "alone, T6)"),
):
    BUILTIN[_spec.name] = RequestRule(_spec)
BUILTIN[ToolArgumentsAsString.name] = ToolArgumentsAsString()


class RequestRules:
    """A route's request rules, in order (built-in names and YAML rules, as configured)."""

    def __init__(self, entries):
        self.rules = [BUILTIN[e] if isinstance(e, str) else RequestRule(e) for e in entries or ()]

    def __bool__(self):
        return bool(self.rules)

    def apply(self, body: dict, endpoint: str) -> tuple[dict, list[str]]:
        """``body`` with the rules applied (a copy when any rule fires) and their names."""
        model = body.get("model")
        rules = [r for r in self.rules if r.applies_to(endpoint, model)]
        if not rules:
            return body, []
        out = copy.deepcopy(body)
        ctx = SimpleNamespace(request=RequestInfo(endpoint, "", body), counters={})
        fired = [r.name for r in rules if r.apply(out, ctx)]
        return (out, fired) if fired else (body, [])
