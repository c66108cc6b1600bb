"""Fake upstreams that misbehave on purpose: the fault-injection side of the tests.

``Scripted`` answers every request with a script of steps - bytes to write, pauses,
and an ending (clean EOF, a reset, or holding the connection open) - and records
what it was sent, byte for byte.  ``SilentTCP`` is a raw socket server that reads a
request and never answers, noting the moment the proxy hangs up.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web


def sse(obj, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(obj).encode() + b"\n\n"


def resp_events(n: int = 3) -> list[bytes]:
    """A llama-server-like Responses stream prefix: created, then text deltas (no completed)."""
    out = [sse({"type": "response.created", "response": {"id": "resp_x", "status": "in_progress"}},
               "response.created")]
    for i in range(n):
        out.append(sse({"type": "response.output_text.delta", "item_id": "msg_1",
                        "delta": f"t{i}"}, "response.output_text.delta"))
    return out


def chat_events(n: int = 3) -> list[bytes]:
    return [sse({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": [{"index": 0, "delta": {"content": f"t{i}"}, "finish_reason": None}]})
            for i in range(n)]


def chat_ending_in_usage() -> list:
    """Steps for a chat stream with text and a tool call, no finish_reason on any chunk, a
    usage chunk, then EOF without [DONE]: complete, but saying so only by its usage chunk
    (issue #10: the proxy used to append an upstream_incomplete error)."""
    env = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "tiny"}
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    return [
        sse({**env, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Let me check."}}]}),
        sse({**env, "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}),
        sse({**env, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12,
                                             "prompt_tokens_details": {"cached_tokens": 4}}}),
        "eof"]


class Scripted:
    """steps: bytes (written), float (a pause in seconds), or an ending: "eof" (clean end),
    "reset" (the connection dropped mid-body), "hold" (never finish).  A dict of such
    lists picks one by the request's "model"."""

    def __init__(self, steps=(), status: int = 200, content_type: str = "text/event-stream",
                 headers_delay: float = 0.0):
        self.steps = steps if isinstance(steps, dict) else list(steps)
        self.status = status
        self.content_type = content_type
        self.headers_delay = headers_delay
        self.received: list[tuple[str, str, dict, bytes]] = []  # method, raw path, headers, body
        self.closed = asyncio.Event()          # the proxy went away mid-response
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request):
        body = await request.read()
        self.received.append((request.method, request.raw_path, dict(request.headers), body))
        if self.headers_delay:
            await asyncio.sleep(self.headers_delay)
        resp = web.StreamResponse(status=self.status, headers={"Content-Type": self.content_type})
        await resp.prepare(request)
        steps = self.steps
        if isinstance(steps, dict):
            steps = steps[json.loads(body)["model"]]
        try:
            for step in steps:
                if isinstance(step, bytes):
                    await resp.write(step)
                elif isinstance(step, (int, float)):
                    await asyncio.sleep(step)
                elif step == "reset":
                    request.transport.abort()     # no terminating chunk: a broken body
                    return resp
                elif step == "hold":
                    await asyncio.sleep(3600)
        except (ConnectionError, asyncio.CancelledError):
            self.closed.set()
            raise
        await resp.write_eof()
        return resp


class SilentTCP:
    """Accepts a connection, reads, never answers; records when the peer closes."""

    def __init__(self):
        self.connected = asyncio.Event()
        self.closed_at: float | None = None
        self.closed = asyncio.Event()
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> str:
        loop = asyncio.get_running_loop()
        outer = self

        class Proto(asyncio.Protocol):
            def connection_made(self, transport):
                outer.connected.set()

            def connection_lost(self, exc):
                outer.closed_at = loop.time()
                outer.closed.set()

        self.server = await loop.create_server(Proto, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def close(self):
        if self.server is not None:
            self.server.close()


class KeepAliveHTTP:
    """A raw HTTP/1.1 upstream that keeps connections open as llama-server's does, with
    ``Keep-Alive: timeout=N``, and on a connection it has given up on (the ``stale``
    request on it, or any request after ``idle_close`` seconds of silence) closes the
    socket without answering: the race a pooled connection loses."""

    def __init__(self, keep_alive: int = 5, stale: int | None = None, idle_close: float | None = None):
        self.keep_alive = keep_alive
        self.stale = stale
        self.idle_close = idle_close
        self.connections = 0
        self.answered = 0
        self.dropped = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.connections += 1
        loop = asyncio.get_running_loop()
        n = 0
        last = loop.time()
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                n += 1
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                idle = loop.time() - last
                if n == self.stale or (self.idle_close is not None and n > 1 and idle > self.idle_close):
                    self.dropped += 1
                    writer.transport.abort()
                    return
                stream = b'"stream": true' in body or b'"stream":true' in body
                if stream:
                    out = (b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
                           b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n'
                           b'data: [DONE]\n\n')
                    ctype = b"text/event-stream"
                else:
                    out, ctype = b'{"object":"list","data":[]}', b"application/json"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype + b"\r\nContent-Length: %d\r\n"
                             b"Keep-Alive: timeout=%d, max=100\r\n\r\n" % (len(out), self.keep_alive) + out)
                await writer.drain()
                self.answered += 1
                last = loop.time()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
