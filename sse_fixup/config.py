"""YAML config -> a validated ``Config`` (errors name file, line and key; never a traceback).

Every key is documented in ``config.example.yaml``; unknown keys are rejected with a
"did you mean" hint, because a typo silently ignored is a fix silently not applied.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .chain import BodyChain, StreamChain
from .presets import DEFAULT_PRESETS, PRESETS
from .rules import BUILTIN
from .rules import paths as fpaths
from .rules.declarative import CONDITIONS, DeclarativeRule, Spec

ENDPOINTS = ("responses", "chat")
DEFAULT_UPSTREAM = "http://127.0.0.1:8080"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090


class ConfigError(Exception):
    """A config problem, already phrased for the user: ``file:line: key: message``."""


@dataclass
class Timeouts:
    connect: float | None = 10.0      # TCP connect to upstream
    first_byte: float | None = 600.0  # request sent -> first body byte (a long prompt is slow)
    idle: float | None = 600.0        # between two reads of a streaming body
    keepalive: float | None = 15.0    # an SSE comment after this much upstream silence
    shutdown_grace: float = 30.0      # SIGTERM: how long in-flight requests may finish


@dataclass
class Limits:
    max_event_bytes: int = 8 * 1024 * 1024      # one SSE event; past it the stream ends in error
    max_request_bytes: int = 32 * 1024 * 1024   # a request body; past it 413


@dataclass
class Auth:
    api_keys: list[str] = field(default_factory=list)   # inbound Bearer keys; empty = no check
    forward_key: bool = False         # pass the client's Authorization on (when api_keys is set)
    upstream_key: str | None = None   # sent upstream as Authorization: Bearer


@dataclass
class Config:
    upstream: str = DEFAULT_UPSTREAM
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    presets: list[str] = field(default_factory=lambda: list(DEFAULT_PRESETS))
    disable: list[str] = field(default_factory=list)
    rules: list[Spec] = field(default_factory=list)
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
    auth: Auth = field(default_factory=Auth)
    log_level: str = "info"
    log_bodies: bool = False
    workers: int = 1
    event_loop: str = "asyncio"       # asyncio | uvloop | auto (uvloop when installed)
    metrics: bool = True
    source: str | None = None

    def rule_names(self) -> list[str]:
        seen: list[str] = []
        for preset in self.presets:
            for name in PRESETS[preset][1]:
                if name not in seen and name not in self.disable:
                    seen.append(name)
        return seen

    def build_chains(self) -> dict[tuple[str, str], StreamChain | BodyChain]:
        """(endpoint, "stream"|"body") -> chain: custom 'before' rules, presets, custom 'after'."""
        chains = {}
        builtins = [BUILTIN[name]() for name in self.rule_names()]
        for endpoint in ENDPOINTS:
            for mode, cls in (("stream", StreamChain), ("body", BodyChain)):
                def pick(stage):
                    return [DeclarativeRule(s) for s in self.rules
                            if s.endpoint == endpoint and s.mode == mode and s.stage == stage]
                rules = pick("before") + [r for r in builtins
                                          if r.endpoint == endpoint and r.mode == mode] + pick("after")
                chains[(endpoint, mode)] = cls(endpoint, rules)
        return chains


# -- YAML with line numbers --------------------------------------------------------------

class _Map(dict):
    line = 0
    lines: dict


class _List(list):
    line = 0
    lines: list


def _construct_map(loader, node):
    loader.flatten_mapping(node)
    out = _Map()
    out.line = node.start_mark.line + 1
    out.lines = {}
    for knode, vnode in node.value:
        key = loader.construct_object(knode, deep=True)
        if key in out:
            raise ConfigError(f"{loader.name}:{knode.start_mark.line + 1}: duplicate key {key!r}")
        out[key] = loader.construct_object(vnode, deep=True)
        out.lines[key] = knode.start_mark.line + 1
    return out


def _construct_list(loader, node):
    out = _List(loader.construct_object(n, deep=True) for n in node.value)
    out.line = node.start_mark.line + 1
    out.lines = [n.start_mark.line + 1 for n in node.value]
    return out


def _loader_class():
    """A SafeLoader that records line numbers; yaml is imported only when a file is read."""
    global _LOADER
    if _LOADER is None:
        import yaml

        class _Loader(yaml.SafeLoader):
            pass

        _Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
        _Loader.add_constructor("tag:yaml.org,2002:seq", _construct_list)
        _LOADER = _Loader
    return _LOADER


_LOADER = None


class _Checker:
    def __init__(self, source: str):
        self.source = source

    def fail(self, line: int, key: str, message: str):
        where = f"{self.source}:{line}" if line else self.source
        raise ConfigError(f"{where}: {key}: {message}" if key else f"{where}: {message}")

    def keys(self, mapping: _Map, allowed, where: str):
        for key in mapping:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), list(allowed), n=1)
                more = f"; did you mean {hint[0]!r}?" if hint else \
                    f"; known keys: {', '.join(sorted(allowed))}"
                self.fail(mapping.lines.get(key, mapping.line), _join(where, key),
                          f"unknown key{more}")

    def typed(self, mapping: _Map, key: str, types, where: str, what: str):
        value = mapping[key]
        if not isinstance(value, types) or isinstance(value, bool) and bool not in _tuple(types):
            self.fail(mapping.lines.get(key, mapping.line), _join(where, key),
                      f"must be {what}, got {type(value).__name__} {value!r}")
        return value


def _tuple(t):
    return t if isinstance(t, tuple) else (t,)


def _join(where: str, key) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else str(key)


TOP_KEYS = {"upstream", "listen", "presets", "disable", "rules", "timeouts", "limits", "auth",
            "log_level", "log_bodies", "metrics", "workers", "event_loop"}
TIMEOUT_KEYS = {"connect", "first_byte", "idle", "keepalive", "shutdown_grace"}
RULE_KEYS = {"name", "match", "stage", "set", "default", "copy", "rename", "delete", "counter",
             "now", "from_request"}
MATCH_KEYS = {"endpoint", "mode", "event", "where"}
ACTIONS = ("set", "default", "copy", "rename", "delete", "counter", "now", "from_request")


def load(path: str | None) -> Config:
    """Read and validate a config file; ``None`` gives the defaults."""
    if path is None:
        return Config()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    return parse(text, path)


def parse(text: str, source: str = "<config>") -> Config:
    import yaml

    loader = _loader_class()(text)
    loader.name = source
    try:
        data = loader.get_single_data()
    except ConfigError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{line}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()
    cfg = Config(source=source)
    if data is None:
        return cfg
    ck = _Checker(source)
    if not isinstance(data, _Map):
        ck.fail(1, "", "the config file must be a mapping of keys (upstream, listen, presets, ...)")
    ck.keys(data, TOP_KEYS, "")
    if "upstream" in data:
        cfg.upstream = check_upstream(ck.typed(data, "upstream", str, "", "a URL string"),
                                      lambda msg: ck.fail(data.lines["upstream"], "upstream", msg))
    if "listen" in data:
        listen = ck.typed(data, "listen", dict, "", "a mapping with host and port")
        ck.keys(listen, {"host", "port"}, "listen")
        if "host" in listen:
            cfg.host = ck.typed(listen, "host", str, "listen", "a host name or address")
        if "port" in listen:
            cfg.port = ck.typed(listen, "port", int, "listen", "a port number")
            if not 0 <= cfg.port <= 65535:
                ck.fail(listen.lines["port"], "listen.port", "must be between 0 and 65535")
    if "presets" in data:
        cfg.presets = _names(ck, data, "presets", PRESETS, "preset")
    if "disable" in data:
        cfg.disable = _names(ck, data, "disable", BUILTIN, "built-in rule")
    if "timeouts" in data:
        tmo = ck.typed(data, "timeouts", dict, "", "a mapping")
        ck.keys(tmo, TIMEOUT_KEYS, "timeouts")
        for key in tmo:
            value = tmo[key]
            nullable = key != "shutdown_grace"
            if (value is None and not nullable) or value is not None and (
                    isinstance(value, bool) or not isinstance(value, (int, float))
                    or value < 0 or value == 0 and nullable):
                what = "> 0, or null for none" if nullable else ">= 0"
                ck.fail(tmo.lines[key], f"timeouts.{key}",
                        f"must be a number of seconds {what}; got {value!r}")
            setattr(cfg.timeouts, key, None if value is None else float(value))
    if "limits" in data:
        lim = ck.typed(data, "limits", dict, "", "a mapping")
        ck.keys(lim, {"max_event_bytes", "max_request_bytes"}, "limits")
        for key in lim:
            value = ck.typed(lim, key, int, "limits", "a number of bytes")
            if value < 1024:
                ck.fail(lim.lines[key], f"limits.{key}", f"must be at least 1024 bytes; got {value}")
            setattr(cfg.limits, key, value)
    if "auth" in data:
        _auth(ck, ck.typed(data, "auth", dict, "", "a mapping"), cfg.auth)
    if "workers" in data:
        cfg.workers = ck.typed(data, "workers", int, "", "a number of processes")
        if cfg.workers < 1:
            ck.fail(data.lines["workers"], "workers", f"must be at least 1, got {cfg.workers}")
    if "event_loop" in data:
        loop = ck.typed(data, "event_loop", str, "", "auto, asyncio or uvloop")
        if loop not in ("auto", "asyncio", "uvloop"):
            ck.fail(data.lines["event_loop"], "event_loop", f"must be auto, asyncio or uvloop; got {loop!r}")
        cfg.event_loop = loop
    if "log_bodies" in data:
        cfg.log_bodies = ck.typed(data, "log_bodies", bool, "", "true or false")
    if "log_level" in data:
        level = ck.typed(data, "log_level", str, "", "a log level")
        if level.lower() not in ("debug", "info", "warning", "error"):
            ck.fail(data.lines["log_level"], "log_level", "must be debug, info, warning or error")
        cfg.log_level = level.lower()
    if "metrics" in data:
        cfg.metrics = ck.typed(data, "metrics", bool, "", "true or false")
    if "rules" in data:
        rules = ck.typed(data, "rules", list, "", "a list of rules")
        names = set(BUILTIN)
        for i, raw in enumerate(rules):
            spec = _rule(ck, rules, i)
            if spec.name in names:
                ck.fail(rules.lines[i], f"rules[{i}].name", f"{spec.name!r} is already taken")
            names.add(spec.name)
            cfg.rules.append(spec)
    return cfg


def _auth(ck: _Checker, auth: _Map, out: Auth) -> None:
    ck.keys(auth, {"api_keys", "forward_key", "upstream_key"}, "auth")
    if "api_keys" in auth:
        keys = ck.typed(auth, "api_keys", list, "auth", "a list of keys (strings or {env: NAME})")
        for i, item in enumerate(keys):
            out.api_keys.append(_secret(ck, item, keys.lines[i], f"auth.api_keys[{i}]"))
    if "forward_key" in auth:
        out.forward_key = ck.typed(auth, "forward_key", bool, "auth", "true or false")
    if "upstream_key" in auth and auth["upstream_key"] is not None:
        out.upstream_key = _secret(ck, auth["upstream_key"], auth.lines["upstream_key"],
                                   "auth.upstream_key")


def _secret(ck: _Checker, item, line: int, key: str) -> str:
    """A key given literally or as {env: NAME}, so that secrets can stay out of the file."""
    if isinstance(item, dict) and list(item) == ["env"] and isinstance(item["env"], str):
        value = os.environ.get(item["env"])
        if not value:
            ck.fail(line, key, f"environment variable {item['env']} is not set or empty")
        return value
    if not isinstance(item, str) or not item:
        ck.fail(line, key, "must be a non-empty string or {env: VARIABLE_NAME}")
    return item


def check_upstream(url: str, fail) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(f"must be an http:// or https:// URL with a host, got {url!r}")
    if parts.query or parts.fragment:
        fail("must not carry a query string or fragment")
    return url.rstrip("/")


def _names(ck: _Checker, data: _Map, key: str, known, what: str) -> list[str]:
    value = data[key]
    if isinstance(value, str):
        value = _List([value])
        value.lines = [data.lines[key]]
    if not isinstance(value, list):
        ck.fail(data.lines[key], key, f"must be a list of {what} names")
    for i, name in enumerate(value):
        if name not in known:
            hint = difflib.get_close_matches(str(name), list(known), n=1)
            more = f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(known)}"
            line = value.lines[i] if getattr(value, "lines", None) else data.lines[key]
            ck.fail(line, f"{key}[{i}]", f"unknown {what} {name!r}{more}")
    return list(value)


def _rule(ck: _Checker, rules: _List, i: int) -> Spec:
    where = f"rules[{i}]"
    raw = rules[i]
    if not isinstance(raw, _Map):
        ck.fail(rules.lines[i], where, "each rule must be a mapping with match: and actions")
    name = raw.get("name", f"custom.{i}")
    if not isinstance(name, str) or not name:
        ck.fail(raw.lines.get("name", raw.line), f"{where}.name", "must be a non-empty string")
    where = f"{where} ({name})" if "name" in raw else where
    ck.keys(raw, RULE_KEYS, where)
    if "match" not in raw:
        ck.fail(raw.line, where, "needs a match: with at least endpoint: responses|chat")
    match = ck.typed(raw, "match", dict, where, "a mapping")
    ck.keys(match, MATCH_KEYS, f"{where}.match")
    endpoint = match.get("endpoint")
    if endpoint not in ENDPOINTS:
        ck.fail(match.lines.get("endpoint", match.line), f"{where}.match.endpoint",
                f"must be one of {', '.join(ENDPOINTS)}; got {endpoint!r}")
    mode = match.get("mode", "stream")
    if mode not in ("stream", "body"):
        ck.fail(match.lines["mode"], f"{where}.match.mode", "must be stream or body")
    event = match.get("event")
    if event is not None and not isinstance(event, str):
        ck.fail(match.lines["event"], f"{where}.match.event", "must be a glob string")
    stage = raw.get("stage", "before")
    if stage not in ("before", "after"):
        ck.fail(raw.lines["stage"], f"{where}.stage", "must be before or after (the presets)")
    spec = Spec(name=name, endpoint=endpoint, mode=mode, event=event, stage=stage)

    def path(text, line, key):
        try:
            return fpaths.parse(text)
        except fpaths.PathError as exc:
            ck.fail(line, key, str(exc))

    if "where" in match:
        conds = ck.typed(match, "where", dict, f"{where}.match", "a mapping of field path -> condition")
        for fpath, cond in conds.items():
            key = f"{where}.match.where.{fpath}"
            line = conds.lines[fpath]
            p = path(fpath, line, key)
            if cond in ("exists", "missing"):
                spec.where.append((p, cond, None))
            elif isinstance(cond, dict) and list(cond) == ["equals"]:
                spec.where.append((p, "equals", cond["equals"]))
            else:
                ck.fail(line, key, f"condition must be exists, missing or {{equals: value}}; got {cond!r}")
    for action in ACTIONS:
        if action not in raw:
            continue
        arg = raw[action]
        key = f"{where}.{action}"
        line = raw.lines[action]
        if action in ("delete", "now"):
            items = [arg] if isinstance(arg, str) else arg
            if not isinstance(items, list):
                ck.fail(line, key, "must be a field path or a list of field paths")
            for p in items:
                spec.actions.append((action, path(p, line, key), None))
            continue
        if not isinstance(arg, dict) or not arg:
            ck.fail(line, key, "must be a mapping of field path -> value")
        for fpath, value in arg.items():
            fline = arg.lines.get(fpath, line)
            p = path(fpath, fline, f"{key}.{fpath}")
            if action in ("copy", "rename"):
                if not isinstance(value, str):
                    ck.fail(fline, f"{key}.{fpath}", "must name another field path")
                other = path(value, fline, f"{key}.{fpath}")
                if p[:-1] != other[:-1] or not isinstance(p[-1], str) or not isinstance(other[-1], str):
                    ck.fail(fline, f"{key}.{fpath}",
                            "both paths must end in a field of the same object (e.g. item.id: item.call_id)")
                spec.actions.append((action, p, other))
            elif action == "counter":
                if not isinstance(value, str):
                    ck.fail(fline, f"{key}.{fpath}", "must name the counter (a string)")
                spec.actions.append((action, p, value))
            elif action == "from_request":
                if not isinstance(value, str):
                    ck.fail(fline, f"{key}.{fpath}", "must name a request field, e.g. model")
                spec.actions.append((action, p, value))
            else:
                spec.actions.append((action, p, value))
    if not spec.actions:
        ck.fail(raw.line, where, f"has no action; add one of {', '.join(ACTIONS)}")
    return spec
