"""Hot reload: on SIGHUP, or when the file changes (``--watch-config``), the config is read
again and, when valid, takes over at once, in one step of the event loop.

Streams in flight keep the transform (and so the rule chain) they started with: it was
built per response from the old routes.  A new config that does not load is rejected with
the same ``file:line`` error as at start-up; the running one stays (logged, and counted
in ``sse_fixup_config_reloads_total{result="rejected"}``).  Keys that only take effect at
start (where to listen, how many workers, the event loop, whether /metrics is served, the
connect timeout) are kept, and the log says a restart is needed for them.
"""

from __future__ import annotations

import asyncio
import logging
import os

from aiohttp import web

from . import access
from .config import Config, ConfigError, load

log = logging.getLogger("sse_fixup.reload")

RESTART_ONLY = ("listen", "workers", "event_loop", "metrics")
WATCH_INTERVAL = 1.0


class Reloader:
    def __init__(self, app: web.Application, path: str | None, prepare=lambda cfg: cfg):
        self.app = app
        self.path = path
        self.prepare = prepare        # the command line's overrides, applied again each time
        self._stamp = self._stat()

    def reload(self) -> bool:
        """Read the file again; True when the new config took over."""
        from .proxy import CONFIG, METRICS, ROUTER, WATCH
        from .routes import Router

        app = self.app
        metrics = app[METRICS]
        if self.path is None:
            log.warning("reload asked, but the proxy runs without --config: nothing to read")
            return False
        try:
            new = self.prepare(load(self.path))
            router = Router(new)
        except ConfigError as exc:
            metrics.config_reloads.labels("rejected").inc()
            log.error("config reload rejected, the running config stays: %s", exc)
            return False
        cfg: Config = app[CONFIG]
        kept = [k for k in RESTART_ONLY if getattr(new, k) != getattr(cfg, k)]
        if new.timeouts.connect != cfg.timeouts.connect:
            kept.append("timeouts.connect")
            new.timeouts.connect = cfg.timeouts.connect
        for key in Config.fields:
            if key not in RESTART_ONLY:
                setattr(cfg, key, getattr(new, key))
        cfg.source = new.source
        app[ROUTER].replace(router)
        app[WATCH].configure(cfg)
        metrics.max_models = cfg.metrics_max_models
        access.setup(cfg.access_log)
        metrics.config_reloads.labels("ok").inc()
        log.info("config reloaded from %s: %d route(s)%s", self.path, len(router.routes),
                 f"; {', '.join(kept)} changed but need a restart" if kept else "")
        return True

    def _stat(self):
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    async def watch(self) -> None:
        """``--watch-config``: poll the file's stamp (no inotify dependency; a second is
        fast enough for a human editing a file) and reload when it changes."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            stamp = self._stat()
            if stamp is not None and stamp != self._stamp:
                self._stamp = stamp
                self.reload()
