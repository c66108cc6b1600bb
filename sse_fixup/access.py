"""The access log: one line per request, on stderr, plain (the default), JSON, or off.

    2026-12-01T22:50:01.123Z POST /v1/responses 200 model=qwen stream=yes ttfb=0.012
      ttft=0.020 dur=1.234 events=40 patched=12 rules=responses.output_index:10 fault=- bytes=5120

Never a body, never a key: the fields are the request line, the status, and what the
request's ``Tally`` and transform counted.  Written after the answer ended (for a stream:
after its last byte), so the times are the whole request's.
"""

from __future__ import annotations

import logging
import sys
import time

import orjson

log = logging.getLogger("sse_fixup.access")


def setup(mode: str) -> None:
    """Plain or JSON lines to stderr, one per request; ``off``: nothing at all."""
    log.handlers.clear()
    log.propagate = False
    if mode == "off":
        log.disabled = True
        return
    log.disabled = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def record(method: str, path: str, status: int, tally, bytes_out: int | None) -> dict:
    """The access-log fields of one request (``tally`` None for requests the proxy answered
    itself: health, metrics, rejected ones)."""
    now = time.time()
    rec = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z",
           "method": method, "path": path, "status": status}
    if tally is not None:
        ctx = tally.ctx
        rec.update(model=tally.model, stream=tally.stream,
                   ttfb=_round(tally.seconds(tally.sent_at, tally.first_byte_at)),
                   ttft=_round(tally.seconds(tally.sent_at, tally.first_token_at)),
                   duration=_round(tally.seconds(tally.started, tally.ended_at or time.monotonic())),
                   events=ctx.events if ctx else None, patched=ctx.patched if ctx else None,
                   rules=dict(ctx.applied) if ctx and ctx.applied else {}, fault=tally.fault)
        bytes_out = tally.bytes_out or bytes_out
    rec["bytes"] = bytes_out
    return rec


def write(mode: str, rec: dict) -> None:
    if mode == "off" or log.disabled:
        return
    if mode == "json":
        log.info(orjson.dumps(rec).decode())
        return
    parts = [rec["time"], rec["method"], rec["path"], str(rec["status"])]
    if "model" in rec:
        rules = ",".join(f"{k}:{v}" for k, v in rec["rules"].items()) or "-"
        parts += [f"model={rec['model'] or '-'}", f"stream={'yes' if rec['stream'] else 'no'}",
                  f"ttfb={_s(rec['ttfb'])}", f"ttft={_s(rec['ttft'])}", f"dur={_s(rec['duration'])}",
                  f"events={_s(rec['events'])}", f"patched={_s(rec['patched'])}", f"rules={rules}",
                  f"fault={rec['fault'] or '-'}"]
    parts.append(f"bytes={_s(rec['bytes'])}")
    log.info(" ".join(parts))


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _s(x) -> str:
    return "-" if x is None else str(x)
