"""The aiohttp reverse proxy: forward every request, transform the answers the rules cover.

One handler, ``proxy``: the request goes to its route's upstream (``forward``, an async
context manager), and the answer is pumped through the route's transform - SSE read by
read (``stream.Pump``), a JSON body whole - or streamed through untouched.  Around it,
two middlewares: ``answer_errors`` counts every request once and turns ``ProxyError``
into an OpenAI-shaped error body; ``require_key`` checks ``auth.api_keys``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import random
import re
import time

import aiohttp
import orjson
from aiohttp import web

from . import access, dialects
from .answers import Answers
from .config import Config
from .convert import TranslationError
from .headers import forward_headers, response_headers
from .metrics import Metrics
from .routes import Router, endpoint_of
from .capture import Capturer, Recording
from .store import Stores, StoreError
from .rules.base import MINTING, Fault, RequestInfo, token
from .stream import Pump, Watch
from .tally import Tally

log = logging.getLogger("sse_fixup.proxy")

CONFIG = web.AppKey("config", Config)
ROUTER = web.AppKey("router", Router)
METRICS = web.AppKey("metrics", Metrics)
SESSION = web.AppKey("session", aiohttp.ClientSession)
FRESH = web.AppKey("fresh_session", aiohttp.ClientSession)
WATCH = web.AppKey("watch", Watch)
CLIENT_TIMEOUT = web.AppKey("client_timeout", aiohttp.ClientTimeout)
INFLIGHT = web.AppKey("inflight", set)
READY = web.AppKey("ready", dict)
KIND = web.RequestKey("kind", str)   # how the answer was handled, for the metric
TALLY = web.RequestKey("tally", Tally)
CAPTURE = web.AppKey("capture", Capturer)
STORES = web.AppKey("stores", Stores)
TAPS = web.RequestKey("taps", list)
RECORDING = web.RequestKey("recording", Recording)
ANSWERS = web.AppKey("answers", Answers)
OUTPUT = web.RequestKey("output", str)          # the dialect the client reads (dialects.OUTPUTS)
ASSEMBLY = web.RequestKey("assembly", object)   # the answer being assembled for the sinks
ROUTE_LABEL = web.RequestKey("route_label", str)
BODY = web.RequestKey("body", dict)             # the request body, for the assembled answer
OPEN_PATHS = ("/healthz", "/readyz")  # probes: no API key, not counted as requests


class ProxyError(Exception):
    """An answer the proxy gives itself: ``{"error": {message, type, code, param}}``."""

    def __init__(self, status: int, message: str, etype: str, code: str, *,
                 kind: str = "rejected", headers: dict | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.etype, self.code = status, message, etype, code
        self.kind = kind
        self.headers = headers
        self.param = param

    def response(self, output: str = "sse") -> web.Response:
        if output in dialects.DIALECTS:          # the frontend reads its own dialect's error
            body, headers = dialects.error_response_body(output, self.code, self.message)
            return web.Response(status=self.status, body=body, headers={**(self.headers or {}), **headers})
        body = orjson.dumps({"error": {"message": self.message, "type": self.etype,
                                       "code": self.code, "param": self.param}})
        return web.Response(status=self.status, body=body, content_type="application/json",
                            headers=self.headers)


@web.middleware
async def answer_errors(request: web.Request, handler):
    """Every request counted once, by endpoint, how it was handled and status; and its
    access-log line."""
    endpoint = endpoint_of(request.path) if request.method == "POST" else None
    status = 499                   # the client left before an answer was sent
    resp = None
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except ProxyError as exc:
        request[KIND] = exc.kind
        status = exc.status
        resp = exc.response(_output_of(request, endpoint))
        return resp
    finally:
        kind = request.get(KIND, "rejected")
        if endpoint is None and request.get(TALLY) is not None:
            endpoint = request[TALLY].endpoint          # /api/chat: the chat request it became
        if kind != "metrics" and request.path not in OPEN_PATHS:
            request.app[METRICS].requests.labels(endpoint or "other", kind, str(status)).inc()
        mode = request.app[CONFIG].access_log
        if mode != "off":
            sent = resp.body_length if resp is not None and resp.prepared else \
                len(resp.body) if isinstance(getattr(resp, "body", None), bytes) else None
            access.write(mode, access.record(request.method, request.rel_url.raw_path, status,
                                             request.get(TALLY), sent))


def _output_of(request: web.Request, endpoint: str | None) -> str:
    """The dialect an error goes out in; for a request refused before its route was known
    (a wrong key, a body too large) the route its path alone would take says."""
    output = request.get(OUTPUT)
    if output is not None or request.method != "POST":
        return output or "sse"
    router = request.app[ROUTER]
    if endpoint is None and request.path in router.ui_paths:
        return "ui-message-stream" if router.route(request.path).keys.ui_path == request.path else "sse"
    return dialects.requested(request.headers, router.route(request.path).output) if endpoint else "sse"


@web.middleware
async def require_key(request: web.Request, handler):
    """``auth.api_keys`` (read per request, so that a reload can change them)."""
    keys = request.app[CONFIG].auth.api_keys
    if keys and request.path not in OPEN_PATHS:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        given = given.strip().encode()
        # compare against every key, in constant time, so timing tells nothing
        if not (scheme.lower() == "bearer" and sum(hmac.compare_digest(given, k.encode()) for k in keys)):
            raise ProxyError(401, "sse-fixup: missing or incorrect API key (Authorization: Bearer ...)",
                             "invalid_request_error", "invalid_api_key",
                             headers={"WWW-Authenticate": "Bearer"})
    return await handler(request)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "upstream": request.app[CONFIG].upstream})


READY_TTL = 1.5       # seconds a probe result is reused: a probe storm must not reach the backend
READY_TIMEOUT = 2.0


async def readyz(request: web.Request) -> web.Response:
    """Ready when every route's upstream answers HTTP below 500 on ``/health``
    (llama-server says 503 while it loads a model; a backend without /health says 404,
    which means it is up)."""
    request[KIND] = "metrics"
    app = request.app
    results = await asyncio.gather(*(_probe(app, u) for u in app[ROUTER].upstreams))
    down = {u: why for u, why in zip(app[ROUTER].upstreams, results) if why}
    if not down:
        return web.json_response({"status": "ready", "upstreams": {u: "ok" for u in app[ROUTER].upstreams}})
    first, why = next(iter(down.items()))
    raise ProxyError(503, f"sse-fixup: not ready: upstream {first} {why}"
                     + (f" (and {len(down) - 1} more)" if len(down) > 1 else ""),
                     "upstream_error", "upstream_not_ready", kind="metrics")


async def _probe(app: web.Application, upstream: str) -> str | None:
    """None when ``upstream`` is up, else why not; cached for READY_TTL seconds."""
    cache = app[READY]
    now = time.monotonic()
    hit = cache.get(upstream)
    if hit is not None and now - hit[0] < READY_TTL:
        return hit[1]
    why = None
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            async with app[FRESH].get(upstream + "/health", allow_redirects=False) as resp:
                if resp.status >= 500:
                    body = (await resp.read())[:200].decode("utf-8", "replace").strip()
                    why = f"answered /health with {resp.status}" + (f": {body}" if body else "")
    except TimeoutError:
        why = f"did not answer /health within {READY_TIMEOUT:g}s"
    except aiohttp.ClientError as exc:
        why = f"is unreachable: {exc}"
    cache[upstream] = (time.monotonic(), why)
    return why


async def metrics_view(request: web.Request) -> web.Response:
    request[KIND] = "metrics"
    m = request.app[METRICS]
    return web.Response(body=m.render(), headers={"Content-Type": m.content_type})


async def proxy(request: web.Request) -> web.StreamResponse:
    app = request.app
    inflight = app[INFLIGHT]
    task = asyncio.current_task()
    inflight.add(task)
    try:
        path = request.rel_url.raw_path
        endpoint = endpoint_of(path) if request.method == "POST" else None
        router = app[ROUTER]
        ui = request.method == "POST" and endpoint is None and path in router.ui_paths
        if ui:
            request[OUTPUT] = "ui-message-stream"
        data, body = await _read_body(request, "chat" if ui else endpoint)
        if ui:
            data, body, path, endpoint = _from_usechat(request, router, path, data, body)
        info = RequestInfo(endpoint, path, body) if endpoint is not None else None
        if request.method == "GET" and path.rstrip("/").endswith("/models") and len(router.upstreams) > 1:
            request[KIND] = "models"
            return await _models(request, router)
        route = router.route(request.rel_url.raw_path if ui else path, info.model if info else None)
        tally = None
        if info is not None and not ui:
            request[OUTPUT] = dialects.requested(request.headers, route.output)
        if info is not None and request[OUTPUT] != "sse" and body is not None:
            body, data = _dialect_request(body, data, endpoint)
            info = RequestInfo(endpoint, path, body)
        if info is not None and request[OUTPUT] != "sse":
            info.stream = True               # a dialect is a stream, whatever the body said
        if info is not None:
            tally = request[TALLY] = Tally(endpoint, info.model, info.stream, request[OUTPUT])
            rec = app[CAPTURE].start(request.method, path, request.rel_url.raw_query_string,
                                     request.headers, data, endpoint, info.model)
            if rec is not None:
                request[RECORDING] = rec
                MINTING.set(rec.minting)      # this task's minted ids and clock, for the replay
        if info is not None:
            request[TAPS] = _live_check(app, route, endpoint)
            if app[ANSWERS]:
                request[TAPS].append(_assembly_tap(request, app[ANSWERS]))
                request[ROUTE_LABEL] = route.label
                if body is not None:
                    request[BODY] = body
        if endpoint == "responses" and body is not None:
            store = app[STORES].for_route(route)
            if store is not None:
                # previous_response_id expanded before anything else (a translation included)
                try:
                    expanded = await store.expand(body)
                except StoreError as exc:
                    raise ProxyError(exc.status, f"sse-fixup: {exc.message}", "invalid_request_error"
                                     if exc.status < 500 else "server_error", exc.code,
                                     param=exc.param) from None
                if expanded is not body:
                    body, data = expanded, orjson.dumps(expanded)
                tap = store.tap(info, body)
                if tap is not None:
                    request[TAPS].append(tap)
        if isinstance(data, bytes):
            try:
                data = route.request_body(data, body, endpoint)
            except TranslationError as exc:
                raise ProxyError(400, f"sse-fixup: {exc.message}", "invalid_request_error",
                                 exc.code, param=exc.param) from None
        request[KIND] = "passthrough"
        upstream_path = route.upstream_path(path, endpoint)
        async with forward(request, route.upstream, data, endpoint, upstream_path,
                           route.upstream_headers(endpoint)) as (upstream, sent_at):
            if tally is not None:
                tally.sent_at, tally.first_byte_at = sent_at, time.monotonic()
            ctype = upstream.headers.get("Content-Type", "").split(";")[0].strip().lower()
            ok = 200 <= upstream.status < 300 and not upstream.headers.get("Content-Encoding")
            if endpoint is not None and not 200 <= upstream.status < 300 and request[OUTPUT] != "sse":
                request[KIND] = "dialect_error"
                return await _dialect_upstream_error(request, upstream)
            if endpoint is not None and not 200 <= upstream.status < 300 and upstream_path != path:
                request[KIND] = "translated_error"
                return await _translated_error(request, upstream, route, endpoint)
            if endpoint is not None and ok and ctype == "text/event-stream":
                if not info.stream:          # the route streams, the client wants one body
                    request[KIND] = "aggregated"
                    return await _aggregate(request, upstream, _open(request, route, info, "stream", "body"), info)
                request[KIND] = "stream"
                return await _stream(request, upstream, _open(request, route, info, "stream", "stream"),
                                     info, sent_at)
            if endpoint is not None and ok and ctype == "application/json":
                if info.stream:              # the backend ignored stream, or the route asked JSON
                    request[KIND] = "synthesised"
                    return await _body(request, upstream, _open(request, route, info, "body", "stream"), info,
                                       content_type="text/event-stream")
                request[KIND] = "body"
                return await _body(request, upstream, _open(request, route, info, "body", "body"), info)
            if tally is not None and upstream.status >= 400:
                tally.finish = f"http_{upstream.status}"
            return await _passthrough(request, upstream)
    finally:
        inflight.discard(task)
        tally = request.get(TALLY)
        if tally is not None and tally.sent_at is not None:
            if tally.ended_at is None:
                tally.end()
            app[METRICS].answer_done(tally)
            assembly = request.get(ASSEMBLY)
            if assembly is not None:
                _submit_answer(request, app[ANSWERS], assembly, tally)
            rec = request.get(RECORDING)
            if rec is not None and tally.ctx is not None:
                rec.finish(tally.ctx, tally.ctx.status)


def _open(request: web.Request, route, info: RequestInfo, upstream: str, client: str):
    rec = request.get(RECORDING)
    if rec is not None:
        rec.shape = (upstream, client)
    return route.open(info, upstream, client, request.get(TAPS) or (), request.get(OUTPUT, "sse"))


def _from_usechat(request: web.Request, router, path: str, data, body):
    """``useChat``'s request on the route's ``ui_path``: the chat completions request it
    stands for (data, body, path, endpoint).  A route whose ui_path is another one takes
    the request as it is (forwarded, no dialect)."""
    from .dialects.usechat import UIRequestError, chat_request, responses_request

    model = body.get("model") if isinstance(body, dict) else None
    route = router.route(path, model if isinstance(model, str) else None)
    if route.keys.ui_path != path:
        request[OUTPUT] = "sse"
        return data, body, path, None
    responses = route.keys.ui_endpoint == "responses"
    try:
        req = (responses_request if responses else chat_request)(body, route.keys.model)
    except UIRequestError as exc:
        raise ProxyError(400, f"sse-fixup: {path}: {exc.message}", "invalid_request_error",
                         "invalid_ui_request", param=exc.param) from None
    if responses:
        return orjson.dumps(req), req, "/v1/responses", "responses"
    return orjson.dumps(req), req, "/v1/chat/completions", "chat"


def _dialect_request(body: dict, data: bytes, endpoint: str):
    """A dialect's request upstream: streaming, and (chat) with the usage, which the
    completed line and the finish report."""
    want = {"stream": True}
    if endpoint == "chat" and "stream_options" not in body:
        want["stream_options"] = {"include_usage": True}
    if all(body.get(k) == v for k, v in want.items()):
        return body, data
    body = {**body, **want}
    return body, orjson.dumps(body)


def _assembly_tap(request: web.Request, answers: Answers):
    """The assembly tap, remembered on the request so its record can be sent at the end."""
    make = answers.tap()

    def tap(ctx, shape):
        request[ASSEMBLY] = stage = make(ctx, shape)
        return stage
    return tap


def _submit_answer(request: web.Request, answers: Answers, assembly, tally) -> None:
    try:
        answers.submit(assembly.record(
            tally=tally, route=request.get(ROUTE_LABEL, "default"),
            request_id=request.headers.get("X-Request-Id") or f"req_{token()}",
            body=request.get(BODY), include_request=answers.cfg.include_request,
            status=assembly.ctx.status))
    except Exception as exc:                   # the answer is out; a sink problem stays a sink problem
        answers.dropped("all", "unserialisable", exc)


async def _dialect_upstream_error(request: web.Request, upstream) -> web.Response:
    """The backend's 4xx/5xx for a frontend reading a dialect: its status, its message in
    the dialect's error form (a frontend must never wait on an answer that will not come)."""
    try:
        async with asyncio.timeout(request.app[CONFIG].timeouts.idle):
            data = await upstream.read()
    except TimeoutError:
        data = b""
    message = data[:2000].decode("utf-8", "replace").strip() or f"the upstream answered {upstream.status}"
    code = f"http_{upstream.status}"
    try:
        err = orjson.loads(data).get("error")
        if isinstance(err, dict):
            message = str(err.get("message") or message)
            code = str(err.get("code") or err.get("type") or code)
        elif isinstance(err, str):
            message = err
    except (orjson.JSONDecodeError, AttributeError):
        pass
    tally = request.get(TALLY)
    if tally is not None:
        tally.finish = f"http_{upstream.status}"
    body, headers = dialects.error_response_body(request[OUTPUT], code, message)
    return web.Response(status=upstream.status, body=body, headers=headers)


def _live_check(app: web.Application, route, endpoint: str) -> list:
    """``validate.sample``: the strict validator on this answer, after the rules (a tap)."""
    sample = app[CONFIG].validate.sample
    if not sample or random.random() >= sample:
        return []
    from .validate.live import LiveCheck, first_of_kind

    metrics = app[METRICS]

    def report(pairs):
        for finding, _ in pairs:
            metrics.conformance.labels(finding.kind, route.label).inc()
        first_of_kind(pairs, route.label)

    return [lambda ctx, shape: LiveCheck(endpoint, ctx, report, "stream" if shape == "stream" else "body")]


async def _read_body(request: web.Request, endpoint: str | None):
    """The body to forward (bytes, the request's stream, or None) and, for endpoints, the
    parsed JSON object (None when it is not one)."""
    cfg = request.app[CONFIG]
    length = request.content_length
    if length is not None and length > cfg.limits.max_request_bytes:
        raise _too_large(cfg)
    if endpoint is None and not request.body_exists:
        return None, None
    if endpoint is None and length is not None:
        return request.content, None           # streamed through as it comes
    # endpoint bodies are small (a prompt) and the rules need model/stream/tools;
    # a chunked body of unknown length is read so that the limit can hold
    try:
        data = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(cfg) from None
    if cfg.log_bodies:
        log.info("request %s %s body: %r", request.method, request.rel_url.raw_path, data)
    if endpoint is None:
        return data, None
    try:
        parsed = orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        parsed = None                           # forwarded untouched: the backend decides
    return data, parsed if isinstance(parsed, dict) else None


def _too_large(cfg: Config) -> ProxyError:
    return ProxyError(413, f"sse-fixup: request body larger than limits.max_request_bytes "
                      f"({cfg.limits.max_request_bytes} bytes)", "invalid_request_error",
                      "request_too_large")


@contextlib.asynccontextmanager
async def forward(request: web.Request, upstream_url: str, body, endpoint: str | None,
                  path: str | None = None, rewrite=None):
    """The upstream's response to this request (and when it was sent), released at exit.

    Only path and query come from the request: the upstream is fixed by the config.  A
    pooled connection the upstream closed while idle fails before any byte of the answer
    came, so the request cannot have been processed: it is sent once more on a new
    connection (as nginx and Envoy do), and counted.
    """
    app = request.app
    cfg = app[CONFIG]
    metrics = app[METRICS]
    url = upstream_url + (path or request.rel_url.raw_path)
    if request.rel_url.raw_query_string:
        url += "?" + request.rel_url.raw_query_string
    auth = cfg.auth
    headers = forward_headers(request.headers, drop_encoding=endpoint is not None,
                              drop_auth=bool(auth.api_keys) and not auth.forward_key,
                              upstream_key=auth.upstream_key)
    if rewrite is not None:
        headers = rewrite(headers)
    if isinstance(body, aiohttp.StreamReader):
        headers["Content-Length"] = str(request.content_length)
    sent_at = time.monotonic()
    try:
        async with asyncio.timeout(cfg.timeouts.first_byte):
            upstream = await _send(app, request.method, url, headers, body)
    except (aiohttp.ClientConnectorError, aiohttp.ClientOSError, aiohttp.InvalidURL,
            aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        metrics.upstream_errors.labels("connect").inc()
        log.warning("upstream %s unreachable: %s", upstream_url, exc)
        raise ProxyError(502, f"sse-fixup: upstream {upstream_url} unreachable: {exc}",
                         "upstream_error", "upstream_unreachable", kind="passthrough") from None
    except (TimeoutError, aiohttp.ServerTimeoutError):
        metrics.upstream_errors.labels("first_byte_timeout").inc()
        raise ProxyError(504, f"sse-fixup: upstream {upstream_url} sent no response in time",
                         "upstream_error", "upstream_timeout", kind="passthrough") from None
    try:
        _honour_keep_alive(app[SESSION].connector, upstream.headers)
        yield upstream, sent_at
    finally:
        upstream.release()
        await upstream.wait_for_close()


async def _send(app: web.Application, method: str, url: str, headers, body) -> aiohttp.ClientResponse:
    trace = {"reused": False}
    kw = dict(headers=headers, data=body, timeout=app[CLIENT_TIMEOUT], allow_redirects=False)
    try:
        return await app[SESSION].request(method, url, trace_request_ctx=trace, **kw)
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        if not trace["reused"] or isinstance(body, aiohttp.StreamReader):
            raise                     # a new connection failed, or the body is gone: no retry
    app[METRICS].upstream_retries.inc()
    log.info("a pooled upstream connection was closed by the upstream; sending again on a new one")
    return await app[FRESH].request(method, url, **kw)


_KEEP_ALIVE_TIMEOUT = re.compile(r"timeout\s*=\s*(\d+)")


def _honour_keep_alive(connector, headers) -> None:
    """An upstream that says ``Keep-Alive: timeout=N`` closes idle connections after N s:
    the pool must not hand one out later than that (aiohttp keeps one timeout per
    connector, so it is lowered to the shortest the upstream announced, less a second)."""
    m = _KEEP_ALIVE_TIMEOUT.search(headers.get("Keep-Alive", ""))
    if m is None or not hasattr(connector, "_keepalive_timeout"):
        return
    wanted = max(int(m.group(1)) - 1.0, 0.5)
    if connector._keepalive_timeout is None or wanted < connector._keepalive_timeout:
        connector._keepalive_timeout = wanted


async def _stream(request, upstream, transform, info, sent_at) -> web.StreamResponse:
    app = request.app
    metrics = app[METRICS]
    pump = Pump(request, upstream, transform, info, app[CONFIG], metrics, sent_at, request.get(TALLY),
                request.get(RECORDING))
    watch = app[WATCH]
    watch.add(pump)
    metrics.active_streams.inc()
    try:
        return await pump.run()
    finally:
        metrics.active_streams.dec()
        watch.discard(pump)


async def _passthrough(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    resp = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                              headers=response_headers(upstream.headers, streaming=False))
    length = upstream.headers.get("Content-Length")
    if length is not None and not upstream.headers.get("Transfer-Encoding"):
        resp.content_length = int(length)
    await resp.prepare(request)
    try:
        async for chunk in _chunks(request, upstream):
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


async def _whole_body(request: web.Request, upstream) -> bytes:
    """An upstream body read whole, within timeouts.idle (else a 504)."""
    try:
        async with asyncio.timeout(request.app[CONFIG].timeouts.idle):
            return await upstream.read()
    except TimeoutError:
        raise ProxyError(504, "sse-fixup: the upstream sent its headers but not its body within "
                         "timeouts.idle", "upstream_error", "upstream_idle_timeout") from None


async def _body(request: web.Request, upstream, transform, info: RequestInfo,
                content_type: str | None = None) -> web.Response:
    """A whole JSON body through its transform: patched, or made into the stream the
    client asked for (``content_type`` then says so)."""
    data = await _whole_body(request, upstream)
    out = transform.head() + transform.feed(data) + transform.close()
    request.app[METRICS].rules_done(transform.ctx)
    rec = request.get(RECORDING)
    if rec is not None:
        rec.read(data)
        rec.wrote(out)
    _tally_body(request, out, upstream.status, transform.ctx)
    if request.app[CONFIG].log_bodies:
        log.info("response %s body: %r", info.path, out)
    headers = response_headers(upstream.headers, streaming=content_type == "text/event-stream")
    if content_type:
        headers["Content-Type"] = content_type
    headers.update(getattr(transform.stages[-1], "http_headers", None) or {})
    return web.Response(status=upstream.status, reason=upstream.reason, body=out, headers=headers)


async def _aggregate(request: web.Request, upstream, transform, info: RequestInfo) -> web.Response:
    """A stream the client wants as one body: read to its end, then the body it adds up to
    (an OpenAI-shaped error with a 502 when the stream failed or was cut)."""
    fault = None
    rec = request.get(RECORDING)
    out = b""
    try:
        async for chunk in _chunks(request, upstream):
            if rec is not None:
                rec.read(chunk)
            out += transform.feed(chunk)         # the body is made at the end: nothing yet
            if transform.fault is not None:
                break
    except TimeoutError:
        fault = Fault("upstream_idle_timeout", "the upstream sent nothing for timeouts.idle")
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        fault = Fault("upstream_disconnected", f"the upstream closed the stream before it was complete ({exc})")
    out += transform.close(fault)
    if rec is not None:
        rec.wrote(out)
    request.app[METRICS].rules_done(transform.ctx)
    _tally_body(request, out, transform.ctx.status, transform.ctx)
    if request.app[CONFIG].log_bodies:
        log.info("response %s body: %r", info.path, out)
    headers = response_headers(upstream.headers, streaming=False)
    headers["Content-Type"] = "application/json"
    return web.Response(status=transform.ctx.status, body=out, headers=headers)


def _tally_body(request: web.Request, out: bytes, status: int, ctx) -> None:
    tally = request.get(TALLY)
    if tally is not None:
        tally.body(out, status)
        tally.end(ctx)


async def _chunks(request: web.Request, upstream: aiohttp.ClientResponse):
    """An upstream body read by read, each read within timeouts.idle (streams the pump
    serves are watched by the Watch instead)."""
    idle = request.app[CONFIG].timeouts.idle
    read = upstream.content.readany
    while True:
        async with asyncio.timeout(idle):
            chunk = await read()
        if not chunk:
            return
        yield chunk


async def _translated_error(request: web.Request, upstream, route, endpoint: str) -> web.Response:
    """A translated route's backend said no: its error in the client's API, status kept."""
    data = await _whole_body(request, upstream)
    out = route.upstream_error(endpoint, upstream.status, data)
    tally = request.get(TALLY)
    if tally is not None:
        tally.finish = f"http_{upstream.status}"
    return web.Response(status=upstream.status, body=out if out is not None else data,
                        content_type="application/json")


async def _models(request: web.Request, router: Router) -> web.Response:
    """GET /v1/models in front of several backends: every upstream's list, merged (first
    seen wins for a model id), because clients pick a model from it."""
    app = request.app
    path = request.rel_url.raw_path

    async def one(upstream_url):
        async with forward(request, upstream_url, None, None) as (resp, _):
            if resp.status != 200:
                raise ValueError(f"status {resp.status}")
            return orjson.loads(await resp.read())

    seen: dict = {}
    errors = []
    for upstream_url, got in zip(router.upstreams, await asyncio.gather(
            *(one(u) for u in router.upstreams), return_exceptions=True)):
        if isinstance(got, BaseException):
            errors.append(f"{upstream_url}: {getattr(got, 'message', None) or got}")
            continue
        for model in got.get("data") or () if isinstance(got, dict) else ():
            if isinstance(model, dict) and model.get("id") not in seen:
                seen[model.get("id")] = model
    if errors:
        log.warning("GET %s: some upstreams gave no model list: %s", path, "; ".join(errors))
    if not seen and errors:
        raise ProxyError(502, f"sse-fixup: no upstream gave a model list ({'; '.join(errors)})",
                         "upstream_error", "upstream_unreachable", kind="models")
    app[METRICS].upstream_errors.labels("models").inc(len(errors))
    return web.json_response({"object": "list", "data": list(seen.values())})


async def _sessions(app: web.Application):
    def trace_reuse():
        tc = aiohttp.TraceConfig()

        async def reused(session, ctx, params):
            if ctx.trace_request_ctx is not None:
                ctx.trace_request_ctx["reused"] = True
        tc.on_connection_reuseconn.append(reused)
        return [tc]

    kw = dict(auto_decompress=False, skip_auto_headers=("User-Agent",))
    app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                                         trace_configs=trace_reuse(), **kw)
    # for the one retry after a pooled connection failed: a connection of its own
    app[FRESH] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True), **kw)
    yield
    await app[WATCH].close()
    await app[SESSION].close()
    await app[FRESH].close()


def create_app(cfg: Config, metrics: Metrics | None = None, router: Router | None = None) -> web.Application:
    app = web.Application(client_max_size=cfg.limits.max_request_bytes,
                          middlewares=[answer_errors, require_key])
    app[CONFIG] = cfg
    app[WATCH] = Watch(cfg)
    t = cfg.timeouts
    # no sock_read: aiohttp would re-arm a timer on every read (measured: 8 % of the proxy's
    # CPU at model-like rates); the Watch enforces first_byte and idle on streams, and the
    # other bodies are read under timeouts.idle (_chunks, _body)
    app[CLIENT_TIMEOUT] = aiohttp.ClientTimeout(total=None, sock_connect=t.connect)
    app[INFLIGHT] = set()
    app[ROUTER] = router or Router(cfg)
    app[METRICS] = metrics or Metrics(cfg.metrics_max_models)
    app[READY] = {}
    app[CAPTURE] = Capturer(cfg, app[METRICS])
    app[STORES] = Stores(cfg, app[METRICS])
    app[ANSWERS] = Answers(cfg, app[METRICS])
    app.cleanup_ctx.append(_sessions)
    app.cleanup_ctx.append(app[STORES].lifecycle)
    app.cleanup_ctx.append(app[ANSWERS].lifecycle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if cfg.metrics:
        app.router.add_get("/sse-fixup/metrics", metrics_view)
    from . import realtime               # GET /v1/realtime: a WebSocket, not a proxied body
    for path in realtime.PATHS:
        app.router.add_get(path, realtime.handler)
    from .store import views             # stored responses; the backend's own when no store
    app.router.add_get("/v1/responses/{response_id}", views.get)
    app.router.add_delete("/v1/responses/{response_id}", views.delete)
    app.router.add_get("/v1/responses/{response_id}/input_items", views.input_items)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app
