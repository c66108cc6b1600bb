"""Field paths for declarative rules: ``response.created_at``, ``item.id``,
``choices[*].delta.tool_calls[*].index``, ``output[0].id``."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\*|\d+)\]|(\.)")
WILD = object()


class PathError(ValueError):
    pass


def parse(path: str) -> tuple:
    """``a.b[*].c`` -> ("a", "b", WILD, "c"); raises PathError with the reason."""
    if not isinstance(path, str) or not path:
        raise PathError("a field path must be a non-empty string")
    parts: list = []
    pos = 0
    expect_key = True
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if m is None:
            raise PathError(f"bad field path {path!r} at character {pos + 1}")
        key, index, dot = m.groups()
        if dot:
            if expect_key:
                raise PathError(f"bad field path {path!r}: empty name at character {pos + 1}")
            expect_key = True
        elif key is not None:
            if not expect_key:
                raise PathError(f"bad field path {path!r}: missing '.' before {key!r}")
            parts.append(key)
            expect_key = False
        else:
            if not parts:
                raise PathError(f"bad field path {path!r}: an index needs a name before it")
            parts.append(WILD if index == "*" else int(index))
            expect_key = False
        pos = m.end()
    if expect_key:
        raise PathError(f"bad field path {path!r}: ends with '.'")
    return tuple(parts)


def parents(obj, path: tuple, create: bool = False) -> list:
    """The containers holding the path's last step (each with that step's key)."""
    nodes = [obj]
    for step in path[:-1]:
        nxt = []
        for node in nodes:
            if step is WILD:
                if isinstance(node, list):
                    nxt.extend(node)
            elif isinstance(step, int):
                if isinstance(node, list) and -len(node) <= step < len(node):
                    nxt.append(node[step])
            elif isinstance(node, dict):
                child = node.get(step)
                if child is None and create:
                    child = node[step] = {}
                if child is not None:
                    nxt.append(child)
        nodes = nxt
    return nodes


def items(obj, path: tuple, create: bool = False):
    """Yield (container, key) for every place the path's last step names."""
    last = path[-1]
    for node in parents(obj, path, create):
        if last is WILD:
            if isinstance(node, list):
                yield from ((node, i) for i in range(len(node)))
        elif isinstance(last, int):
            if isinstance(node, list) and -len(node) <= last < len(node):
                yield node, last
        elif isinstance(node, dict):
            yield node, last


_ABSENT = object()


def get_all(obj, path: tuple) -> list:
    out = []
    for node, key in items(obj, path):
        value = node.get(key, _ABSENT) if isinstance(node, dict) else node[key]
        if value is not _ABSENT:
            out.append(value)
    return out
