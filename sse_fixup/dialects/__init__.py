"""Output dialects for app frontends: what the client reads instead of the endpoint's SSE.

``output: sse`` (the default) is the client endpoint's own stream, untouched by this
package.  ``ndjson`` (``ndjson.py``) and ``ui-message-stream`` (``ui_stream.py``) are
writers that map the client endpoint's events - after every rule - to lines or UI chunks;
``usechat.py`` turns what ``useChat`` posts into a chat request; ``status.py`` adds status
events to the SSE dialects.  A client picks a dialect per request with the
``X-SSE-Fixup-Output`` header (or ``Accept: application/x-ndjson``).
"""

from __future__ import annotations

OUTPUTS = ("sse", "ndjson", "ui-message-stream")
DIALECTS = ("ndjson", "ui-message-stream")
HEADER = "X-SSE-Fixup-Output"


def requested(headers, configured: str) -> str:
    """The dialect of one request: the header's, else ``Accept: application/x-ndjson``'s,
    else the route's."""
    asked = headers.get(HEADER, "").strip().lower()
    if asked in OUTPUTS:
        return asked
    if headers.get("Accept", "").split(";")[0].strip().lower() == "application/x-ndjson":
        return "ndjson"
    return configured


def writer(output: str, ctx, endpoint: str, status, *, reasoning: bool = False):
    """The writer stage for a dialect (``status``: the route's ``status`` section)."""
    if output == "ndjson":
        from .ndjson import NDJSONWriter
        return NDJSONWriter(ctx, endpoint, status.start, status.end, reasoning)
    from .ui_stream import UIStreamWriter
    return UIStreamWriter(ctx, endpoint)


def error_response_body(output: str, code: str, message: str) -> tuple[bytes, dict]:
    """An error answer (refused request, unreachable backend, the backend's 4xx/5xx) in the
    dialect: the body and its headers; the HTTP status stays the error's.  NDJSON: the one
    error line.  UI message stream: plain text, because ``useChat``'s transport reads the
    body of a non-2xx answer as the error's message (it never parses it as a stream)."""
    if output == "ndjson":
        from .ndjson import CONTENT_TYPE, error_body
        return error_body(code, message), {"Content-Type": CONTENT_TYPE}
    return f"{code}: {message}".encode(), {"Content-Type": "text/plain; charset=utf-8"}
