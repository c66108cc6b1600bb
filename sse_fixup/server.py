"""Running the proxy: listen, serve, and on SIGTERM/SIGINT shut down gracefully.

Graceful shutdown: stop accepting at once, let in-flight requests finish for up to
``timeouts.shutdown_grace`` seconds, then end the streams still open with their
terminal event (code ``proxy_shutdown``) and exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from .config import Config
from .proxy import INFLIGHT, WATCH, create_app
from .rules.base import Fault

log = logging.getLogger("sse_fixup.server")

SHUTDOWN = Fault("proxy_shutdown", "the proxy is shutting down")


async def serve(cfg: Config, *, reuse_port: bool = False, announce=print) -> None:
    app = create_app(cfg)
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, cfg.host, cfg.port, reuse_port=reuse_port or None,
                           backlog=4096)   # 500 clients opening at once must not wait on SYN retries
        await site.start()
        announce(f"sse-fixup: listening on http://{cfg.host}:{cfg.port} -> {cfg.upstream} "
                 f"(presets: {', '.join(cfg.presets) or 'none'})")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await drain(app, runner, cfg.timeouts.shutdown_grace)
    finally:
        await runner.cleanup()


async def drain(app: web.Application, runner: web.AppRunner, grace: float) -> None:
    for site in list(runner.sites):
        await site.stop()                      # no new connections
    if runner.server is not None:
        runner.server.pre_shutdown()           # keep-alive connections close after this request
    inflight = app[INFLIGHT]
    loop = asyncio.get_running_loop()
    log.info("shutting down: %d request(s) in flight, up to %gs grace", len(inflight), grace)
    deadline = loop.time() + grace
    while inflight and loop.time() < deadline:
        await asyncio.sleep(0.05)
    if inflight:
        app[WATCH].abort_all(SHUTDOWN)         # streams: terminal event, then close
        deadline = loop.time() + 2.0
        while inflight and loop.time() < deadline:
            await asyncio.sleep(0.02)
    # whatever is left (a non-stream request still waiting upstream) is cancelled by cleanup
