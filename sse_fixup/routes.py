"""Config → routes → the transform for one response.

A ``Route`` is where a request goes and what is done to its answer: the upstream and,
per endpoint, the stream and body rule chains (custom ``before`` rules, the presets'
rules, custom ``after`` rules).  Today the config describes one route; ``Router.route``
is the single place that picks one for a request.
"""

from __future__ import annotations

from .chain import BodyChain, Chain, RuleFailed
from .rules import BUILTIN
from .rules.base import RequestInfo, StreamContext
from .rules.declarative import DeclarativeRule
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


class BodyStage:
    """The body chain as a stage: the whole body is one event."""

    __slots__ = ("chain", "ctx")

    def __init__(self, chain: BodyChain, ctx: StreamContext):
        self.chain = chain
        self.ctx = ctx

    def push(self, events, region=None):
        for ev in events:
            obj = ev.json
            if obj is None:
                if ev.data:
                    self.ctx.non_json += 1
                continue
            try:
                ev.changed = self.chain.apply(obj, self.ctx)
            except RuleFailed:
                ev.changed = False            # the body as it came
        return events

    def end(self):
        return []


class Route:
    """The upstream and the chains for each endpoint and mode."""

    def __init__(self, cfg, *, parse_all: bool = False):
        self.upstream = cfg.upstream
        self.max_event = cfg.limits.max_event_bytes
        builtins = [BUILTIN[name] for name in cfg.rule_names()]
        self.chains: dict[tuple[str, str], Chain | BodyChain] = {}
        for endpoint in ENDPOINTS:
            for mode in ("stream", "body"):
                def pick(stage):
                    return [DeclarativeRule(s) for s in cfg.rules
                            if s.endpoint == endpoint and s.mode == mode and s.stage == stage]
                rules = pick("before") + [r for r in builtins
                                          if r.endpoint == endpoint and r.mode == mode] + pick("after")
                self.chains[(endpoint, mode)] = Chain(endpoint, rules, parse_all=parse_all) \
                    if mode == "stream" else BodyChain(endpoint, rules)

    def open(self, info: RequestInfo, mode: str) -> Transform:
        """The transform for one response of ``info.endpoint``: ``stream`` (SSE) or ``body`` (JSON)."""
        ctx = StreamContext(info)
        chain = self.chains[(info.endpoint, mode)]
        if mode == "stream":
            return Transform(Decoder(self.max_event),
                             [chain.open(ctx), SSEWriter(named=info.endpoint == "responses")], ctx)
        return Transform(BodyReader(), [BodyStage(chain, ctx), JSONWriter()], ctx)


class Router:
    def __init__(self, cfg, *, parse_all: bool = False):
        self.routes = [Route(cfg, parse_all=parse_all)]

    def route(self, path: str, model: str | None = None) -> Route:
        return self.routes[0]
