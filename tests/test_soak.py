"""Soak: 500 concurrent streams x 200 events through the proxy; every event exactly once, in order.

Half the streams are /v1/responses, half /v1/chat/completions, all through the default
presets.  The longer soak (1,000 streams for minutes, with RSS) is bench/soak.py.
"""

import asyncio
import json

import aiohttp
from aiohttp import web

from sse_fixup.config import Config
from sse_fixup.proxy import create_app

from .helpers import parse

STREAMS = 500
EVENTS = 200
BATCH = 10          # events per upstream write: a realistic mix of split and batched reads


def chat_event(n: int) -> bytes:
    return b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":' \
           b'[{"index":0,"delta":{"content":"%d"},"finish_reason":null}],"x_n":%d}\n\n' % (n, n)


def resp_event(n: int) -> bytes:
    return b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",' \
           b'"item_id":"msg_1","output_index":0,"content_index":0,"delta":"%d","x_n":%d}\n\n' % (n, n)


async def generate(request: web.Request) -> web.StreamResponse:
    chat = request.path.endswith("/chat/completions")
    make = chat_event if chat else resp_event
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    if not chat:
        await resp.write(b'event: response.created\ndata: {"type":"response.created","response":{}}\n\n')
    for start in range(0, EVENTS, BATCH):
        await resp.write(b"".join(make(n) for n in range(start, start + BATCH)))
        await asyncio.sleep(0)
    await resp.write(b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
                     b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
                     if chat else
                     b'event: response.completed\ndata: {"type":"response.completed","response":{}}\n\n')
    await resp.write_eof()
    return resp


async def test_500_streams_every_event_once_in_order(aiohttp_server):
    upstream = web.Application()
    upstream.router.add_post("/{tail:.*}", generate)
    up = await aiohttp_server(upstream)
    proxy = await aiohttp_server(create_app(Config(upstream=str(up.make_url("")).rstrip("/"))))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(i: int):
            path = "/v1/chat/completions" if i % 2 else "/v1/responses"
            async with session.post(proxy.make_url(path), json={"model": "m", "stream": True}) as r:
                assert r.status == 200
                events = parse(await r.read())
            seen = [e["x_n"] for e in events if isinstance(e, dict) and "x_n" in e]
            assert seen == list(range(EVENTS)), (i, seen[:5], len(seen))
            assert not any(isinstance(e, dict) and ("error" in e or e.get("type") == "error")
                           for e in events)
            return len(events)

        counts = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(STREAMS))), 120)
    assert len(counts) == STREAMS and min(counts) >= EVENTS + 2
