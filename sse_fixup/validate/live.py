"""Live conformance: the validator on a sample of real streams, after the rule chain.

``LiveCheck`` is a stage that sits just before the writer of a sampled response (the
others never get one, so they pay nothing).  It looks at each event as it passes -
the very list goes on unchanged, nothing is held back - and at the end hands its
findings to ``report``.  ``first_of_kind`` is what ``report`` logs with: the first finding
of each kind (defect id) per route in an hour, with the event it was found on.
"""

from __future__ import annotations

import logging
import time

from . import Finding, StreamValidator, check_body

log = logging.getLogger("sse_fixup.validate")


class LiveCheck:
    """``push(events) -> events`` (the same list), ``end() -> []``; ``report(findings)``
    is called once, at the end, with what the validator found in what the client got."""

    __slots__ = ("validator", "ctx", "report", "mode", "endpoint", "samples", "reported")

    def __init__(self, endpoint: str, ctx, report, mode: str = "stream"):
        self.endpoint = endpoint
        self.ctx = ctx
        self.report = report
        self.mode = mode
        self.validator = StreamValidator(endpoint) if mode == "stream" else None
        self.samples: dict[int, bytes] = {}   # position -> the event's bytes, for the log line
        self.reported = False

    def push(self, events):
        if self.validator is None:
            for ev in events:
                findings = check_body(ev.json if ev.json is not None else (ev.data or b""), self.endpoint)
                self._report(findings, {0: _shown(ev)})
            return events
        v = self.validator
        for ev in events:
            before = len(v.findings)
            pos = v.position
            try:
                v.add(ev)
            except Exception:           # noqa: BLE001 - a check never breaks a stream
                log.exception("live conformance check failed on %s; this stream is no longer checked",
                              self.endpoint)
                self.validator = None
                self.reported = True
                return events
            if len(v.findings) > before:
                self.samples[pos] = _shown(ev)
        return events

    def end(self):
        if self.validator is not None:
            findings = self.validator.end()
            for f in findings:
                if f.position is not None and f.position not in self.samples:
                    self.samples[f.position] = b""     # found by the state machine on a clean event
            self._report(findings, self.samples)
        return []

    def _report(self, findings, samples):
        if self.reported:
            return
        self.reported = True
        if findings:
            # the event each finding is about travels with it, for the log line
            self.report([(f, samples.get(f.position, b"")) for f in findings])


def _shown(ev) -> bytes:
    data = ev.data
    if data is None and ev.json is not None:
        import orjson
        data = orjson.dumps(ev.json)
    data = data or b""
    return data if len(data) <= 500 else data[:500] + b"..."


class FirstOfKind:
    """The first finding of each (kind, route) per ``period`` seconds is logged."""

    def __init__(self, period: float = 3600.0, clock=time.monotonic, logger: logging.Logger = log):
        self.period = period
        self.clock = clock
        self.log = logger
        self.last: dict[tuple[str, str], float] = {}

    def __call__(self, pairs, route: str) -> list[Finding]:
        """``pairs``: what ``LiveCheck`` reports, (finding, event bytes).  Logs and
        returns the findings that were the first of their kind this period."""
        now = self.clock()
        logged = []
        for finding, data in pairs:
            key = (finding.kind, route)
            last = self.last.get(key)
            if last is not None and now - last < self.period:
                continue
            self.last[key] = now
            logged.append(finding)
            self.log.warning("conformance: route %s: %s (first of its kind this hour) event: %s",
                             route, finding.describe(), data.decode("utf-8", "replace") or "-")
        if len(self.last) > 10_000:          # many routes x kinds: forget the oldest
            for key, _ in sorted(self.last.items(), key=lambda kv: kv[1])[:5_000]:
                del self.last[key]
        return logged


first_of_kind = FirstOfKind()
"""The process-wide logger of ``LiveCheck`` findings: ``first_of_kind(pairs, route)``."""
