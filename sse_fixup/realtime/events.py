"""Realtime server events both modes make: errors, names by API version, close codes.

The GA Realtime API and the beta one (``OpenAI-Beta: realtime=v1``) differ in a few event
names and field names; ``Names`` holds the ones the emulation sends.
"""

from __future__ import annotations

import orjson

from ..rules.base import mint_id

WS_HEADERS = ("sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
              "sec-websocket-protocol", "sec-websocket-accept")


def event(typ: str, **fields) -> dict:
    return {"type": typ, "event_id": mint_id("event_"), **fields}


def error(message: str, *, code: str | None, etype: str = "invalid_request_error",
          param: str | None = None, event_id: str | None = None) -> dict:
    """An ``error`` event in the documented shape; ``event_id`` inside names the client event
    it answers (LiveKit settles that event's future with it)."""
    return event("error", error={"type": etype, "code": code, "message": f"sse-fixup: {message}",
                                 "param": param, "event_id": event_id})


def dumps(obj: dict) -> str:
    return orjson.dumps(obj).decode()


def beta_requested(headers) -> bool:
    """``OpenAI-Beta: realtime=v1`` (the beta protocol; GA otherwise)."""
    return any("realtime=v1" in v.replace(" ", "") for v in headers.getall("OpenAI-Beta", []))


class Names:
    """The names the emulation uses, GA by default, beta on request."""

    def __init__(self, beta: bool):
        self.beta = beta
        self.item_added = "conversation.item.created" if beta else "conversation.item.added"
        self.item_done = None if beta else "conversation.item.done"
        self.text_delta = "response.text.delta" if beta else "response.output_text.delta"
        self.text_done = "response.text.done" if beta else "response.output_text.done"
        self.output_text = "text" if beta else "output_text"     # an assistant item's content type
        self.modalities = "modalities" if beta else "output_modalities"
        self.max_tokens = "max_response_output_tokens" if beta else "max_output_tokens"


def close_code(code: int | None) -> int:
    """A close code that may be sent on: 1005 (none given) and 1006 (the connection was
    lost) are only reported, never sent (RFC 6455 section 7.4.1)."""
    if code is None or code == 1005:
        return 1000
    if code == 1006 or code < 1000 or code >= 5000:
        return 1011
    return code
