"""A fast fake OpenAI-compatible upstream for benchmarks (both endpoints, SSE).

Each request's JSON body may carry ``"bench": {"events": N, "interval_ms": D, "batch": B}``:
N events, D ms apart (0 = as fast as possible, written B at a time).  Every event holds
``"t": <CLOCK_MONOTONIC ns>`` taken when it was written, so that a client on the same
machine can measure the latency a proxy adds, and ``"n"``, its position in the stream.

Chat events are llama-server-shaped chunks of about 280 bytes; Responses events are
``response.output_text.delta`` with their ``event:`` line, between ``response.created``
and ``response.completed`` - what sse-fixup's default presets see from llama-server.

    python bench/upstream.py --port 18080
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiohttp import web

PAD = "x" * 96     # brings a chat chunk to ~280 bytes, like llama-server's with timings off

CHAT = ('data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":" tok%d"}}],'
        '"created":1795300000,"id":"chatcmpl-benchbenchbenchbench","model":"bench-model",'
        '"system_fingerprint":"b11434-bench","object":"chat.completion.chunk","n":%d,"t":%d,'
        '"pad":"' + PAD + '"}\n\n')
CHAT_END = ('data: {"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"created":1795300000,'
            '"id":"chatcmpl-benchbenchbenchbench","model":"bench-model","object":"chat.completion.chunk"}'
            '\n\ndata: [DONE]\n\n').encode()
RESP_START = ('event: response.created\ndata: {"type":"response.created","response":{"id":"resp_bench",'
              '"object":"response","status":"in_progress","output":[]}}\n\n'
              'event: response.output_item.added\ndata: {"type":"response.output_item.added",'
              '"item":{"type":"message","id":"msg_bench","role":"assistant","status":"in_progress",'
              '"content":[]}}\n\n'
              'event: response.content_part.added\ndata: {"type":"response.content_part.added",'
              '"item_id":"msg_bench","part":{"type":"output_text","text":""}}\n\n').encode()
RESP = ('event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
        '"item_id":"msg_bench","delta":" tok%d","n":%d,"t":%d,"pad":"' + PAD + '"}\n\n')
RESP_END = ('event: response.output_item.done\ndata: {"type":"response.output_item.done","item":'
            '{"type":"message","id":"msg_bench","role":"assistant","status":"completed","content":'
            '[{"type":"output_text","text":"...","annotations":[]}]}}\n\n'
            'event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_bench",'
            '"object":"response","status":"completed","output":[],"usage":{"input_tokens":1,'
            '"output_tokens":1,"total_tokens":2}}}\n\n').encode()


async def stream(request: web.Request) -> web.StreamResponse:
    try:
        body = json.loads(await request.read())
    except ValueError:
        body = {}
    spec = body.get("bench") or {}
    events = int(spec.get("events", 200))
    interval = float(spec.get("interval_ms", 0)) / 1000
    batch = max(1, int(spec.get("batch", 16)))
    chat = request.path.endswith("/chat/completions")
    template = CHAT if chat else RESP
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    clock = time.monotonic_ns
    if not chat:
        await resp.write(RESP_START)
    n = 0
    if interval:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while n < events:
            await resp.write((template % (n, n, clock())).encode())
            n += 1
            # a fixed schedule, so a slow write does not stretch the stream
            delay = start + n * interval - loop.time()
            await asyncio.sleep(max(0.0, delay))
    else:
        while n < events:
            k = min(batch, events - n)
            await resp.write("".join(template % (i, i, clock()) for i in range(n, n + k)).encode())
            n += k
    await resp.write(CHAT_END if chat else RESP_END)
    await resp.write_eof()
    return resp


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", stream)
    app.router.add_post("/v1/responses", stream)
    app.router.add_get("/health", lambda r: web.json_response({"status": "ok"}))
    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=18080)
    args = p.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port, print=None, access_log=None,
                backlog=4096)


if __name__ == "__main__":
    main()
