"""Converters: stages that turn one dialect's answer shape into the other's.

A route may make the upstream answer in a shape the client did not ask for (some
backends ignore ``stream``; a route may force streaming upstream).  These stages, placed
in ``Transform``'s pipeline, give the client the shape it asked for:

    json_to_stream   the client asked ``stream: true``, the upstream sent one JSON body
    stream_to_json   the client asked ``stream: false``, the upstream streamed

Each is made per response, ``Cls(ctx)``, with the stage interface ``push(events)`` / ``end()``.
"""

from __future__ import annotations

from ..rules.base import StreamContext
from .json_to_stream import ChatJSONToStream, ResponsesJSONToStream
from .stream_to_json import ChatStreamToJSON, ResponsesStreamToJSON

_TO_STREAM = {"chat": ChatJSONToStream, "responses": ResponsesJSONToStream}
_TO_JSON = {"chat": ChatStreamToJSON, "responses": ResponsesStreamToJSON}


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


__all__ = ["ChatJSONToStream", "ResponsesJSONToStream", "ChatStreamToJSON", "ResponsesStreamToJSON",
           "json_to_stream", "stream_to_json"]
