"""Re-capture byte-exact streams from a running backend, to refresh tests/fixtures.

    python -m tests.llama_server.record --url http://127.0.0.1:8080 --out DIR [NAME ...]

Replays every ``*.request.http`` of tests/fixtures/llama-server-b11434 (or the NAMEs
given) against ``--url`` and writes, per case, the same files the fixtures hold:
``.request.http``, ``.headers.txt`` (status line + headers), ``.body`` (de-chunked,
byte-exact) and ``.chunks.jsonl`` (one line per read: t, len, data).  Compare the new
captures with the golden tests before replacing the old ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import aiohttp

FIXTURES = Path(__file__).parents[1] / "fixtures" / "llama-server-b11434"


def parse_request(raw: bytes) -> tuple[str, str, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    method, path, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
    return method, path, body


async def record(session: aiohttp.ClientSession, url: str, src: Path, out: Path) -> str:
    raw = src.read_bytes()
    method, path, body = parse_request(raw)
    name = src.name[: -len(".request.http")]
    t0 = time.monotonic()
    chunks = []
    async with session.request(method, url + path, data=body or None,
                               headers={"Content-Type": "application/json"}) as resp:
        head = [f"HTTP/1.1 {resp.status} {resp.reason}"] + [
            f"{k.decode()}: {v.decode()}" for k, v in resp.raw_headers]
        async for chunk in resp.content.iter_any():
            chunks.append((round(time.monotonic() - t0, 4), chunk))
    (out / f"{name}.request.http").write_bytes(raw)
    (out / f"{name}.headers.txt").write_text("\n".join(head) + "\n")
    (out / f"{name}.body").write_bytes(b"".join(c for _, c in chunks))
    with open(out / f"{name}.chunks.jsonl", "w") as fh:
        for t, c in chunks:
            fh.write(json.dumps({"t": t, "len": len(c), "data": c.decode("utf-8", "replace")}) + "\n")
    return f"{name}: {head[0]}, {sum(len(c) for _, c in chunks)} bytes in {len(chunks)} reads"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="backend base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--out", required=True, type=Path, help="directory for the new captures")
    ap.add_argument("names", nargs="*", help="case names (default: every request in the fixtures)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    srcs = sorted(FIXTURES.glob("*.request.http"))
    if args.names:
        srcs = [s for s in srcs if s.name[: -len(".request.http")] in args.names]
    # the original captures used one connection per request (Connection: close)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        for src in srcs:
            print(await record(session, args.url.rstrip("/"), src, args.out))


if __name__ == "__main__":
    asyncio.run(main())
