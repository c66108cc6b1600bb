"""SIGTERM: stop accepting, let streams finish within the grace period, end the rest, exit 0."""

import asyncio
import json
import signal
import sys

import aiohttp
import pytest

from .helpers import free_port, parse
from .upstreams import Scripted, resp_events, sse

COMPLETED = sse({"type": "response.completed", "response": {"id": "resp_x", "status": "completed"}},
                "response.completed")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_sigterm_drains_then_ends_open_streams_and_exits_0(aiohttp_server, tmp_path, loop):
    short = [resp_events(0)[0]] + [x for ev in resp_events(5)[1:] for x in (0.1, ev)] + [COMPLETED, "eof"]
    up = Scripted({"short": short, "long": [*resp_events(1), "hold"]})
    upserver = await aiohttp_server(up.app)
    port = free_port()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"upstream: {str(upserver.make_url('')).rstrip('/')}\n"
                   f"listen: {{port: {port}}}\ntimeouts: {{shutdown_grace: 1.5}}\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sse_fixup", "--config", str(cfg), "--loop", loop,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        if not line:                      # it exited: say why
            err = await asyncio.wait_for(proc.stderr.read(), 5)
            pytest.fail(f"sse-fixup exited with {await proc.wait()} before listening: {err.decode()}")
        assert f"listening on http://127.0.0.1:{port}".encode() in line
        assert f"{loop} loop".encode() in line
        url = f"http://127.0.0.1:{port}/v1/responses"
        async with aiohttp.ClientSession() as session:
            async def call(model):
                async with session.post(url, json={"model": model, "input": "x", "stream": True}) as r:
                    return parse(await r.read())
            short_task = asyncio.ensure_future(call("short"))
            long_task = asyncio.ensure_future(call("long"))
            while len(up.received) < 2:
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            try:                                     # no longer accepting
                await asyncio.open_connection("127.0.0.1", port)
                raise AssertionError("still accepting after SIGTERM")
            except ConnectionRefusedError:
                pass
            short_events = await asyncio.wait_for(short_task, 5)
            assert short_events[-1]["type"] == "response.completed"
            assert all(e["type"] != "error" for e in short_events)
            long_events = await asyncio.wait_for(long_task, 5)
            assert loop.time() - t0 >= 1.4            # the grace period was given
            assert [e["type"] for e in long_events[-2:]] == ["error", "response.failed"]
            assert long_events[-2]["code"] == "proxy_shutdown"
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert loop.time() - t0 < 6
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = (await proc.stderr.read()).decode()
    assert "Traceback" not in err
