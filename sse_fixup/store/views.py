"""GET/DELETE /v1/responses/{id} and GET /v1/responses/{id}/input_items, from the store.

(Being written: issue 13.)  A route without a store passes the request to its backend.
"""

from __future__ import annotations

from aiohttp import web


async def get(request: web.Request) -> web.StreamResponse:
    from ..proxy import proxy
    return await proxy(request)


async def delete(request: web.Request) -> web.StreamResponse:
    from ..proxy import proxy
    return await proxy(request)


async def input_items(request: web.Request) -> web.StreamResponse:
    from ..proxy import proxy
    return await proxy(request)
