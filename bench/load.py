"""Load generator: C concurrent SSE streams against a base URL (a proxy, or the upstream itself).

Reports events/s, time to first byte p50/p99, added latency p50/p99 (receive time minus
the upstream's timestamp inside each event; both CLOCK_MONOTONIC on the same machine),
errors (non-200, exceptions, an event missing, doubled or out of order), and - with
``--pid`` - the CPU microseconds per event and RSS of that process and its children.

    python bench/load.py --url http://127.0.0.1:8090 --streams 100 --events 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time

import aiohttp

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from procstat import Usage  # noqa: E402

STAMP = re.compile(rb'"n":(\d+),"t":(\d+)')


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def one_stream(session, url, body, t_open, latencies, ttfbs, sample_every) -> tuple[int, str | None]:
    """-> (events received, error or None)."""
    expect = 0
    t0 = time.monotonic()
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
            if resp.status != 200:
                return 0, f"status {resp.status}"
            first = True
            tail = b""
            async for chunk in resp.content.iter_any():
                now = time.monotonic_ns()
                if first:
                    ttfbs.append(time.monotonic() - t0)
                    first = False
                # only complete events: a stamp split across two reads is read once, whole
                chunk = tail + chunk
                end = chunk.rfind(b"\n\n") + 2 if b"\n\n" in chunk else 0
                tail = chunk[end:]
                for m in STAMP.finditer(chunk, 0, end):
                    n = int(m.group(1))
                    if n != expect:
                        return expect, f"event {n} where {expect} was due"
                    if n % sample_every == 0:
                        latencies.append((now - int(m.group(2))) / 1e6)
                    expect += 1
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        return expect, f"{type(exc).__name__}: {exc}"
    return expect, None


async def run(base: str, endpoint: str, streams: int, events: int, interval_ms: float,
              batch: int = 16, ramp: float = 0.0, sample_every: int = 1, timeout: float = 300) -> dict:
    path = "/v1/chat/completions" if endpoint == "chat" else "/v1/responses"
    url = base.rstrip("/") + path
    payload = {"model": "bench-model", "stream": True,
               "bench": {"events": events, "interval_ms": interval_ms, "batch": batch}}
    if endpoint == "chat":
        payload["messages"] = [{"role": "user", "content": "hi"}]
    else:
        payload["input"] = "hi"
    body = json.dumps(payload).encode()
    latencies: list[float] = []
    ttfbs: list[float] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    tmo = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=tmo) as session:
        async def delayed(i):
            if ramp:
                await asyncio.sleep(ramp * i / streams)
            return await one_stream(session, url, body, None, latencies, ttfbs, sample_every)
        t0 = time.monotonic()
        results = await asyncio.gather(*(delayed(i) for i in range(streams)))
        wall = time.monotonic() - t0
    received = sum(n for n, _ in results)
    errors = [e for n, e in results if e] + \
        [f"{n} of {events} events" for n, e in results if not e and n != events]
    return {"streams": streams, "events": received, "wall_s": wall,
            "events_per_s": received / wall if wall else 0.0,
            "ttfb_p50_ms": _ms(percentile(ttfbs, 50)), "ttfb_p99_ms": _ms(percentile(ttfbs, 99)),
            "lat_p50_ms": percentile(latencies, 50), "lat_p99_ms": percentile(latencies, 99),
            "errors": len(errors), "first_error": errors[0] if errors else None}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="base URL (without /v1)")
    p.add_argument("--endpoint", choices=("chat", "responses"), default="chat")
    p.add_argument("--streams", type=int, default=100)
    p.add_argument("--events", type=int, default=200)
    p.add_argument("--interval-ms", type=float, default=0.0)
    p.add_argument("--batch", type=int, default=16, help="events per upstream write at max rate")
    p.add_argument("--ramp", type=float, default=0.0, help="spread stream starts over this many s")
    p.add_argument("--sample-every", type=int, default=1, help="latency of every k-th event")
    p.add_argument("--pid", type=int, help="measure CPU and RSS of this process (and children)")
    p.add_argument("--json", action="store_true", help="one JSON line instead of text")
    args = p.parse_args()
    usage = Usage(args.pid) if args.pid else None
    result = asyncio.run(run(args.url, args.endpoint, args.streams, args.events, args.interval_ms,
                             args.batch, args.ramp, args.sample_every))
    if usage is not None:
        cpu, rss = usage.done()
        result["proxy_cpu_s"] = cpu
        result["proxy_cpu_us_per_event"] = cpu * 1e6 / result["events"] if result["events"] else None
        result["proxy_rss_mib"] = rss / 2**20
        result["proxy_peak_rss_mib"] = usage.peak / 2**20
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>24}: {v:.3f}" if isinstance(v, float) else f"{k:>24}: {v}")


if __name__ == "__main__":
    main()
