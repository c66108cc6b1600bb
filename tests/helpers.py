"""Helpers shared by the test modules (no test module imports another)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import socket
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
NODE_DIR = Path(__file__).parent / "clients" / "node"

RESP = {"model": "m", "input": "hi", "stream": True}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}

TOOL_RESP = {"type": "function", "name": "get_weather", "description": "Get the weather",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}
TOOL_CHAT = {"type": "function", "function": {k: v for k, v in TOOL_RESP.items() if k != "type"}}

SDKS = ["current", "legacy"]
PROVIDERS = ["responses", "chat", "compatible"]


def free_port() -> int:
    """A loopback port free right now (call it where the port is used, not at collection)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse(body: bytes) -> list:
    """Every data: payload in order (JSON decoded where it is JSON)."""
    out = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                data = line[6:]
                try:
                    out.append(json.loads(data))
                except ValueError:
                    out.append(data.decode("utf-8", "replace"))
    return out


@contextlib.contextmanager
def fixed_ids():
    """A fixed clock and minted ids counted from 1 again, so that two runs of one stream
    can be compared byte for byte (usable inside hypothesis tests, unlike a fixture)."""
    from sse_fixup.rules import base
    counter = itertools.count(1)
    saved = base.now, base.token
    base.now = lambda: 1795300000
    base.token = lambda: f"{next(counter):024x}"
    try:
        yield
    finally:
        base.now, base.token = saved


def transform(chunks, endpoint: str, request: dict | None = None, *, cfg=None, mode: str = "stream",
              parse_all: bool = False, fault=None) -> bytes:
    """What the proxy sends for an upstream body arriving in ``chunks``."""
    from sse_fixup.config import Config
    from sse_fixup.routes import Router
    from sse_fixup.rules.base import RequestInfo

    route = Router(cfg or Config(), parse_all=parse_all).route("/v1/x")
    t = route.open(RequestInfo(endpoint, "/v1/x", request), mode)
    return b"".join(t.feed(c) for c in chunks) + t.close(fault)


async def start(aiohttp_server, aiohttp_client, upstream, **cfg):
    """The proxy (a test client) in front of ``upstream`` (a fake with an ``app``)."""
    from sse_fixup.config import Config
    from sse_fixup.proxy import create_app

    server = await aiohttp_server(upstream.app)
    base = str(server.make_url("")).rstrip("/")
    return await aiohttp_client(create_app(Config(upstream=base, **cfg)))


async def metric(client, name: str) -> str:
    text = await (await client.get("/sse-fixup/metrics")).text()
    return "\n".join(line for line in text.splitlines() if line.startswith(name))


async def run_sdk(base_url: str, **spec) -> dict:
    """The real Vercel AI SDK (tests/clients/node/run.mjs) against ``base_url``."""
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "ai").exists():
        pytest.fail("Node.js and the AI SDK are needed: run the README's test command "
                    "(it runs `npm ci` in tests/clients/node)")
    proc = await asyncio.create_subprocess_exec(
        node, str(NODE_DIR / "run.mjs"), json.dumps({"baseURL": base_url, **spec}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=NODE_DIR)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])
