"""Microbenchmark: the codec and the rule chain alone, events per second on one core.

Streams: every llama-server capture in tests/fixtures (replayed with its recorded write
boundaries) and the bench upstream's chat and Responses streams (16 events per read).
For each: the decoder alone; the chain with no rules (the pass-through floor - it takes
the byte-copy path, so it can cost less than decoding); and the default presets - the
per-event cost the proxy adds before any I/O.

    python bench/micro.py [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sse_fixup.routes import Router  # noqa: E402
from sse_fixup.config import Config  # noqa: E402
from sse_fixup.rules.base import RequestInfo  # noqa: E402
from sse_fixup.sse import Decoder  # noqa: E402


def bench_streams() -> dict[str, tuple[str, list[bytes], dict | None]]:
    import upstream as up
    out = {}
    chat = [(up.CHAT % (i, i, 1000 + i)).encode() for i in range(256)] + [up.CHAT_END]
    out["bench chat x256"] = ("chat", [b"".join(chat[i:i + 16]) for i in range(0, len(chat), 16)], None)
    resp = [up.RESP_START] + [(up.RESP % (i, i, 1000 + i)).encode() for i in range(256)] + [up.RESP_END]
    out["bench responses x256"] = ("responses", [b"".join(resp[i:i + 16])
                                                 for i in range(0, len(resp), 16)], None)
    sys.path.insert(0, str(ROOT))
    from tests.captures import load, sse_names
    for name in sse_names():
        cap = load(name)
        out[f"capture {name}"] = (cap.endpoint, cap.chunks, cap.request)
    return out


def measure(fn, seconds: float) -> tuple[float, int]:
    """-> (seconds per call, calls)."""
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return elapsed / n, n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=0.5, help="per measurement")
    p.add_argument("-k", default="", help="only streams whose name contains this")
    args = p.parse_args()
    full = Router(Config()).route("/v1/x")
    empty = Router(Config(presets=[])).route("/v1/x")
    print(f"{'stream':<52} {'events':>6} {'decode':>9} {'no rules':>9} {'default':>9}   µs/event")
    totals = [0.0, 0.0, 0.0, 0]
    for name, (endpoint, chunks, request) in bench_streams().items():
        if args.k not in name:
            continue
        info = RequestInfo(endpoint, "/v1/x", request)
        n_events = sum(1 for c in chunks for _ in Decoder().feed(c)) or 1
        n_events = len([e for d in [Decoder()] for c in chunks for e in d.feed(c)] + Decoder().close())

        def decode():
            d = Decoder()
            for c in chunks:
                d.feed(c)
            d.close()

        def run(route):
            def go():
                t = route.open(info, "stream")
                for c in chunks:
                    t.feed(c)
                t.close()
            return go

        row = [measure(decode, args.seconds)[0], measure(run(empty), args.seconds)[0],
               measure(run(full), args.seconds)[0]]
        per = [x * 1e6 / n_events for x in row]
        for i in range(3):
            totals[i] += row[i]
        totals[3] += n_events
        print(f"{name[:52]:<52} {n_events:>6} {per[0]:>9.2f} {per[1]:>9.2f} {per[2]:>9.2f}")
    if totals[3]:
        print(f"{'all (weighted)':<52} {totals[3]:>6} " +
              " ".join(f"{x * 1e6 / totals[3]:>9.2f}" for x in totals[:3]))
        print(f"events/s per core, default presets: {totals[3] / totals[2]:,.0f}")


if __name__ == "__main__":
    main()
