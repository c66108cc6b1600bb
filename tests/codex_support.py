"""The Codex CLI (``@openai/codex`` from tests/clients/node) and a recording tap, for
tests/test_bridge.py.

``run_codex`` runs ``codex exec --json`` with everything it writes in a temp dir (HOME,
CODEX_HOME, the workdir), its config from tests/clients/codex/config.toml (the proxy as a
custom model provider, ``wire_api = "responses"``, sandbox read-only, approvals never),
a minimal environment and every proxy variable pointing at a closed loopback port, so that
nothing but loopback is reachable (NO_PROXY lets the provider on 127.0.0.1 through).

``Tap`` sits between the proxy and the backend and records what the backend was asked: the
proof that the tool call reached Codex and its output came back as a chat ``tool`` message.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

NODE_DIR = Path(__file__).parent / "clients" / "node"
CODEX = NODE_DIR / "node_modules" / ".bin" / "codex"
CONFIG = Path(__file__).parent / "clients" / "codex" / "config.toml"
DEAD_PROXY = "http://127.0.0.1:9"       # discard port: nothing listens


async def run_codex(base_url: str, tmp: Path, prompt: str, timeout: float = 240) -> tuple[list[dict], str]:
    """Codex's JSONL events and its stderr, for one ``codex exec`` against ``base_url``."""
    node = shutil.which("node")
    if node is None or not CODEX.exists():
        pytest.fail("Node.js and @openai/codex are needed: run the README's test command "
                    "(it runs `npm ci` in tests/clients/node)")
    home, codex_home, work = tmp / "home", tmp / "home" / ".codex", tmp / "work"
    for d in (codex_home, work):
        d.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(CONFIG.read_text().replace("{base_url}", base_url))
    env = {"PATH": f"{Path(node).parent}:/usr/bin:/bin", "HOME": str(home), "CODEX_HOME": str(codex_home),
           "SSE_FIXUP_TEST_KEY": "none", "TMPDIR": str(tmp), "NO_PROXY": "127.0.0.1,localhost",
           **{k: DEAD_PROXY for k in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY",
                                      "https_proxy", "http_proxy", "all_proxy")}}
    proc = await asyncio.create_subprocess_exec(
        str(CODEX), "exec", "--json", "--strict-config", "--skip-git-repo-check",
        "--cd", str(work), prompt, cwd=work, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"codex exec did not finish within {timeout}s") from None
    events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    return events, f"exit {proc.returncode}\n" + err.decode(errors="replace")


class Tap:
    """A pass-through to ``upstream`` that records every JSON request body it forwards."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.requests: list[tuple[str, dict]] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.forward)

    async def forward(self, request: web.Request) -> web.StreamResponse:
        data = await request.read()
        if data:
            self.requests.append((request.path, json.loads(data)))
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        async with aiohttp.ClientSession() as session:
            async with session.request(request.method, self.upstream + request.path_qs, data=data,
                                       headers=headers) as up:
                resp = web.StreamResponse(status=up.status, headers={
                    "Content-Type": up.headers.get("Content-Type", "application/json")})
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
