"""Converters: stages that turn one dialect's answer shape into the other's.

A route may make the upstream answer in a shape the client did not ask for (some
backends ignore ``stream``; a route may force streaming upstream).  These stages, placed
in ``Transform``'s pipeline, give the client the shape it asked for:

    json_to_stream   the client asked ``stream: true``, the upstream sent one JSON body
    stream_to_json   the client asked ``stream: false``, the upstream streamed

Each is made per response, ``Cls(ctx)``, with the stage interface ``push(events)`` / ``end()``.

Translations (``upstream_api`` on a route) go further: the backend speaks another API
than the client.  A ``Translation`` rewrites the request into the backend's API and gives
the stage that turns the backend's answer (stream or body) into the client's endpoint's
events, placed right after the reader; the client endpoint's rules and writer follow:

    anthropic   chat client      → the backend's /v1/messages      (anthropic.py)
    chat        Responses client → the backend's /v1/chat/completions  (responses_chat.py)
"""

from __future__ import annotations

from ..rules.base import StreamContext
from .json_to_stream import ChatJSONToStream, ResponsesJSONToStream
from .stream_to_json import ChatStreamToJSON, ResponsesStreamToJSON

_TO_STREAM = {"chat": ChatJSONToStream, "responses": ResponsesJSONToStream}
_TO_JSON = {"chat": ChatStreamToJSON, "responses": ResponsesStreamToJSON}


class TranslationError(Exception):
    """A request the translation cannot express: a 400 that names the field (``param``)."""

    def __init__(self, param: str | None, message: str, code: str = "unsupported_parameter"):
        super().__init__(message)
        self.param, self.message, self.code = param, message, code


class Translation:
    """The client speaks ``endpoint``, the backend ``upstream_api``; made once per route.

    ``request`` turns the client's body into the backend's (raising ``TranslationError``),
    ``path`` the client's path into the backend's, ``stream_stage``/``body_stage`` make the
    per-response stage from the backend's SSE events / JSON body to the client endpoint's,
    and ``error`` turns a backend error body (non-2xx) into the client's error body.
    """

    upstream_api = ""

    def __init__(self, keys):
        self.keys = keys

    def request(self, body: dict) -> dict:
        raise NotImplementedError

    def path(self, path: str) -> str:
        raise NotImplementedError

    def stream_stage(self, ctx: StreamContext):
        raise NotImplementedError

    def body_stage(self, ctx: StreamContext):
        raise NotImplementedError

    def error(self, status: int, data: bytes) -> bytes:
        raise NotImplementedError

    def headers(self, headers: dict) -> dict:
        """The forwarded request headers as the backend's API wants them."""
        return headers


class BodyConverter:
    """A translation's body stage: each event is one whole body, ``convert``ed (a subclass
    says how); nothing is added at the end."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: StreamContext):
        self.ctx = ctx

    def push(self, events: list) -> list:
        return [self.convert(ev) for ev in events]

    def end(self) -> list:
        return []

    def convert(self, ev):
        raise NotImplementedError


def translation(upstream_api: str | None, endpoint: str, keys) -> Translation | None:
    """The route's translation for requests to ``endpoint`` (None: the backend speaks it).
    Raises ``TranslationError`` for an endpoint the backend's API cannot serve."""
    if upstream_api is None:
        return None
    if upstream_api == "anthropic":
        if endpoint != "chat":
            raise TranslationError(None, f"this route's backend speaks the Anthropic Messages API "
                                   f"(upstream_api: anthropic): only /v1/chat/completions is "
                                   f"translated, not the {endpoint} endpoint", "unsupported_endpoint")
        from .anthropic import AnthropicTranslation
        return AnthropicTranslation(keys)
    if upstream_api == "chat":
        if endpoint == "chat":
            return None
        from .responses_chat import ChatTranslation
        return ChatTranslation(keys)
    raise ValueError(f"unknown upstream_api {upstream_api!r}")


def json_to_stream(endpoint: str, ctx: StreamContext):
    """The stage that synthesises ``endpoint``'s stream from one JSON body."""
    try:
        return _TO_STREAM[endpoint](ctx)
    except KeyError:
        raise ValueError(f"no JSON→SSE converter for endpoint {endpoint!r}") from None


def stream_to_json(endpoint: str, ctx: StreamContext):
    """The stage that aggregates ``endpoint``'s stream into its non-stream body."""
    try:
        return _TO_JSON[endpoint](ctx)
    except KeyError:
        raise ValueError(f"no SSE→JSON converter for endpoint {endpoint!r}") from None


__all__ = ["Translation", "TranslationError", "translation", "ChatJSONToStream", "ResponsesJSONToStream", "ChatStreamToJSON", "ResponsesStreamToJSON",
           "json_to_stream", "stream_to_json"]
