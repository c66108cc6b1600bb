"""Config → routes → the transform for one response.

A ``Route`` is where a request goes and what is done to it and its answer: the upstream,
the request rewrites (model name, streaming, usage), and per endpoint the stream and body
rule chains (custom ``before`` rules, the built-in rules of its options and presets, custom
``after`` rules).  ``Router.route`` picks the first route whose match fits a request; the
top-level keys are the last, default route.  ``Route.open`` builds the pipeline for one
answer from what the upstream sent and what the client asked for:

    upstream SSE,  client stream   Decoder → stream rules → SSE
    upstream JSON, client JSON     body → body rules → JSON
    upstream JSON, client stream   body → body rules → JSON→SSE → stream rules → SSE
    upstream SSE,  client JSON     Decoder → stream rules → SSE→JSON → body rules → JSON

A route whose backend speaks another API (``upstream_api``) has a ``Translation`` per
client endpoint: it rewrites the request and path, and its stage, right after the reader,
turns the backend's events into the client endpoint's; the rest is the same.
"""

from __future__ import annotations

import fnmatch

import orjson

from .chain import BodyChain, Chain, RuleFailed
from .convert import Translation, TranslationError, translation
from .rules import BUILTIN
from .rules.base import RequestInfo, StreamContext
from .rules.chat import HideUsage
from .rules.declarative import DeclarativeRule
from .rules.request import RequestRules
from .sse import Decoder
from .transform import BodyReader, JSONWriter, SSEWriter, Transform

ENDPOINTS = ("responses", "chat")


def endpoint_of(path: str) -> str | None:
    """``…/responses`` and ``…/chat/completions`` (with or without ``/v1``) are endpoints."""
    path = path.rstrip("/")
    if path.endswith("/responses"):
        return "responses"
    if path.endswith("/chat/completions"):
        return "chat"
    return None


def _model_rules(builtins: list, response_model: str) -> list:
    """``response_model``: the model name every Responses event and body says - the
    requested one (the presets' rules), the backend's own (those rules left out), or a
    fixed name (the same rules, pinned to it)."""
    if response_model == "requested":
        return builtins
    from .rules import spec
    pinned = dict(zip((r.name for r in spec.STREAM_RULES + spec.BODY_RULES),
                      spec.pinned(response_model))) if response_model != "upstream" else {}
    return [pinned.get(r.name, r) for r in builtins
            if response_model != "upstream" or r not in (*spec.STREAM_RULES, *spec.BODY_RULES)]


class BodyStage:
    """The body chain as a stage: each event is a whole JSON body."""

    __slots__ = ("chain", "ctx")

    def __init__(self, chain: BodyChain, ctx: StreamContext):
        self.chain = chain
        self.ctx = ctx

    def push(self, events):
        for ev in events:
            obj = ev.json
            if obj is None:
                if ev.data:
                    self.ctx.non_json += 1
                continue
            try:
                ev.changed = self.chain.apply(obj, self.ctx) or ev.changed
            except RuleFailed:
                pass                          # the body as it came
        return events

    def end(self):
        return []


class Route:
    """One route: its match, upstream, request rewrites and chains."""

    def __init__(self, keys, max_event: int | None, *, parse_all: bool = False):
        self.keys = keys
        self.label = "default"         # for metrics: the route's number in routes:, or "default"
        match = getattr(keys, "match", None)
        self.path_glob = match.path if match is not None else None
        self.model_glob = match.model if match is not None else None
        self.upstream = keys.upstream
        self.max_event = max_event
        self.translations: dict[str, Translation | None] = {}
        self.refused: dict[str, TranslationError] = {}
        for endpoint in ENDPOINTS:
            try:
                self.translations[endpoint] = translation(keys.upstream_api, endpoint, keys)
            except TranslationError as exc:
                self.translations[endpoint] = None
                self.refused[endpoint] = exc
        self.request_rules = RequestRules(getattr(keys, "request_rules", ()))
        self.output = getattr(keys, "output", "sse")
        self.status = getattr(keys, "status", None)
        builtins = [BUILTIN[name] for name in keys.rule_names()]
        builtins = _model_rules(builtins, keys.response_model)
        self.chains: dict[tuple[str, str], Chain | BodyChain] = {}
        for endpoint in ENDPOINTS:
            for mode in ("stream", "body"):
                def pick(stage):
                    return [DeclarativeRule(s) for s in keys.rules
                            if s.endpoint == endpoint and s.mode == mode and s.stage == stage]
                rules = pick("before") + [r for r in builtins
                                          if r.endpoint == endpoint and r.mode == mode] + pick("after")
                if keys.include_usage and endpoint == "chat" and mode == "stream":
                    rules.append(HideUsage)       # last: the other rules still see the usage
                self.chains[(endpoint, mode)] = Chain(endpoint, rules, parse_all=parse_all) \
                    if mode == "stream" else BodyChain(endpoint, rules)

    def matches(self, path: str, model: str | None) -> bool:
        if self.path_glob is not None and not fnmatch.fnmatchcase(path, self.path_glob):
            return False
        if self.model_glob is not None and not (isinstance(model, str)
                                                and fnmatch.fnmatchcase(model, self.model_glob)):
            return False
        return True

    def describe(self) -> str:
        match = " ".join(f"{k}={v}" for k, v in (("path", self.path_glob), ("model", self.model_glob)) if v)
        k = self.keys
        opts = [f"upstream_stream={k.upstream_stream}"] if k.upstream_stream != "as_requested" else []
        opts += [f"model={k.model}"] if k.model else []
        opts += [name for name in ("include_usage", "drop_reasoning") if getattr(k, name)]
        opts += [f"think_tags={k.think_tags}"] if k.think_tags else []
        opts += [f"reasoning_field={k.reasoning_field}"] if k.reasoning_field else []
        opts += [f"upstream_api={k.upstream_api}"] if k.upstream_api else []
        return (f"{match or 'everything else'} -> {self.upstream} (presets: {', '.join(k.presets) or 'none'}"
                + (f"; {', '.join(opts)}" if opts else "") + ")")

    def request_body(self, data: bytes, body: dict | None, endpoint: str | None) -> bytes:
        """The request as it goes upstream: the route's model name, the streaming it wants,
        usage asked for.  Untouched (byte for byte) when the route changes nothing."""
        if endpoint is None:
            return data
        if endpoint in self.refused:
            raise self.refused[endpoint]
        tr = self.translations.get(endpoint)
        if body is None:
            if tr is not None:
                raise TranslationError(None, "the request body must be a JSON object to be "
                                       f"translated for this route's backend (upstream_api: "
                                       f"{tr.upstream_api})", "invalid_json")
            return data
        k = self.keys
        original = body
        if self.request_rules:
            body, _ = self.request_rules.apply(body, endpoint)
        out = tr.request(body) if tr is not None else dict(body)
        if k.model:
            out["model"] = k.model
        if k.upstream_stream == "always":
            out["stream"] = True
        elif k.upstream_stream == "never":
            out["stream"] = False
            out.pop("stream_options", None)       # some backends refuse it without stream
        if k.include_usage and endpoint == "chat" and out.get("stream") and tr is None:
            opts = out.get("stream_options")
            out["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
        return data if out == original and tr is None else orjson.dumps(out)

    def upstream_path(self, path: str, endpoint: str | None) -> str:
        """The path the backend is asked on (a translation may change it)."""
        tr = self.translations.get(endpoint) if endpoint else None
        return tr.path(path) if tr is not None else path

    def upstream_headers(self, endpoint: str | None):
        """What turns the forwarded headers into the backend API's (None: as they are)."""
        tr = self.translations.get(endpoint) if endpoint else None
        return tr.headers if tr is not None else None

    def open(self, info: RequestInfo, upstream: str, client: str | None = None, taps=(),
             output: str = "sse") -> Transform:
        """The transform for one answer: ``upstream`` is what came back, ``stream`` (SSE) or
        ``body`` (JSON), and ``client`` what the client gets (the same when not given).
        ``taps``: makers ``tap(ctx, client_shape) -> stage`` of stages that look at what the
        client gets (live validation, the response store), placed just before the writer.
        ``output``: a dialect (``ndjson``, ``ui-message-stream``) instead of the endpoint's
        SSE: the endpoint's stream is made as for a streaming client, then that writer."""
        if output != "sse":
            client = "stream"
        t = self._open(info, upstream, client or upstream)
        if output != "sse":
            from .dialects import writer
            t.stages[-1] = writer(output, t.ctx, info.endpoint, self.status,
                                  reasoning=getattr(self.keys, "ndjson_reasoning", False))
            t.verbatim = False
            t.tapped()                      # every event must reach the dialect's writer
        elif (client or upstream) == "stream" and self.status is not None and self.status.sse:
            from .dialects.status import StatusSSEWriter
            s = self.status
            t.stages[-1] = StatusSSEWriter(info.endpoint == "responses", s.sse, s.start, s.end)
        if taps:
            t.stages[-1:-1] = [tap(t.ctx, client or upstream) for tap in taps]
            t.tapped()
        return t

    def _open(self, info: RequestInfo, upstream: str, client: str) -> Transform:
        ctx = StreamContext(info)
        endpoint = info.endpoint
        stream = self.chains[(endpoint, "stream")]
        body = self.chains[(endpoint, "body")]
        named = endpoint == "responses"
        tr = self.translations.get(endpoint)
        first = [] if tr is None else [tr.stream_stage(ctx) if upstream == "stream" else tr.body_stage(ctx)]
        if upstream == client == "stream":
            return Transform(Decoder(self.max_event), [*first, stream.open(ctx), SSEWriter(named)], ctx)
        if upstream == client == "body":
            return Transform(BodyReader(), [*first, BodyStage(body, ctx), JSONWriter()], ctx)
        from .convert import json_to_stream, stream_to_json     # only routes that convert need them
        if upstream == "body":
            return Transform(BodyReader(), [*first, BodyStage(body, ctx), json_to_stream(endpoint, ctx),
                                            stream.open(ctx), SSEWriter(named)], ctx)
        return Transform(Decoder(self.max_event), [*first, stream.open(ctx), stream_to_json(endpoint, ctx),
                                                   BodyStage(body, ctx), JSONWriter()], ctx)

    def upstream_error(self, endpoint: str | None, status: int, data: bytes) -> bytes | None:
        """A translated route's backend error body in the client's API (None: as it came)."""
        tr = self.translations.get(endpoint) if endpoint else None
        return tr.error(status, data) if tr is not None else None


class Router:
    """The routes of a config, in order, the default (top-level) route last."""

    def __init__(self, cfg, *, parse_all: bool = False):
        limit = cfg.limits.max_event_bytes
        self.routes = [Route(keys, limit, parse_all=parse_all) for keys in cfg.effective_routes()]
        for i, route in enumerate(self.routes):
            route.label = str(i + 1) if i < len(self.routes) - 1 else "default"
        self.upstreams = list(dict.fromkeys(r.upstream for r in self.routes))   # distinct, in order
        # POSTs to these paths may be useChat's (each route's ui_path; the route decides)
        self.ui_paths = frozenset(getattr(r.keys, "ui_path", None) for r in self.routes) - {None}

    def replace(self, other: Router) -> None:
        """Take ``other``'s routes (a reload); in one step, so a request sees one or the other."""
        self.routes, self.upstreams, self.ui_paths = other.routes, other.upstreams, other.ui_paths

    def route(self, path: str, model: str | None = None) -> Route:
        for route in self.routes:
            if route.matches(path, model):
                return route
        return self.routes[-1]
