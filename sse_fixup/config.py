"""YAML config -> a validated ``Config`` (errors name file, line and key; never a traceback).

Each key is declared once below (``schema.py`` has the field kinds); the validation, the
defaults, ``sse-fixup config`` and ``config.schema.json`` all come from that declaration.
Unknown keys are rejected with a "did you mean": a typo silently ignored is a fix silently
not applied.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from .dialects import OUTPUTS
from .presets import DEFAULT_PRESETS, PRESETS
from .rules import BUILTIN
from .rules import paths as fpaths
from .rules.declarative import CONDITIONS, Spec
from .rules.request import BUILTIN as REQUEST_BUILTIN, RequestSpec, item_prefix
from .schema import (At, Bool, Choice, ConfigError, Field, Int, ListOf, Nested, Secret, Seconds,
                     Section, String, did_you_mean)

ENDPOINTS = ("responses", "chat")
DEFAULT_UPSTREAM = "http://127.0.0.1:8080"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8090


def check_upstream(url: str, fail) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        fail(f"must be an http:// or https:// URL with a host, got {url!r}")
    if parts.query or parts.fragment:
        fail("must not carry a query string or fragment")
    return url.rstrip("/")


class Url(Field):
    what, json = "an http:// or https:// URL", {"type": "string", "pattern": r"^https?://[^/?#]+[^?#]*$"}

    def check(self, value, at):
        return check_upstream(value, at.fail) if isinstance(value, str) else self.wrong(value, at)


# -- declarative rules: the entries of ``rules:`` -----------------------------------------

class FieldPath(Field):
    what, json = "a field path (a.b, a[0].b, a[*].b)", String.json

    def check(self, value, at):
        try:
            return fpaths.parse(value)
        except fpaths.PathError as exc:
            at.fail(str(exc))


PRESENCE = [c for c in CONDITIONS if c != "equals"]         # the conditions written as a bare word


class Condition(Field):
    what = "exists, missing or {equals: value}"
    json = {"anyOf": [{"enum": PRESENCE}, {"type": "object", "properties": {"equals": {}},
                                           "required": ["equals"], "additionalProperties": False}]}

    def check(self, value, at):
        if isinstance(value, dict) and list(value) == ["equals"]:
            return "equals", value["equals"]
        if value not in PRESENCE:
            at.fail(f"condition must be {self.what}; got {value!r}")
        return value, None


class PathMap(Field):
    """``{field.path: value}`` -> [(path tuple, checked value)]: where:, and most actions."""

    def __init__(self, value: Field, doc, *, same_parent=False):
        super().__init__(None, doc, what=f"a mapping of field path -> {value.what}")
        self.value, self.same_parent = value, same_parent

    def check(self, mapping, at):
        if not isinstance(mapping, dict) or not mapping:
            at.fail(f"must be {self.what}")
        out = []
        for key, raw in mapping.items():
            here = at.child(mapping, key)
            path, arg = FieldPath().check(key, here), self.value.check(raw, here)
            # copy/rename work inside one parent object, so both ends must be fields of it
            if self.same_parent and not (path[:-1] == arg[:-1] and isinstance(path[-1], str)
                                         and isinstance(arg[-1], str)):
                here.fail("both paths must end in a field of the same object (e.g. item.id: item.call_id)")
            out.append((path, arg))
        return out

    def schema(self):
        return {"type": "object", "minProperties": 1, "additionalProperties": self.value.schema()}


class Match(Section):
    endpoint = Choice(ENDPOINTS, None, "the API whose events the rule patches", required=True)
    mode = Choice(("stream", "body"), "stream", "stream: SSE events; body: whole JSON bodies")
    event = String(None, 'glob on the SSE event name / the JSON "type", e.g. "response.output_item.*"',
                   nullable=True, what="a glob string")
    where = PathMap(Condition(), "{field.path: exists | missing | {equals: value}}; all must hold")


class RuleTarget(Section):
    name = String(None, "unique; shown in logs and metrics (default custom.<n>)")
    match = Nested(Match, "which events the rule touches", required=True)
    stage = Choice(("before", "after"), "before", "run before the preset rules (the default, so they "
                   "still number and index what you add) or after")


class RuleActions(Section):
    """A rule's actions, applied in this order."""

    set = PathMap(Field(), "{path: value}: always write; a value may be $now or $request.<field>")
    default = PathMap(Field(), "{path: value}: write when absent or null; $now, $request.<field> too")
    copy = PathMap(FieldPath(), "{to.path: from.path}: when the target is absent (same parent object)",
                   same_parent=True)
    rename = PathMap(FieldPath(), "{from.path: to.path}: move a field (same parent object)",
                     same_parent=True)
    delete = ListOf(FieldPath(), None, "[path, ...]: remove fields", one=True,
                    what="a field path or a list of field paths")
    counter = PathMap(String(what="a counter name"),
                      "{path: counter-name}: a per-stream integer 0, 1, 2... (written when absent)")
    now = ListOf(FieldPath(), None, "[path, ...]: unix seconds, when absent", one=True,
                 what="a field path or a list of field paths")
    from_request = PathMap(String(what="a request field, e.g. model"),
                           "{path: request-field}: e.g. {response.model: model}, when absent")


ACTIONS = tuple(RuleActions.fields)


class RuleEntry(RuleTarget, RuleActions):
    """One entry of ``rules:``."""


class Rules(ListOf):
    """``rules:`` -> [Spec], named uniquely among themselves and the built-in rules."""

    def __init__(self, doc):
        super().__init__(Nested(RuleEntry, ""), [], doc, what="a list of rules")

    def check(self, value, at):
        if not isinstance(value, list):
            self.wrong(value, at)
        taken, specs = set(BUILTIN), []
        for i, raw in enumerate(value):
            here = at.child(value, i)
            spec = _spec(raw, here, i)
            if spec.name in taken:
                At(at.source, here.line, f"{here.key}.name").fail(f"{spec.name!r} is already taken")
            taken.add(spec.name)
            specs.append(spec)
        return specs

    def schema(self):
        s = super().schema()
        s["items"]["anyOf"] = [{"required": [a]} for a in ACTIONS]     # at least one action
        return s


def _spec(raw, at: At, i: int) -> Spec:
    if not isinstance(raw, dict):
        at.fail("each rule must be a mapping with match: and actions")
    name = f"custom.{i}"
    if "name" in raw:                   # then errors inside the rule name it
        name = RuleEntry.fields["name"].check(raw["name"], at.child(raw, "name"))
        at = At(at.source, at.line, f"{at.key} ({name})")
    entry = RuleEntry.from_yaml(raw, at)
    actions = []
    for action in ACTIONS:
        got = getattr(entry, action) or []
        pairs = got if isinstance(RuleEntry.fields[action], PathMap) else [(p, None) for p in got]
        actions += [(action, path, arg) for path, arg in pairs]
    if not actions:
        at.fail(f"has no action; add one of {', '.join(ACTIONS)}")
    m = entry.match
    return Spec(name=name, endpoint=m.endpoint, mode=m.mode, event=m.event, stage=entry.stage,
                where=[(path, op, v) for path, (op, v) in m.where or []], actions=actions)


# -- request rules: the entries of ``request_rules:`` -------------------------------------

class RequestCondition(Field):
    what = "exists, missing, {equals: v}, {not_equals: v}, {in: [v, ...]} or {not_in: [v, ...]}"
    json = {"anyOf": [{"enum": ["exists", "missing"]},
                      {"type": "object", "properties": {"equals": {}}, "required": ["equals"],
                       "additionalProperties": False},
                      {"type": "object", "properties": {"not_equals": {}}, "required": ["not_equals"],
                       "additionalProperties": False},
                      {"type": "object", "properties": {"in": {"type": "array"}}, "required": ["in"],
                       "additionalProperties": False},
                      {"type": "object", "properties": {"not_in": {"type": "array"}}, "required": ["not_in"],
                       "additionalProperties": False}]}

    def check(self, value, at):
        if isinstance(value, dict) and len(value) == 1:
            (op, arg), = value.items()
            if op in ("equals", "not_equals"):
                return op, arg
            if op in ("in", "not_in"):
                if not isinstance(arg, list):
                    at.fail(f"{op} must be a list of values, got {arg!r}")
                return op, list(arg)
        if value not in ("exists", "missing"):
            at.fail(f"condition must be {self.what}; got {value!r}")
        return value, None


class RequestMatch(Section):
    endpoint = Choice(ENDPOINTS, None, "the client endpoint whose requests the rule patches "
                      "(null: both)", nullable=True)
    model = String(None, 'glob on the request body\'s "model"', nullable=True, what="a glob")
    where = PathMap(RequestCondition(), "{field.path: condition}; all must hold; a path with [*] "
                    "selects the list items the actions under the same list[*] apply to")


class RequestActions(Section):
    """A request rule's actions, applied in this order (the response rules' operations)."""

    set = RuleActions.fields["set"]
    default = RuleActions.fields["default"]
    copy = RuleActions.fields["copy"]
    rename = RuleActions.fields["rename"]
    delete = RuleActions.fields["delete"]


REQUEST_ACTIONS = tuple(RequestActions.fields)


class RequestRuleEntry(RequestActions):
    name = String(None, "unique; shown in logs (default request.<n>)")
    match = Nested(RequestMatch, "which requests the rule touches (all given must hold)")


class RequestRules(ListOf):
    """``request_rules:`` -> [built-in name | RequestSpec], in order."""

    def __init__(self, doc):
        super().__init__(Nested(RequestRuleEntry, ""), [], doc,
                         what="a list of built-in request rule names and request rules")

    def check(self, value, at):
        if not isinstance(value, list):
            self.wrong(value, at)
        out, taken = [], set()
        for i, raw in enumerate(value):
            here = at.child(value, i)
            if isinstance(raw, str):
                if raw not in REQUEST_BUILTIN:
                    here.fail(f"unknown built-in request rule {raw!r}"
                              f"{did_you_mean(raw, sorted(REQUEST_BUILTIN))}")
                entry = raw
            elif isinstance(raw, dict):
                entry = _request_spec(raw, here, i)
            else:
                here.fail("each entry must be a built-in request rule name or a mapping with match: "
                          "and actions")
            name = entry if isinstance(entry, str) else entry.name
            if name in taken:
                here.fail(f"{name!r} is listed twice")
            taken.add(name)
            out.append(entry)
        return out

    def schema(self):
        entry = RequestRuleEntry.schema()
        entry["anyOf"] = [{"required": [a]} for a in REQUEST_ACTIONS]
        return {"type": "array", "items": {"anyOf": [{"enum": sorted(REQUEST_BUILTIN)}, entry]}}


def _request_spec(raw, at: At, i: int) -> RequestSpec:
    entry = RequestRuleEntry.from_yaml(raw, at)
    name = entry.name or f"request.{i}"
    actions = []
    for action in REQUEST_ACTIONS:
        got = getattr(entry, action) or []
        pairs = got if isinstance(RequestRuleEntry.fields[action], PathMap) else [(p, None) for p in got]
        actions += [(action, path, arg) for path, arg in pairs]
    if not actions:
        at.fail(f"has no action; add one of {', '.join(REQUEST_ACTIONS)}")
    m = entry.match or RequestMatch()
    where = [(path, op, v) for path, (op, v) in m.where or []]
    try:
        item_prefix(where)
    except ValueError as exc:
        at.child(raw, "match").fail(str(exc))
    return RequestSpec(name=name, endpoint=m.endpoint, model=m.model, where=where, actions=actions)


# -- output dialects, status events, assembled answers ------------------------------------

class Payload(Field):
    what, json = "a mapping (a JSON object)", {"type": "object"}

    def check(self, value, at):
        return dict(value) if isinstance(value, dict) and value else self.wrong(value, at)


class Status(Section):
    start = Payload({"event": "analyzing"}, "sent when the answer begins, before the model's first "
                    "token (null: none)", nullable=True)
    end = Payload({"event": "completed"}, "sent when it ends; in NDJSON the completed line is this "
                  "plus finish_reason and usage", nullable=True)
    sse = Choice(("comment", "data"), None, "status events in the SSE dialects too (null: none): "
                 "comment (': status analyzing', ignored by every client) or data (a data: event)",
                 nullable=True)


class Answers(Section):
    jsonl = String(None, "append each assembled answer to this file, one JSON object per line "
                   "(null: off)", nullable=True, what="a file path")
    jsonl_max_bytes = Int(64 << 20, "rotate the file past this size (PATH.1, PATH.2, ...)", low=1024,
                          what="a number of bytes")
    jsonl_keep = Int(5, "rotated files kept", low=0, what="a number of files")
    post = Url(None, "POST each assembled answer as JSON to this URL (null: off)", nullable=True)
    post_timeout = Seconds(5.0, "per POST attempt", nullable=False)
    post_retries = Int(3, "attempts after the first, with backoff 0.5 s, 1 s, 2 s, ...", low=0,
                       what="a number of retries")
    queue_size = Int(1000, "answers queued per sink; past it they are dropped (counted)", low=1,
                     what="a number of answers")
    max_answer_bytes = Int(1 << 20, "text, reasoning and arguments kept per answer; past it the "
                           "record says truncated", low=1024, what="a number of bytes")
    include_request = Bool(False, "add the conversation (messages / input) to each record")


# -- the config file ----------------------------------------------------------------------

STORE_BACKENDS = ("memory", "sqlite", "redis")


class StoreSpec(Field):
    """``responses_store``: ``memory``, or a mapping with one backend and the limits:
    ``{memory: true}``, ``{sqlite: PATH}``, ``{redis: URL}``, each with ``ttl`` (seconds) and
    ``max_items``.  Read into ``{"backend", "target", "ttl", "max_items"}``."""

    what = "memory, {sqlite: PATH}, {redis: URL} (each may add ttl: seconds, max_items: N)"
    json = {"anyOf": [{"enum": ["memory"]}, {
        "type": "object", "additionalProperties": False, "minProperties": 1,
        "properties": {"memory": {"type": "boolean"}, "sqlite": String.json,
                       "redis": {"type": "string", "pattern": "^rediss?://"},
                       "ttl": {"type": "number", "exclusiveMinimum": 0},
                       "max_items": {"type": "integer", "minimum": 1}}}]}
    TTL, MAX_ITEMS = 86400.0, 10000

    def check(self, value, at):
        if value == "memory":
            return {"backend": "memory", "target": None, "ttl": self.TTL, "max_items": self.MAX_ITEMS}
        if not isinstance(value, dict):
            self.wrong(value, at)
        for key in value:
            if key not in (*STORE_BACKENDS, "ttl", "max_items"):
                at.child(value, key).fail(f"unknown key{did_you_mean(key, [*STORE_BACKENDS, 'ttl', 'max_items'], 'known keys')}")
        given = [b for b in STORE_BACKENDS if b in value]
        if len(given) != 1:
            at.fail(f"must name one backend ({', '.join(STORE_BACKENDS)}); got {', '.join(given) or 'none'}")
        backend = given[0]
        target = value[backend]
        here = at.child(value, backend)
        if backend == "memory" and target is not True:
            here.fail("must be true (or write responses_store: memory)")
        if backend == "sqlite" and not (isinstance(target, str) and target):
            here.fail("must be the database file's path")
        if backend == "redis" and not (isinstance(target, str) and target.startswith(("redis://", "rediss://"))):
            here.fail(f"must be a redis:// or rediss:// URL, got {target!r}")
        ttl = Seconds(self.TTL, "", nullable=False).check(value.get("ttl", self.TTL), at.child(value, "ttl"))
        if ttl == 0:
            at.child(value, "ttl").fail("must be more than 0 seconds")
        cap = Int(self.MAX_ITEMS, "", low=1, what="a number of responses").check(
            value.get("max_items", self.MAX_ITEMS), at.child(value, "max_items"))
        return {"backend": backend, "target": None if backend == "memory" else target,
                "ttl": ttl, "max_items": cap}


class RouteKeys(Section):
    """The keys a ``routes:`` entry may override; the top level has them too (they configure
    the default route), and a key a route leaves out takes the top level's value."""

    upstream = Url(DEFAULT_UPSTREAM, "the backend base URL; may carry a base path "
                   "(/v1/responses then goes to {upstream}/v1/responses)")
    upstream_stream = Choice(("as_requested", "always", "never"), "as_requested",
                             "how the backend is asked: as the client asked, always streaming "
                             "(a JSON client then gets the stream aggregated), or never (a "
                             "streaming client then gets the JSON body as a stream)")
    model = String(None, "the model name sent upstream instead of the client's", nullable=True,
                   what="a model name")
    include_usage = Bool(False, "always ask a chat backend for usage (stream_options.include_usage); "
                         "a client that did not ask does not get the usage chunk")
    reasoning_field = Choice(("reasoning_content", "reasoning"), None, "chat: the name reasoning "
                             "deltas get (llama-server/DeepSeek: reasoning_content; vLLM: reasoning)",
                             nullable=True)
    think_tags = Choice(("split", "opened"), None, "chat: inline <think>...</think> in content becomes "
                        "reasoning_content; opened: the chat template opens <think> itself (DeepSeek-R1, "
                        "QwQ), so content is reasoning until </think>", nullable=True)
    drop_reasoning = Bool(False, "remove reasoning from the answer (voice clients must never read it aloud)")
    presets = ListOf(Choice(PRESETS, noun="preset"), DEFAULT_PRESETS, "named lists of built-in rules, "
                     "applied in order (see sse-fixup rules); [] turns every one off",
                     one=True, what="a list of preset names")
    disable = ListOf(Choice(BUILTIN, noun="built-in rule"), [], "built-in rules to leave out of the "
                     "presets", one=True, what="a list of built-in rule names")
    rules = Rules("your own rules, written in YAML (README \"Writing a rule\")")
    upstream_api = Choice(("anthropic", "chat"), None, "the API the backend speaks when it is not "
                          "the client's: anthropic (chat clients, the backend's /v1/messages) or chat "
                          "(Responses clients, the backend's /v1/chat/completions)", nullable=True)
    default_max_tokens = Int(4096, "upstream_api anthropic: max_tokens when the client gave none "
                             "(the Messages API requires it)", low=1, what="a number of tokens")
    drop_unsupported_tools = Bool(False, "upstream_api chat: drop hosted tools (web_search, "
                                  "file_search, ...) a chat backend cannot run, instead of a 400")
    response_model = String("requested", "the model name in every Responses event and body: "
                            "requested (the client's), upstream (the backend's own, e.g. a GGUF "
                            "path), or a fixed name", what="requested, upstream or a model name")
    realtime = Choice(("forward", "emulate", "off"), "forward", "GET /v1/realtime (WebSocket): forward "
                      "to the backend's, emulate a text session over its chat completions, or off")
    responses_store = StoreSpec(None, "keep /v1/responses requests and answers, so that "
                                "previous_response_id and GET/DELETE /v1/responses/{id} work on "
                                "backends that keep none (README \"Conversation state\"); off "
                                "(null) by default: it stores conversations", nullable=True)
    output = Choice(OUTPUTS, "sse", "what the client reads: sse (the endpoint's own stream), ndjson "
                    "(JSON lines for app frontends) or ui-message-stream (the AI SDK's useChat "
                    "protocol); a client may ask with X-SSE-Fixup-Output (README \"App frontends\")")
    status = Nested(Status, "status events: at the start and end of each answer (NDJSON always; the "
                    "SSE dialects with status.sse)")
    ndjson_reasoning = Bool(False, "ndjson: send reasoning deltas as {\"event\": \"reasoning\"} lines")
    ui_path = String("/api/chat", "POST here takes useChat's request (UI messages) and answers in the "
                     "UI message stream", what="a path")
    ui_endpoint = Choice(ENDPOINTS, "chat", "the backend endpoint a useChat request becomes: chat "
                         "(/v1/chat/completions) or responses (/v1/responses)")
    request_rules = RequestRules("rules on the request body before it goes upstream: built-in names "
                                 "(sse-fixup rules) and YAML rules (README \"Request rules\")")

    def rule_names(self) -> list[str]:
        """The built-in rules in effect, in order: what the route's options add, then the presets'."""
        seen: list[str] = []
        for name in option_rules(self):
            if name not in self.disable:
                seen.append(name)
        for preset in self.presets:
            for name in PRESETS[preset][1]:
                if name not in seen and name not in self.disable:
                    seen.append(name)
        return seen


def option_rules(keys: RouteKeys) -> list[str]:
    """Built-in rules that route options switch on, stream and body ones, in the order they
    run (before the presets' rules): tags split out, reasoning renamed, reasoning dropped."""
    names = []
    if keys.think_tags:
        tags = "think_tags" if keys.think_tags == "split" else "think_tags_opened"
        names += [f"chat.{tags}", f"chat.body_{tags}"]
    if keys.reasoning_field and not keys.drop_reasoning:
        names += [f"chat.{keys.reasoning_field}", f"chat.body_{keys.reasoning_field}"]
    if keys.drop_reasoning:
        names += ["chat.drop_reasoning", "chat.body_drop_reasoning",
                  "responses.drop_reasoning", "responses.body_drop_reasoning"]
    return [n for n in names if n in BUILTIN]


class RouteMatch(Section):
    path = String(None, 'glob on the request path, e.g. "/v1/chat/*"', nullable=True, what="a glob")
    model = String(None, 'glob on the request body\'s "model", e.g. "qwen*"', nullable=True,
                   what="a glob")


class Route(RouteKeys):
    """One entry of ``routes:``: the first whose match fits the request takes it."""

    match = Nested(RouteMatch, "which requests take this route (all given globs must match)",
                   required=True)


class Listen(Section):
    host = String(DEFAULT_HOST, "listen address (loopback only unless you say otherwise)",
                  what="a host name or address")
    port = Int(DEFAULT_PORT, "listen port", low=0, high=65535, what="a port number")


class Timeouts(Section):
    connect = Seconds(10.0, "TCP connect to the backend; failing -> 502")
    first_byte = Seconds(600.0, "request sent -> first byte (a long prompt is slow)")
    idle = Seconds(600.0, "silence between two reads of a streaming body")
    keepalive = Seconds(15.0, "send an SSE comment after this much upstream silence (null = never)")
    shutdown_grace = Seconds(30.0, "SIGTERM: how long in-flight requests may finish", nullable=False)


class Limits(Section):
    max_event_bytes = Int(8 << 20, "one SSE event; larger -> the stream ends with an error",
                          low=1024, what="a number of bytes")
    max_request_bytes = Int(32 << 20, "a request body; larger -> 413", low=1024, what="a number of bytes")


class Auth(Section):
    api_keys = ListOf(Secret(), [], "inbound Bearer keys; empty = no check (SSE_FIXUP_API_KEYS adds "
                      "more)", what="a list of keys (strings or {env: NAME})")
    forward_key = Bool(False, "with api_keys: also pass the client's key to the backend")
    upstream_key = Secret(None, "the key sent upstream as Authorization: Bearer", nullable=True)


class Fraction(Field):
    what, json = "a number from 0 to 1", {"type": "number", "minimum": 0, "maximum": 1}

    def check(self, value, at):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            at.fail(f"must be {self.what}; got {value!r}")
        return float(value)


class Validate(Section):
    sample = Fraction(0.0, "the share of live streams checked after the chain (0 = off)")


class CaptureMatch(Section):
    path = String(None, "glob on the request path", nullable=True, what="a glob")
    model = String(None, "glob on the request's model", nullable=True, what="a glob")


class Capture(Section):
    dir = String(None, "directory the captures go to (null = capture off)", nullable=True,
                 what="a directory path")
    match = Nested(CaptureMatch, "which requests may be captured (all given globs must match)")
    on = Choice(("fault", "rule_failure", "always"), "fault", "when a response is kept")
    sample = Fraction(1.0, "the share of matching responses kept")
    max_stream_bytes = Int(4 << 20, "per response, upstream and sent bytes each; past it the "
                           "capture is cut and says so", low=1024, what="a number of bytes")
    max_total_bytes = Int(256 << 20, "the directory's total; past it no new capture is written",
                          low=1024, what="a number of bytes")


class Config(RouteKeys):
    routes = ListOf(Nested(Route, ""), [], "more backends: the first route whose match fits a "
                    "request takes it; others use the top-level keys", what="a list of routes")
    listen = Nested(Listen, "where the proxy listens")
    timeouts = Nested(Timeouts, "in seconds; null = none (README \"Failure behaviour\")")
    limits = Nested(Limits, "sizes in bytes")
    auth = Nested(Auth, "inbound API keys and the key sent upstream")
    log_level = Choice(("debug", "info", "warning", "error"), "info", "how much to log (any case)",
                       fold_case=True)
    log_bodies = Bool(False, "log request/response bodies (Authorization is never logged)")
    workers = Int(1, "processes sharing the port (SO_REUSEPORT); metrics are summed over all",
                  low=1, what="a number of processes")
    event_loop = Choice(("asyncio", "uvloop", "auto"), "asyncio", "auto = uvloop when installed")
    metrics = Bool(True, "Prometheus text at GET /sse-fixup/metrics")
    metrics_max_models = Int(32, "distinct model labels in the LLM metrics; later models count "
                             "as other", low=1, what="a number of models")
    access_log = Choice(("plain", "json", "off"), "plain", "one line per request on stderr")
    validate = Nested(Validate, "live conformance: the strict validator on a sample of streams")
    capture = Nested(Capture, "keep bad streams as replayable captures (README \"Captures\")")
    answers = Nested(Answers, "assembled answers to a JSONL file and/or a URL, off the hot path "
                     "(README \"Assembled answers\")")

    def __init__(self, source: str | None = None, **values):
        super().__init__(**values)
        self.source = source

    def effective_routes(self) -> list[Route]:
        """Each route with the keys it left out taken from the top level, then the default
        route (the top level itself, matching everything)."""
        out = []
        for route in self.routes:
            values = {k: getattr(route if k in route.given else self, k) for k in RouteKeys.fields}
            out.append(Route(match=route.match, **values))
        out.append(Route(match=RouteMatch(), **{k: getattr(self, k) for k in RouteKeys.fields}))
        return out

    # flags and the server speak of cfg.host/cfg.port; the file nests them under listen:
    host = property(lambda self: self.listen.host, lambda self, v: setattr(self.listen, "host", v))
    port = property(lambda self: self.listen.port, lambda self, v: setattr(self.listen, "port", v))


def json_schema() -> dict:
    """The JSON Schema of the config file, for editors: ``config.schema.json`` holds this."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "sse-fixup config",
            **Config.schema()}


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
    data = _read_yaml(text, source)
    if data is not None and not isinstance(data, dict):
        At(source, 1).fail("the config file must be a mapping of keys (upstream, listen, presets, ...)")
    cfg = Config.from_yaml(data or {}, At(source, 1))
    cfg.source = source
    return cfg


# -- YAML with line numbers ---------------------------------------------------------------

class _Map(dict):
    """A mapping that knows the line of each key (``lines``)."""


class _List(list):
    """A list that knows the line of each item (``lines``)."""


def _construct_map(loader, node):
    loader.flatten_mapping(node)
    out = _Map()
    out.lines = {}
    for knode, vnode in node.value:
        key = loader.construct_object(knode, deep=True)
        if isinstance(key, bool) and not knode.style:
            key = knode.value          # YAML 1.1 reads a bare on/off/yes/no key as a bool: keys are names
        if key in out:
            raise ConfigError(f"{loader.name}:{knode.start_mark.line + 1}: duplicate key {key!r}")
        out[key] = loader.construct_object(vnode, deep=True)
        out.lines[key] = knode.start_mark.line + 1
    return out


def _construct_list(loader, node):
    out = _List(loader.construct_object(n, deep=True) for n in node.value)
    out.lines = [n.start_mark.line + 1 for n in node.value]
    return out


_LOADER = None


def _read_yaml(text: str, source: str):
    """Parse with a SafeLoader that records line numbers; yaml is imported only here."""
    global _LOADER
    import yaml

    if _LOADER is None:
        _LOADER = type("_Loader", (yaml.SafeLoader,), {})
        _LOADER.add_constructor("tag:yaml.org,2002:map", _construct_map)
        _LOADER.add_constructor("tag:yaml.org,2002:seq", _construct_list)
    loader = _LOADER(text)
    loader.name = source
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}{line}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    finally:
        loader.dispose()
