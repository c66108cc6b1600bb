"""Rules written in YAML: match an event, then set / default / copy / rename / delete /
counter / now / from_request fields.  ``config.py`` validates the YAML and builds these.

Example (config.example.yaml has more)::

    - name: created-meta
      match: {endpoint: responses, event: response.created, where: {response.model: missing}}
      default: {response.created_at: $now, response.model: $request.model}
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

import orjson

from . import base, paths
from .base import Rule, StreamContext
from .touch import Lacks, Touch

CONDITIONS = ("exists", "missing", "equals")


@dataclass
class Spec:
    """A validated YAML rule (config.py builds it; errors are raised there)."""

    name: str
    endpoint: str                       # responses | chat
    mode: str = "stream"                # stream | body
    event: str | None = None            # glob on the SSE event: name / JSON type
    where: list = field(default_factory=list)      # [(path tuple, op, value)]
    actions: list = field(default_factory=list)    # [(action, path tuple, argument)]
    stage: str = "before"               # before | after the preset rules


def resolve_value(value, ctx: StreamContext):
    """``$now`` and ``$request.<field>`` in set/default values."""
    if isinstance(value, str) and value.startswith("$"):
        if value == "$now":
            return base.now()
        if value.startswith("$request."):
            return ctx.request.get(value[len("$request."):])
    return value


# a string any JSON encoder writes the same way (no escapes, no "/" some encoders escape)
_PLAIN = re.compile(r"[A-Za-z0-9 _.:\-]*")


def touches_of(spec: Spec) -> tuple[Touch, ...]:
    """What a YAML rule may touch, from its ``match``: the event glob, and for each
    ``where`` condition that a key or a value must be there, that it cannot need an
    event without those bytes."""
    evidence = []
    for path, op, value in spec.where:
        last = next((p for p in reversed(path) if isinstance(p, str)), None)
        if op == "exists" and last is not None and _PLAIN.fullmatch(last):
            evidence.append(Lacks(b'"%s":' % last.encode()))
        elif op == "equals" and isinstance(value, str) and value and _PLAIN.fullmatch(value):
            evidence.append(Lacks(orjson.dumps(value)))
    return (Touch(spec.event, *evidence),)


class DeclarativeRule(Rule):
    """A rule from the config file (no state of its own: one object serves every stream)."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.name = spec.name           # instance attribute: one class, many YAML rules
        self.endpoint = spec.endpoint
        self.mode = spec.mode
        self.touches = touches_of(spec)
        self._glob_cache: dict[str | None, bool] = {}

    def summary(self) -> str:  # type: ignore[override]
        return f"custom rule from the config file ({self.spec.endpoint}, {self.spec.mode})"

    def _matches_name(self, name) -> bool:
        hit = self._glob_cache.get(name)
        if hit is None:
            hit = isinstance(name, str) and fnmatch.fnmatchcase(name, self.spec.event)
            if len(self._glob_cache) < 1024:
                self._glob_cache[name] = hit
        return hit

    def apply(self, obj: dict, ctx: StreamContext):
        spec = self.spec
        if spec.event is not None and not self._matches_name(obj.get("type")):
            return False
        for path, op, value in spec.where:
            found = paths.get_all(obj, path)
            if op == "exists" and not any(v is not None for v in found):
                return False
            if op == "missing" and any(v is not None for v in found):
                return False
            if op == "equals" and value not in found:
                return False
        changed = False
        for action, path, arg in spec.actions:
            changed |= getattr(self, "_" + action)(obj, path, arg, ctx)
        return changed

    # -- actions: each returns whether it changed anything ---------------------------

    def _set(self, obj, path, value, ctx):
        value = resolve_value(value, ctx)
        changed = False
        for node, key in list(paths.items(obj, path, create=True)):
            if _get(node, key) != value:
                node[key] = value
                changed = True
        return changed

    def _default(self, obj, path, value, ctx):
        changed = False
        for node, key in list(paths.items(obj, path, create=True)):
            if _get(node, key) is None:
                node[key] = resolve_value(value, ctx)
                changed = True
        return changed

    def _now(self, obj, path, _arg, ctx):
        return self._default(obj, path, "$now", ctx)

    def _from_request(self, obj, path, req_field, ctx):
        value = ctx.request.get(req_field)
        return value is not None and self._default(obj, path, value, ctx)

    def _counter(self, obj, path, name, ctx):
        counters = ctx.counters             # shared by all rules of a stream
        changed = False
        for node, key in list(paths.items(obj, path, create=True)):
            n = counters.get(name, 0)
            counters[name] = n + 1
            if _get(node, key) is None:
                node[key] = n
                changed = True
        return changed

    def _copy(self, obj, dst, src, ctx):
        # both paths end under the same parent (validated): copy within each parent
        changed = False
        for node, key in list(paths.items(obj, dst, create=True)):
            value = _get(node, src[-1])
            if value is not None and _get(node, key) is None:
                node[key] = value
                changed = True
        return changed

    def _rename(self, obj, src, dst, ctx):
        changed = False
        for node, key in list(paths.items(obj, src)):
            if isinstance(node, dict) and key in node:
                node[dst[-1]] = node.pop(key)
                changed = True
        return changed

    def _delete(self, obj, path, _arg, ctx):
        changed = False
        for node, key in reversed(list(paths.items(obj, path))):
            if isinstance(node, dict) and key in node:
                del node[key]
                changed = True
            elif isinstance(node, list):
                del node[key]
                changed = True
        return changed


def _get(node, key):
    if isinstance(node, dict):
        return node.get(key)
    return node[key]
