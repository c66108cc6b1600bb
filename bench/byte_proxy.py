"""The byte-copy reference: the least an aiohttp reverse proxy can do for an SSE stream.

Forwards the request, then copies each upstream read to the client as it comes.  No
parsing, no rules: the floor sse-fixup's pass-through path is compared against.

    python bench/byte_proxy.py --port 18091 --upstream http://127.0.0.1:18080
"""

from __future__ import annotations

import argparse

import aiohttp
from aiohttp import web


def make_app(upstream: str) -> web.Application:
    app = web.Application()

    async def on_startup(app):
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                               auto_decompress=False)

    async def on_cleanup(app):
        await app["session"].close()

    async def proxy(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with app["session"].request(request.method, upstream + request.rel_url.raw_path,
                                          data=body, headers={"Content-Type": "application/json"}) as up:
            resp = web.StreamResponse(status=up.status,
                                      headers={"Content-Type": up.headers.get("Content-Type", "")})
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=18091)
    p.add_argument("--upstream", default="http://127.0.0.1:18080")
    args = p.parse_args()
    web.run_app(make_app(args.upstream.rstrip("/")), host="127.0.0.1", port=args.port,
                print=None, access_log=None, handler_cancellation=True, backlog=4096)


if __name__ == "__main__":
    main()
