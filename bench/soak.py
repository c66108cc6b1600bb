"""Soak: keep C streams open through sse-fixup for a while; every event once, in order; RSS over time.

Starts the bench upstream and ``sse-fixup`` (default presets) on loopback, then keeps
``--streams`` streams in flight for ``--minutes``: each worker opens a stream (chat and
Responses alternately) of ``--events`` events ``--interval-ms`` apart, checks that every
event arrived exactly once and in order, and opens the next.  Prints the proxy's RSS at
start (idle), during the run and at the end (idle again), and the totals.

    python bench/soak.py --streams 1000 --minutes 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from load import one_stream  # noqa: E402
from procstat import cpu_seconds, rss_bytes  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port} after {timeout}s")


async def soak(args, proxy_pid: int, base: str) -> dict:
    totals = {"streams": 0, "events": 0, "lost": 0, "errors": 0, "first_error": None}
    samples: list[tuple[float, float]] = []
    stop_at = time.monotonic() + args.minutes * 60
    bodies = {}
    for ep in ("chat", "responses"):
        payload = {"model": "soak", "stream": True,
                   "bench": {"events": args.events, "interval_ms": args.interval_ms}}
        payload["messages" if ep == "chat" else "input"] = \
            [{"role": "user", "content": "hi"}] if ep == "chat" else "hi"
        bodies[ep] = json.dumps(payload).encode()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=600)) as session:
        async def worker(i: int):
            await asyncio.sleep(i * args.interval_ms / 1000 / args.streams * 10)  # spread starts
            k = i
            while time.monotonic() < stop_at:
                ep = "chat" if k % 2 else "responses"
                k += 1
                path = "/v1/chat/completions" if ep == "chat" else "/v1/responses"
                got, err = await one_stream(session, base + path, bodies[ep], None, [], [], 10**9)
                totals["streams"] += 1
                totals["events"] += got
                if err or got != args.events:
                    totals["errors"] += 1
                    totals["lost"] += args.events - got
                    totals["first_error"] = totals["first_error"] or err or f"{got} events"

        async def sampler():
            t0 = time.monotonic()
            while time.monotonic() < stop_at:
                samples.append((time.monotonic() - t0, rss_bytes([proxy_pid]) / 2**20))
                await asyncio.sleep(args.sample_s)

        cpu0 = cpu_seconds([proxy_pid])
        await asyncio.gather(sampler(), *(worker(i) for i in range(args.streams)))
        totals["proxy_cpu_s"] = cpu_seconds([proxy_pid]) - cpu0
    totals["samples"] = samples
    return totals


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--events", type=int, default=100)
    p.add_argument("--interval-ms", type=float, default=100)
    p.add_argument("--sample-s", type=float, default=10)
    p.add_argument("--out", help="write the result as JSON here")
    args = p.parse_args()
    up_port, px_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    upstream = subprocess.Popen([sys.executable, str(HERE / "upstream.py"), "--port", str(up_port)],
                                env=env)
    proxy = subprocess.Popen([sys.executable, "-m", "sse_fixup", "--upstream",
                              f"http://127.0.0.1:{up_port}", "--port", str(px_port),
                              "--log-level", "warning"], env=env)
    try:
        wait_port(up_port)
        wait_port(px_port)
        time.sleep(0.5)
        rss_start = rss_bytes([proxy.pid]) / 2**20
        t0 = time.monotonic()
        result = asyncio.run(soak(args, proxy.pid, f"http://127.0.0.1:{px_port}"))
        wall = time.monotonic() - t0
        time.sleep(2)
        rss_idle_after = rss_bytes([proxy.pid]) / 2**20
    finally:
        for proc in (proxy, upstream):
            proc.terminate()
        for proc in (proxy, upstream):
            proc.wait(30)
    samples = result.pop("samples")
    mid = samples[len(samples) // 2][1] if samples else None
    result.update({"minutes": wall / 60, "concurrent_streams": args.streams,
                   "rss_start_idle_mib": rss_start,
                   "rss_first_sample_mib": samples[0][1] if samples else None,
                   "rss_mid_mib": mid, "rss_end_mib": samples[-1][1] if samples else None,
                   "rss_max_mib": max(s[1] for s in samples) if samples else None,
                   "rss_idle_after_mib": rss_idle_after,
                   "proxy_exit_code": proxy.returncode,
                   "cpu_us_per_event": result["proxy_cpu_s"] * 1e6 / max(1, result["events"])})
    print(f"soak: {result['streams']} streams ({args.streams} at a time), {result['events']} events, "
          f"lost {result['lost']}, errors {result['errors']}, {result['minutes']:.1f} min")
    print("RSS MiB over time: " + ", ".join(f"{t:.0f}s={r:.1f}" for t, r in samples))
    for key, value in result.items():
        print(f"  {key}: {value:.2f}" if isinstance(value, float) else f"  {key}: {value}")
    if args.out:
        Path(args.out).write_text(json.dumps({**result, "samples": samples}, indent=1))


if __name__ == "__main__":
    main()
