"""--workers N: N processes on one port (SO_REUSEPORT), metrics summed over all of them."""

import asyncio
import re
import signal
import sys

import aiohttp

from .helpers import free_port
from .upstreams import Scripted, chat_events


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(x) for x in fh.read().split()]


async def test_two_workers_share_the_port_and_the_metrics(aiohttp_server):
    up = Scripted([*chat_events(2), b"data: [DONE]\n\n"])
    server = await aiohttp_server(up.app)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sse_fixup", "--upstream", str(server.make_url("")).rstrip("/"),
        "--port", str(port), "--workers", "2", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert b"[2 workers]" in line
        await asyncio.sleep(0.5)
        workers = children(proc.pid)
        assert len(workers) == 2
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            async def call():
                async with s.post(base + "/v1/chat/completions", json={"model": "m", "stream": True}) as r:
                    assert r.status == 200
                    return await r.read()
            bodies = await asyncio.gather(*(call() for _ in range(40)))
            assert all(b.endswith(b"data: [DONE]\n\n") for b in bodies)
            totals = set()
            for _ in range(6):                     # whichever worker answers, the same sum
                text = await (await s.get(base + "/sse-fixup/metrics")).text()
                m = re.search(r'sse_fixup_requests_total\{endpoint="chat",kind="stream",status="200"\} (\S+)', text)
                totals.add(float(m.group(1)))
            assert totals == {40.0}
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
