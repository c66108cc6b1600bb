"""The Realtime API (WebSocket): forward to a Realtime backend, or emulate one over chat.

(Being written: issue 18.)
"""

from __future__ import annotations

from aiohttp import web

PATHS = ("/v1/realtime", "/realtime")


async def handler(request: web.Request) -> web.StreamResponse:
    raise web.HTTPNotImplemented(text="sse-fixup: the Realtime API is not served yet")
