"""The llama-server captures in tests/fixtures, and a fake upstream that replays them.

The fake upstream is the only mock in the end-to-end tests: it answers like the real
llama-server b11434 did, byte for byte and with the same write boundaries.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

FIXTURES = Path(__file__).parent / "fixtures" / "llama-server-b11434"


@dataclass
class Capture:
    name: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    chunks: list[bytes]          # the server's write boundaries
    request: dict | None

    @property
    def endpoint(self) -> str:
        return "responses" if "_resp_" in self.name or self.name.startswith(("c", "d")) else "chat"

    @property
    def is_sse(self) -> bool:
        return any(k.lower() == "content-type" and "event-stream" in v for k, v in self.headers)


def load(name: str) -> Capture:
    head = (FIXTURES / f"{name}.headers.txt").read_text().splitlines()
    status = int(head[0].split()[1])
    headers = [tuple(x.strip() for x in line.split(":", 1)) for line in head[1:] if ":" in line]
    body = (FIXTURES / f"{name}.body").read_bytes()
    chunks: list[bytes] = []
    cpath = FIXTURES / f"{name}.chunks.jsonl"
    if cpath.exists():
        pos = 0
        for line in cpath.read_text().splitlines():
            n = json.loads(line)["len"]
            chunks.append(body[pos:pos + n])
            pos += n
        if pos != len(body):
            chunks = []
    if not chunks:
        chunks = [body]
    request = None
    rpath = FIXTURES / f"{name}.request.http"
    if rpath.exists():
        raw = rpath.read_bytes().split(b"\r\n\r\n", 1)[-1]
        try:
            request = json.loads(raw) if raw.strip() else None
        except ValueError:
            request = None
    return Capture(name, status, headers, body, chunks, request)


def all_names() -> list[str]:
    return sorted(p.name[:-5] for p in FIXTURES.glob("*.body"))


def sse_names() -> list[str]:
    return [n for n in all_names() if load(n).is_sse]


def pick(path: str, body: dict) -> str:
    """Which capture llama-server would have produced for this request."""
    responses = path.rstrip("/").endswith("/responses")
    stream = bool(body.get("stream"))
    tools = bool(body.get("tools"))
    items = body.get("input") if responses else body.get("messages")
    roundtrip = isinstance(items, list) and any(
        isinstance(m, dict) and (m.get("type") == "function_call_output" or m.get("role") == "tool")
        for m in items)
    if responses:
        if roundtrip:
            return "d3_resp_stream_tool_result_roundtrip" if stream else "e_c_resp_text"
        if stream:
            return "d_resp_stream_tool_required" if tools else "c_resp_stream_text"
        return "e_d_resp_tool_required" if tools else "e_c_resp_text"
    if roundtrip:
        return "b5_chat_stream_tool_roundtrip" if stream else "e_a_chat_text"
    if stream:
        usage = (body.get("stream_options") or {}).get("include_usage")
        if tools:
            return "f_chat_stream_tool_required_include_usage" if usage else "b_chat_stream_tool_required"
        return "f_chat_stream_include_usage" if usage else "a_chat_stream_text"
    return "e_b_chat_tool_required" if tools else "e_a_chat_text"


class FakeLlama:
    """An aiohttp app that replays captures; records requests and client disconnects."""

    def __init__(self, delay: float = 0.0, streams: bool | None = None, models: list[str] | None = None):
        self.delay = delay
        # streams: None answers as asked; True always streams, False always answers one
        # JSON body (a backend that ignores "stream")
        self.streams = streams
        self.model_ids = models       # GET /v1/models lists these instead of the capture
        self.requests: list[tuple[str, str, dict, dict]] = []   # method, path, headers, body
        self.disconnected = asyncio.Event()
        self.hold = False             # keep the stream open after the capture (disconnect tests)
        self.app = web.Application()
        self.app.router.add_get("/health", self.health)
        self.app.router.add_get("/v1/models", self.models)
        self.app.router.add_route("POST", "/{tail:.*}", self.post)

    async def health(self, request):
        return web.json_response({"status": "ok"})

    async def models(self, request):
        if self.model_ids is not None:
            return web.json_response({"object": "list", "data": [
                {"id": m, "object": "model", "owned_by": "llamacpp", "created": 1} for m in self.model_ids]})
        cap = load("g_get_models")
        return web.Response(body=cap.body, content_type="application/json")

    async def post(self, request: web.Request):
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return web.json_response(
                {"error": {"code": 400, "message": "[json.exception.parse_error.101] parse error",
                           "type": "invalid_request_error"}}, status=400)
        path = request.path
        self.requests.append((request.method, path, dict(request.headers), body))
        if not (path.endswith("/responses") or path.endswith("/chat/completions")):
            return web.json_response({"error": {"message": "File Not Found",
                                                "type": "not_found_error", "code": 404}}, status=404)
        asked = body if self.streams is None else {**body, "stream": self.streams}
        cap = load(body.get("x_capture") or pick(path, asked))
        if not cap.is_sse:
            ctype = dict(cap.headers).get("Content-Type", "application/json")
            return web.Response(status=cap.status, body=cap.body, headers={"Content-Type": ctype})
        resp = web.StreamResponse(status=cap.status, headers={
            "Content-Type": "text/event-stream", "X-Accel-Buffering": "no", "Server": "llama.cpp"})
        await resp.prepare(request)
        try:
            for chunk in cap.chunks:
                await resp.write(chunk)
                if self.delay:
                    await asyncio.sleep(self.delay)
            while self.hold:
                await asyncio.sleep(0.01)
                await resp.write(b": keep waiting\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnected.set()
            raise
        await resp.write_eof()
        return resp
