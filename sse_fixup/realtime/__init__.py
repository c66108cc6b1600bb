"""The Realtime API (WebSocket): forward to a Realtime backend, or emulate one over chat.

``GET /v1/realtime`` (and ``/realtime``) upgrades to a WebSocket.  The route (chosen by
path and the ``model`` query parameter) says what happens (``realtime:``):

- ``forward`` (default): bridged to the backend's WebSocket, its server events through the
  ``realtime`` rules (``forward.py``);
- ``emulate``: the proxy is the Realtime server, in text mode, over the backend's chat
  completions (``emulate.py``, ``respond.py``) - for llama-server and the like, which have
  no Realtime endpoint;
- ``off``: 404.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

PATHS = ("/v1/realtime", "/realtime")


async def handler(request: web.Request) -> web.StreamResponse:
    from ..proxy import INFLIGHT, KIND, ROUTER, ProxyError
    route = request.app[ROUTER].route(request.rel_url.raw_path, request.rel_url.query.get("model"))
    mode = route.keys.realtime
    request[KIND] = f"realtime_{mode}"
    if mode == "off":
        raise ProxyError(404, "sse-fixup: the Realtime API is off for this route (realtime: off)",
                         "invalid_request_error", "realtime_off")
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise ProxyError(426, "sse-fixup: GET /v1/realtime is a WebSocket: send Upgrade: websocket",
                         "invalid_request_error", "websocket_required", headers={"Upgrade": "websocket"})
    inflight = request.app[INFLIGHT]
    task = asyncio.current_task()
    inflight.add(task)
    try:
        if mode == "emulate":
            from .emulate import serve
        else:
            from .forward import serve
        return await serve(request, route)
    finally:
        inflight.discard(task)
