"""Running the proxy: listen, serve, and on SIGTERM/SIGINT shut down gracefully.

Graceful shutdown: stop accepting at once, let in-flight requests finish for up to
``timeouts.shutdown_grace`` seconds, then end the streams still open with their
terminal event (code ``proxy_shutdown``) and exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

from aiohttp import web

from .config import Config, ConfigError
from .proxy import INFLIGHT, ROUTER, WATCH, create_app
from .rules.base import Fault

log = logging.getLogger("sse_fixup.server")

SHUTDOWN = Fault("proxy_shutdown", "the proxy is shutting down")


def loop_factory(choice: str):
    """``auto``: uvloop when installed (the ``uvloop`` extra), else asyncio's own loop."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("event_loop: uvloop is not installed (pip install 'sse-fixup[uvloop]')")
        return None
    return uvloop.new_event_loop


def run_loop(coro, choice: str) -> None:
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        runner.run(coro)


def run(cfg: Config, workers: int = 1, announce=print, reload: dict | None = None) -> int:
    """Serve until SIGTERM/SIGINT; with ``workers`` > 1, that many processes share the port.
    ``reload``: {path, prepare, watch} for SIGHUP and --watch-config (reload.py)."""
    loop_factory(cfg.event_loop)           # fail early if uvloop was asked for and is missing
    if workers <= 1:
        run_loop(serve(cfg, announce=announce, reload=reload), cfg.event_loop)
        return 0
    return supervise(cfg, workers, announce, reload)


def supervise(cfg: Config, workers: int, announce, reload: dict | None = None) -> int:
    """Fork ``workers`` processes that all listen on the port (SO_REUSEPORT: the kernel
    spreads connections), forward SIGTERM/SIGINT to them, restart one that dies.

    Metrics stay whole: the caller set PROMETHEUS_MULTIPROC_DIR before prometheus_client
    was imported, so every worker writes its own file and any worker serves the sum.
    """
    from prometheus_client import multiprocess

    children: dict[int, float] = {}
    stopping = False
    quick_deaths = 0

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:                                   # the worker
            # not the supervisor's handlers (they would signal the siblings); serve() sets its own
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            code = 0
            try:
                say = announce if index == 0 else (lambda msg: None)
                run_loop(serve(cfg, reuse_port=True, reload=reload,
                               announce=lambda msg: say(f"{msg} [{workers} workers]")),
                         cfg.event_loop)
            except OSError as exc:
                log.error("worker %d cannot listen on %s:%d: %s", os.getpid(), cfg.host, cfg.port,
                          exc.strerror or exc)
                code = 3
            except BaseException:                      # noqa: BLE001 - report, then exit non-zero
                log.exception("worker %d failed", os.getpid())
                code = 1
            os._exit(code)
        children[pid] = time.monotonic()

    def stop(signum, frame):
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def hup(signum, frame):                            # every worker reloads
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hup)
    for i in range(workers):
        spawn(i)
    failed = False
    while children:
        pid, status = os.wait()
        started = children.pop(pid, None)
        if started is None:
            continue
        multiprocess.mark_process_dead(pid)
        code = os.waitstatus_to_exitcode(status)
        if stopping:
            failed |= code != 0
            continue
        log.warning("worker %d exited with %d; starting another", pid, code)
        quick_deaths = quick_deaths + 1 if time.monotonic() - started < 2 else 0
        if quick_deaths >= 3 or code == 3:
            log.error("workers keep failing at start; giving up")
            stop(signal.SIGTERM, None)
            failed = True
            continue
        spawn(len(children) + 1)
    return 1 if failed else 0


async def serve(cfg: Config, *, reuse_port: bool = False, announce=print,
                reload: dict | None = None) -> None:
    from .reload import Reloader

    app = create_app(cfg)
    reload = reload or {}
    reloader = Reloader(app, reload.get("path"), reload.get("prepare") or (lambda c: c))
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, cfg.host, cfg.port, reuse_port=reuse_port or None,
                           backlog=4096)   # 500 clients opening at once must not wait on SYN retries
        await site.start()
        loop_name = type(asyncio.get_running_loop()).__module__.split(".")[0]
        announce(f"sse-fixup: listening on http://{cfg.host}:{cfg.port} -> {cfg.upstream} "
                 f"(presets: {', '.join(cfg.presets) or 'none'}; {loop_name} loop)")
        if cfg.routes:
            for i, route in enumerate(app[ROUTER].routes):
                log.info("route %d: %s", i + 1, route.describe())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reloader.reload)
        watcher = asyncio.ensure_future(reloader.watch()) if reload.get("watch") else None
        await stop.wait()
        if watcher is not None:
            watcher.cancel()
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
