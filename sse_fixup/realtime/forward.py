"""``realtime: forward``: the client's WebSocket bridged to the backend's, message by message.

The upstream is connected first, so that a backend without a Realtime endpoint (or one
that refuses the key) answers the client's upgrade with its HTTP error, not a WebSocket
that closes at once.  Then two pumps run, one per direction, each message sent on as
soon as it came:

- server events go through the route's ``realtime`` rules (one ``ChainStage`` per
  connection: each text message is an ``sse.Event`` whose ``data`` is the message);
  binary and non-JSON messages pass unchanged;
- client events pass untouched.

Either side closing closes the other at once, with its code and reason.  Silence both
ways for ``timeouts.idle`` closes both (1001).  The upstream going away in the middle of a
response ends that response for the client: an ``error`` event, then ``response.done``
with status ``failed``, then close 1011.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

import aiohttp
from aiohttp import web

from ..chain import Chain
from ..rules import BUILTIN
from ..rules.base import Fault, RequestInfo, StreamContext
from ..sse import Event
from . import events as ev
from .meter import Meter

log = logging.getLogger("sse_fixup.realtime")

_CHAINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # Route -> its realtime Chain


def chain_of(route) -> Chain:
    """The route's realtime chain: the built-in ``realtime.*`` rules its presets select."""
    chain = _CHAINS.get(route)
    if chain is None:
        rules = [BUILTIN[n] for n in route.keys.rule_names() if BUILTIN[n].endpoint == "realtime"]
        chain = _CHAINS[route] = Chain("realtime", rules)
    return chain


def _upstream_url(route, request: web.Request) -> str:
    base = route.upstream
    base = "ws" + base[4:] if base.startswith("http") else base
    url = base + request.rel_url.raw_path
    if request.rel_url.raw_query_string:
        url += "?" + request.rel_url.raw_query_string
    return url


def upstream_headers(request: web.Request, cfg):
    from ..headers import forward_headers
    auth = cfg.auth
    headers = forward_headers(request.headers, drop_auth=bool(auth.api_keys) and not auth.forward_key,
                              upstream_key=auth.upstream_key)
    for name in ev.WS_HEADERS:           # the upstream handshake is aiohttp's own
        headers.popall(name, None)
    return headers


async def connect(request: web.Request, route):
    from ..proxy import CONFIG, METRICS, SESSION, ProxyError
    app = request.app
    cfg = app[CONFIG]
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    url = _upstream_url(route, request)
    try:
        async with asyncio.timeout(cfg.timeouts.connect):
            return await app[SESSION].ws_connect(
                url, headers=upstream_headers(request, cfg), protocols=protocols, autoclose=False,
                max_msg_size=cfg.limits.max_event_bytes)
    except aiohttp.WSServerHandshakeError as exc:
        app[METRICS].upstream_errors.labels("realtime_handshake").inc()
        log.warning("upstream %s refused the Realtime WebSocket: HTTP %s", route.upstream, exc.status)
        hint = " (no Realtime endpoint there? realtime: emulate serves one over chat)" \
            if exc.status in (404, 405) else ""
        raise ProxyError(exc.status if 400 <= exc.status < 600 else 502,
                         f"sse-fixup: the upstream refused the Realtime WebSocket at {route.upstream}: "
                         f"HTTP {exc.status} {exc.message}{hint}", "upstream_error",
                         "upstream_refused", kind="realtime_forward") from None
    except (aiohttp.ClientError, OSError) as exc:
        app[METRICS].upstream_errors.labels("connect").inc()
        raise ProxyError(502, f"sse-fixup: upstream {route.upstream} unreachable: {exc}",
                         "upstream_error", "upstream_unreachable", kind="realtime_forward") from None
    except TimeoutError:
        app[METRICS].upstream_errors.labels("connect").inc()
        raise ProxyError(504, f"sse-fixup: upstream {route.upstream} did not accept the WebSocket "
                         "within timeouts.connect", "upstream_error", "upstream_timeout",
                         kind="realtime_forward") from None


class Bridge:
    """One client WebSocket and its upstream WebSocket."""

    def __init__(self, request: web.Request, route, client: web.WebSocketResponse,
                 upstream: aiohttp.ClientWebSocketResponse, meter: Meter):
        self.client = client
        self.upstream = upstream
        self.meter = meter
        self.ctx = StreamContext(RequestInfo("realtime", request.rel_url.raw_path,
                                             {"model": request.rel_url.query.get("model")}))
        self.stage = chain_of(route).open(self.ctx)
        self.last = time.monotonic()
        self.closed_by: str | None = None

    async def run(self, idle: float) -> None:
        tasks = [asyncio.create_task(self.down()), asyncio.create_task(self.up()),
                 asyncio.create_task(self.watch(idle))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            try:
                code, reason = next(iter(done)).result()
            except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:   # a send failed
                self.closed_by = "upstream" if self.upstream.closed else "client"
                code, reason = 1011, f"sse-fixup: {exc}".encode()[:120]
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.closed_by == "upstream" and code in (1006, 1011) and self.meter.open_response:
            # the upstream went away mid-response: the client is told, as for HTTP streams
            fault = Fault("upstream_disconnected", "the upstream closed the Realtime connection "
                          "in the middle of a response")
            for obj in self.meter.fail(fault, self.ctx.response_id):
                await self._send_client(obj)
        await self.client.close(code=ev.close_code(code), message=reason)
        await self.upstream.close(code=ev.close_code(code), message=reason)
        self.meter.connection_done(self.ctx)

    async def _send_client(self, obj: dict) -> None:
        try:
            await self.client.send_str(ev.dumps(obj))
        except (ConnectionError, RuntimeError):
            pass

    async def down(self):
        """Upstream -> client, each server event through the rules."""
        up, client = self.upstream, self.client
        while True:
            msg = await up.receive()
            self.last = time.monotonic()
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = msg.data.encode()
                for out in self.stage.push([Event(data, None, data)]):
                    obj = out.json
                    if obj is not None:
                        self.meter.server_event(obj)
                    await client.send_str(ev.dumps(obj) if out.changed else out.data.decode())
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await client.send_bytes(msg.data)
            else:
                self.closed_by = "upstream"
                return self._why(up, msg)

    async def up(self):
        """Client -> upstream, untouched."""
        up, client = self.upstream, self.client
        while True:
            msg = await client.receive()
            self.last = time.monotonic()
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.meter.client_event(msg.data)
                await up.send_str(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await up.send_bytes(msg.data)
            else:
                self.closed_by = "client"
                return self._why(client, msg)

    async def watch(self, idle: float):
        while True:
            await asyncio.sleep(max(self.last + idle - time.monotonic(), 0.05))
            if time.monotonic() - self.last >= idle:
                self.closed_by = "idle"
                return 1001, b"sse-fixup: no message either way for timeouts.idle"

    @staticmethod
    def _why(ws, msg) -> tuple[int, bytes]:
        """The close code and reason a side ended with (its close frame, or what broke)."""
        if msg.type == aiohttp.WSMsgType.CLOSE:
            return msg.data, (msg.extra or "").encode()
        if msg.type == aiohttp.WSMsgType.ERROR:
            code = getattr(msg.data, "code", None) or ws.close_code or 1006
            return code, f"sse-fixup: {msg.data}".encode()[:120]
        return ws.close_code or 1006, b""


async def serve(request: web.Request, route) -> web.WebSocketResponse:
    from ..proxy import CONFIG, METRICS
    cfg = request.app[CONFIG]
    upstream = await connect(request, route)
    client = web.WebSocketResponse(protocols=(upstream.protocol,) if upstream.protocol else (),
                                   autoclose=False, max_msg_size=cfg.limits.max_event_bytes)
    try:
        await client.prepare(request)
    except BaseException:
        await upstream.close()
        raise
    metrics = request.app[METRICS]
    metrics.realtime_connections.labels("forward").inc()
    meter = Meter(metrics, "forward", request.rel_url.query.get("model"))
    await Bridge(request, route, client, upstream, meter).run(cfg.timeouts.idle)
    return client
