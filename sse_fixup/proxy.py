"""The aiohttp reverse proxy: forward every request, patch what the rules cover.

``/…/responses`` and ``/…/chat/completions`` (with or without ``/v1``):
``text/event-stream`` goes through the stream chain one event at a time (each upstream
read is decoded, patched and written at once - nothing waits for more), a JSON body
through the body chain; everything else streams through untouched.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDict

from .chain import BodyChain, StreamChain
from .config import Config
from .metrics import Metrics
from .rules.base import RequestInfo
from .sse import Decoder

log = logging.getLogger("sse_fixup.proxy")

HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Host", "Content-Length"))

CONFIG = web.AppKey("config", Config)
CHAINS = web.AppKey("chains", dict)
METRICS = web.AppKey("metrics", Metrics)
SESSION = web.AppKey("session", aiohttp.ClientSession)


def endpoint_of(path: str) -> str | None:
    path = path.rstrip("/")
    if path.endswith("/responses"):
        return "responses"
    if path.endswith("/chat/completions"):
        return "chat"
    return None


def error_response(status: int, message: str, etype: str, code: str) -> web.Response:
    body = orjson.dumps({"error": {"message": message, "type": etype, "code": code, "param": None}})
    return web.Response(status=status, body=body, content_type="application/json")


def _forward_headers(headers, drop_encoding: bool) -> CIMultiDict:
    listed = {h.strip().lower() for h in headers.get("Connection", "").split(",") if h.strip()}
    out = CIMultiDict()
    for key, value in headers.items():
        low = key.lower()
        if low in HOP_BY_HOP or low in listed:
            continue
        if drop_encoding and low == "accept-encoding":
            continue
        out.add(key, value)
    if drop_encoding:
        out["Accept-Encoding"] = "identity"   # the rules need plain bytes
    return out


def _response_headers(headers, *, streaming: bool) -> CIMultiDict:
    out = _forward_headers(headers, drop_encoding=False)
    if streaming:
        out["Cache-Control"] = "no-cache"
        out["X-Accel-Buffering"] = "no"
    return out


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "upstream": request.app[CONFIG].upstream})


async def metrics_view(request: web.Request) -> web.Response:
    m = request.app[METRICS]
    return web.Response(body=m.render(), headers={"Content-Type": m.content_type})


async def proxy(request: web.Request) -> web.StreamResponse:
    app = request.app
    cfg = app[CONFIG]
    metrics = app[METRICS]
    path = request.rel_url.raw_path
    endpoint = endpoint_of(path) if request.method == "POST" else None
    url = cfg.upstream + path
    if request.rel_url.raw_query_string:
        url += "?" + request.rel_url.raw_query_string
    headers = _forward_headers(request.headers, drop_encoding=endpoint is not None)
    info = None
    if endpoint is not None:
        body = await request.read()   # small (a prompt); the rules need model/stream/tools
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None                 # forwarded untouched: the backend decides
        info = RequestInfo(endpoint, path, parsed if isinstance(parsed, dict) else None)
        data = body
    else:
        data = request.content if request.body_exists else None
        if data is not None and request.content_length is not None:
            headers["Content-Length"] = str(request.content_length)  # not chunked: as sent
    t = cfg.timeouts
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=t.connect, sock_read=t.idle)
    kind = "passthrough"
    try:
        async with asyncio.timeout(t.first_byte):
            up_cm = app[SESSION].request(request.method, url, headers=headers, data=data,
                                         timeout=timeout, allow_redirects=False)
            upstream = await up_cm.__aenter__()
    except (aiohttp.ClientConnectorError, aiohttp.ClientOSError, aiohttp.InvalidURL,
            aiohttp.ServerDisconnectedError) as exc:
        metrics.upstream_errors.labels("connect").inc()
        metrics.requests.labels(endpoint or "other", kind, "502").inc()
        log.warning("upstream %s unreachable: %s", cfg.upstream, exc)
        return error_response(502, f"sse-fixup: upstream {cfg.upstream} unreachable: {exc}",
                              "upstream_error", "upstream_unreachable")
    except (TimeoutError, aiohttp.ServerTimeoutError):
        metrics.upstream_errors.labels("first_byte_timeout").inc()
        metrics.requests.labels(endpoint or "other", kind, "504").inc()
        return error_response(504, f"sse-fixup: upstream {cfg.upstream} sent no response in time",
                              "upstream_error", "upstream_timeout")
    try:
        ctype = upstream.headers.get("Content-Type", "").split(";")[0].strip().lower()
        ok = 200 <= upstream.status < 300 and not upstream.headers.get("Content-Encoding")
        if endpoint is not None and ok and ctype == "text/event-stream":
            kind = "stream"
            return await _stream(request, upstream, app[CHAINS][(endpoint, "stream")], info)
        if endpoint is not None and ok and ctype == "application/json":
            kind = "body"
            return await _body(upstream, app[CHAINS][(endpoint, "body")], info, metrics)
        return await _passthrough(request, upstream)
    finally:
        metrics.requests.labels(endpoint or "other", kind, str(upstream.status)).inc()
        await up_cm.__aexit__(None, None, None)


async def _passthrough(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    resp = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                              headers=_response_headers(upstream.headers, streaming=False))
    length = upstream.headers.get("Content-Length")
    if length is not None and not upstream.headers.get("Transfer-Encoding"):
        resp.content_length = int(length)
    await resp.prepare(request)
    async for chunk in upstream.content.iter_any():
        await resp.write(chunk)
    await resp.write_eof()
    return resp


async def _body(upstream, chain: BodyChain, info: RequestInfo, metrics: Metrics) -> web.Response:
    body = await upstream.read()
    out, ctx = chain.process(body, info)
    metrics.rules_done(ctx)
    return web.Response(status=upstream.status, reason=upstream.reason, body=out,
                        headers=_response_headers(upstream.headers, streaming=False))


async def _stream(request: web.Request, upstream, chain: StreamChain,
                  info: RequestInfo) -> web.StreamResponse:
    app = request.app
    metrics = app[METRICS]
    resp = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                              headers=_response_headers(upstream.headers, streaming=True))
    await resp.prepare(request)
    ctx = chain.start(info)
    decoder = Decoder()
    process = chain.process
    events = patched = 0
    last = None
    metrics.active_streams.inc()
    t0 = time.monotonic()
    try:
        async for chunk in upstream.content.iter_any():
            out = []
            for ev in decoder.feed(chunk):
                piece = process(ev, ctx)
                events += 1
                if piece is not ev.raw:
                    patched += 1
                out.append(piece)
            if out:
                await resp.write(out[0] if len(out) == 1 else b"".join(out))
        for ev in decoder.close():
            last = ev
            events += 1
            piece = process(ev, ctx)
            patched += piece is not ev.raw
            await resp.write(piece)
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, TimeoutError,
            aiohttp.ClientOSError) as exc:
        metrics.upstream_errors.labels("mid_stream").inc()
        log.warning("upstream stream for %s broke after %d events: %s", info.path, events, exc)
    except (ConnectionResetError, asyncio.CancelledError):
        metrics.client_disconnects.inc()
        upstream.close()          # release the backend's slot now, not at the next read
        raise
    finally:
        metrics.active_streams.dec()
        metrics.stream_done(chain.endpoint, ctx, events, patched)
    tail = chain.finish(ctx, last)
    if tail:
        await resp.write(tail)
    await resp.write_eof()
    log.debug("stream %s: %d events, %d patched, %.3fs", info.path, events, patched,
              time.monotonic() - t0)
    return resp


async def _session_ctx(app: web.Application):
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    app[SESSION] = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                         skip_auto_headers=("User-Agent",))
    yield
    await app[SESSION].close()


def create_app(cfg: Config, metrics: Metrics | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[CONFIG] = cfg
    app[CHAINS] = cfg.build_chains()
    app[METRICS] = metrics or Metrics()
    app.cleanup_ctx.append(_session_ctx)
    app.router.add_get("/healthz", healthz)
    if cfg.metrics:
        app.router.add_get("/sse-fixup/metrics", metrics_view)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app
