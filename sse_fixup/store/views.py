"""GET/DELETE /v1/responses/{id} and GET /v1/responses/{id}/input_items, from the store.

A route without a store passes the request to its backend, as any other request (OpenAI
itself, or a backend with a store of its own, answers it).  With a store, the answers are
the API's: the response object; ``{"id", "object": "response.deleted", "deleted": true}``;
a list of input items (``limit`` 1-100, default 20; ``order`` asc or desc, default desc;
``after`` an item id).  An id the store has not: 404, as the API says it.
"""

from __future__ import annotations

import hashlib

from aiohttp import web

from . import StoreError

PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco", "reasoning": "rs"}


def _store(request: web.Request):
    from ..proxy import ROUTER, STORES
    route = request.app[ROUTER].route(request.rel_url.raw_path)
    return request.app[STORES].for_route(route)


def _error(status: int, message: str, code: str | None, param: str | None = None):
    from ..proxy import ProxyError
    return ProxyError(status, f"sse-fixup: {message}", "invalid_request_error" if status < 500
                      else "server_error", code, param=param)


async def _load(request: web.Request, store) -> tuple[str, dict]:
    from ..proxy import KIND
    request[KIND] = "store"
    rid = request.match_info["response_id"]
    try:
        rec = await store.load(rid)
    except StoreError as exc:
        raise _error(exc.status, exc.message, exc.code, exc.param) from None
    if rec is None:
        raise _error(404, f"Response with id '{rid}' not found.", "response_not_found")
    return rid, rec


async def get(request: web.Request) -> web.StreamResponse:
    store = _store(request)
    if store is None:
        from ..proxy import proxy
        return await proxy(request)
    _, rec = await _load(request, store)
    return web.json_response(rec["response"], dumps=_dumps)


async def delete(request: web.Request) -> web.StreamResponse:
    store = _store(request)
    if store is None:
        from ..proxy import proxy
        return await proxy(request)
    from ..proxy import KIND
    request[KIND] = "store"
    rid = request.match_info["response_id"]
    try:
        gone = await store.remove(rid)
    except StoreError as exc:
        raise _error(exc.status, exc.message, exc.code) from None
    if not gone:
        raise _error(404, f"Response with id '{rid}' not found.", "response_not_found")
    return web.json_response({"id": rid, "object": "response.deleted", "deleted": True})


async def input_items(request: web.Request) -> web.StreamResponse:
    store = _store(request)
    if store is None:
        from ..proxy import proxy
        return await proxy(request)
    q = request.query
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise _error(400, "order must be asc or desc", "invalid_value", "order")
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise _error(400, "limit must be an integer from 1 to 100", "invalid_value", "limit")
    rid, rec = await _load(request, store)
    items = [_listed(rid, n, item) for n, item in enumerate(rec["input"]) if isinstance(item, dict)]
    if order == "desc":
        items.reverse()
    after = q.get("after")
    if after is not None:
        at = next((n for n, item in enumerate(items) if item.get("id") == after), None)
        if at is None:
            raise _error(400, f"after: no input item with id '{after}' in this response",
                         "invalid_value", "after")
        items = items[at + 1:]
    page = items[:limit]
    return web.json_response({"object": "list", "data": page,
                              "first_id": page[0]["id"] if page else None,
                              "last_id": page[-1]["id"] if page else None,
                              "has_more": len(items) > limit}, dumps=_dumps)


def _listed(rid: str, n: int, item: dict) -> dict:
    """An input item as the API lists it: with an id (stable: made from the response id and
    its place when the client sent none) and a message's text as an input_text part."""
    out = dict(item)
    typ = out.setdefault("type", "message" if "role" in out else "item")
    if not isinstance(out.get("id"), str):
        digest = hashlib.blake2s(f"{rid}:{n}".encode(), digest_size=16).hexdigest()
        out["id"] = f"{PREFIXES.get(typ, 'item')}_{digest}"
    if typ == "message" and isinstance(out.get("content"), str):
        part = "output_text" if out.get("role") == "assistant" else "input_text"
        out["content"] = [{"type": part, "text": out["content"]}]
    return out


def _dumps(obj) -> str:
    import orjson
    return orjson.dumps(obj).decode()
