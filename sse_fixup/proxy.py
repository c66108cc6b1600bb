"""The aiohttp reverse proxy: forward every request, patch what the rules cover.

``/…/responses`` and ``/…/chat/completions`` (with or without ``/v1``): a
``text/event-stream`` answer is pumped through the stream chain read by read
(``stream.Pump``), a JSON body goes through the body chain; everything else streams
through untouched.  Here: auth, request limits, forwarding, upstream errors.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time

import aiohttp
import orjson
from aiohttp import web

from .chain import BodyChain
from .config import Config
from .headers import forward_headers, response_headers
from .metrics import Metrics
from .rules.base import RequestInfo
from .stream import Pump, Watch

log = logging.getLogger("sse_fixup.proxy")

CONFIG = web.AppKey("config", Config)
CHAINS = web.AppKey("chains", dict)
METRICS = web.AppKey("metrics", Metrics)
SESSION = web.AppKey("session", aiohttp.ClientSession)
WATCH = web.AppKey("watch", Watch)
CLIENT_TIMEOUT = web.AppKey("client_timeout", aiohttp.ClientTimeout)
INFLIGHT = web.AppKey("inflight", set)


def endpoint_of(path: str) -> str | None:
    path = path.rstrip("/")
    if path.endswith("/responses"):
        return "responses"
    if path.endswith("/chat/completions"):
        return "chat"
    return None


def error_response(status: int, message: str, etype: str, code: str,
                   headers: dict | None = None) -> web.Response:
    body = orjson.dumps({"error": {"message": message, "type": etype, "code": code, "param": None}})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def unauthorized(request: web.Request) -> web.Response | None:
    """401 unless the request carries one of ``auth.api_keys`` (when any are configured)."""
    keys = request.app[CONFIG].auth.api_keys
    if not keys:
        return None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip().encode()
    # compare against every key, in constant time, so timing tells nothing
    ok = scheme.lower() == "bearer" and sum(hmac.compare_digest(given, k.encode()) for k in keys)
    if ok:
        return None
    request.app[METRICS].requests.labels("other", "rejected", "401").inc()
    return error_response(401, "sse-fixup: missing or incorrect API key (Authorization: Bearer ...)",
                          "invalid_request_error", "invalid_api_key",
                          headers={"WWW-Authenticate": "Bearer"})


def too_large(request: web.Request) -> web.Response:
    limit = request.app[CONFIG].limits.max_request_bytes
    request.app[METRICS].requests.labels("other", "rejected", "413").inc()
    return error_response(413, f"sse-fixup: request body larger than limits.max_request_bytes "
                          f"({limit} bytes)", "invalid_request_error", "request_too_large")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "upstream": request.app[CONFIG].upstream})


async def metrics_view(request: web.Request) -> web.Response:
    denied = unauthorized(request)
    if denied is not None:
        return denied
    m = request.app[METRICS]
    return web.Response(body=m.render(), headers={"Content-Type": m.content_type})


async def proxy(request: web.Request) -> web.StreamResponse:
    denied = unauthorized(request)
    if denied is not None:
        return denied
    app = request.app
    task = asyncio.current_task()
    inflight = app[INFLIGHT]
    inflight.add(task)
    try:
        sent = await _send(request)      # its locals (headers, body, ...) end with it
        if isinstance(sent, web.StreamResponse):
            return sent
        upstream, up_cm, endpoint, info, sent_at = sent
        metrics = app[METRICS]
        kind = "passthrough"
        try:
            ctype = upstream.headers.get("Content-Type", "").split(";")[0].strip().lower()
            ok = 200 <= upstream.status < 300 and not upstream.headers.get("Content-Encoding")
            if endpoint is not None and ok and ctype == "text/event-stream":
                kind = "stream"
                pump = Pump(request, upstream, app[CHAINS][(endpoint, "stream")], info,
                            app[CONFIG], metrics, sent_at)
                watch = app[WATCH]
                watch.add(pump)
                metrics.active_streams.inc()
                try:
                    return await pump.run()
                finally:
                    metrics.active_streams.dec()
                    watch.discard(pump)
            if endpoint is not None and ok and ctype == "application/json":
                kind = "body"
                return await _body(request, upstream, app[CHAINS][(endpoint, "body")], info)
            return await _passthrough(request, upstream)
        finally:
            metrics.requests.labels(endpoint or "other", kind, str(upstream.status)).inc()
            await up_cm.__aexit__(None, None, None)
    finally:
        inflight.discard(task)


async def _send(request: web.Request):
    """Forward the request: (upstream response, its context, endpoint, RequestInfo, time
    sent), or the error response to give instead (401/413/502/504)."""
    app = request.app
    cfg = app[CONFIG]
    metrics = app[METRICS]
    path = request.rel_url.raw_path
    endpoint = endpoint_of(path) if request.method == "POST" else None
    # the upstream is fixed: only path and query come from the request
    url = cfg.upstream + path
    if request.rel_url.raw_query_string:
        url += "?" + request.rel_url.raw_query_string
    auth = cfg.auth
    headers = forward_headers(request.headers, drop_encoding=endpoint is not None,
                              drop_auth=bool(auth.api_keys) and not auth.forward_key,
                              upstream_key=auth.upstream_key)
    length = request.content_length
    if length is not None and length > cfg.limits.max_request_bytes:
        return too_large(request)
    info = None
    data = None
    if endpoint is not None or (request.body_exists and length is None):
        # endpoint bodies are small (a prompt) and the rules need model/stream/tools;
        # a chunked body of unknown length is read so that the limit can hold
        try:
            data = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return too_large(request)
    elif request.body_exists:
        data = request.content           # streamed through as it comes
        headers["Content-Length"] = str(length)
    if endpoint is not None:
        try:
            parsed = orjson.loads(data) if data else None
        except orjson.JSONDecodeError:
            parsed = None                 # forwarded untouched: the backend decides
        info = RequestInfo(endpoint, path, parsed if isinstance(parsed, dict) else None)
    if cfg.log_bodies:
        log.info("request %s %s body: %r", request.method, path,
                 data if isinstance(data, bytes) else "<streamed>")
    sent_at = time.monotonic()
    try:
        async with asyncio.timeout(cfg.timeouts.first_byte):
            up_cm = app[SESSION].request(request.method, url, headers=headers, data=data,
                                         timeout=app[CLIENT_TIMEOUT], allow_redirects=False)
            upstream = await up_cm.__aenter__()
    except (aiohttp.ClientConnectorError, aiohttp.ClientOSError, aiohttp.InvalidURL,
            aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        metrics.upstream_errors.labels("connect").inc()
        metrics.requests.labels(endpoint or "other", "passthrough", "502").inc()
        log.warning("upstream %s unreachable: %s", cfg.upstream, exc)
        return error_response(502, f"sse-fixup: upstream {cfg.upstream} unreachable: {exc}",
                              "upstream_error", "upstream_unreachable")
    except (TimeoutError, aiohttp.ServerTimeoutError):
        metrics.upstream_errors.labels("first_byte_timeout").inc()
        metrics.requests.labels(endpoint or "other", "passthrough", "504").inc()
        return error_response(504, f"sse-fixup: upstream {cfg.upstream} sent no response in time",
                              "upstream_error", "upstream_timeout")
    return upstream, up_cm, endpoint, info, sent_at


async def _passthrough(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    resp = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                              headers=response_headers(upstream.headers, streaming=False))
    length = upstream.headers.get("Content-Length")
    if length is not None and not upstream.headers.get("Transfer-Encoding"):
        resp.content_length = int(length)
    await resp.prepare(request)
    try:
        async for chunk in upstream.content.iter_any():
            await resp.write(chunk)
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError,
            TimeoutError) as exc:
        # cut the client off too: a clean end would pass a truncated body off as whole
        request.app[METRICS].upstream_errors.labels("passthrough_broken").inc()
        log.warning("upstream body for %s broke: %s", request.rel_url.raw_path, exc)
        if request.transport is not None:
            request.transport.abort()
        return resp
    await resp.write_eof()
    return resp


async def _body(request: web.Request, upstream, chain: BodyChain, info: RequestInfo) -> web.Response:
    metrics = request.app[METRICS]
    body = await upstream.read()
    out, ctx = chain.process(body, info)
    metrics.rules_done(ctx)
    if request.app[CONFIG].log_bodies:
        log.info("response %s body: %r", info.path, out)
    return web.Response(status=upstream.status, reason=upstream.reason, body=out,
                        headers=response_headers(upstream.headers, streaming=False))


async def _session_ctx(app: web.Application):
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    app[SESSION] = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                         skip_auto_headers=("User-Agent",))
    yield
    await app[WATCH].close()
    await app[SESSION].close()


def create_app(cfg: Config, metrics: Metrics | None = None) -> web.Application:
    app = web.Application(client_max_size=cfg.limits.max_request_bytes)
    app[CONFIG] = cfg
    app[WATCH] = Watch(cfg)
    t = cfg.timeouts
    # sock_read is only a backstop: the Watch enforces first_byte and idle on streams
    app[CLIENT_TIMEOUT] = aiohttp.ClientTimeout(
        total=None, sock_connect=t.connect,
        sock_read=max((x for x in (t.first_byte, t.idle) if x), default=None))
    app[INFLIGHT] = set()
    app[CHAINS] = cfg.build_chains()
    app[METRICS] = metrics or Metrics()
    app.cleanup_ctx.append(_session_ctx)
    app.router.add_get("/healthz", healthz)
    if cfg.metrics:
        app.router.add_get("/sse-fixup/metrics", metrics_view)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app
