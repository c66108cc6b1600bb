"""Support for tests/test_store.py: a real ``redis-server``, proxies as real processes, configs.

``RedisServer`` runs the Debian package's redis-server on a free loopback port in a temp
dir (installed with apt-get when missing, as ``tests/llama_server/build.py`` does for the
toolchain).  ``ProxyProcess`` is ``python -m sse_fixup serve --config FILE`` on a free port.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from sse_fixup.config import parse

from .helpers import free_port


class RedisUnavailable(RuntimeError):
    pass


def ensure_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise RedisUnavailable("the redis tests need redis-server (Debian package redis-server) "
                               "and it cannot be installed here (no apt-get, or not root)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", "redis-server"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RedisUnavailable(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-800:]}")
    found = shutil.which("redis-server")
    if not found:
        raise RedisUnavailable("apt-get installed redis-server but it is not on PATH")
    return found


class RedisServer:
    """A real redis-server on loopback, no persistence, in a directory of its own."""

    def __init__(self):
        binary = ensure_redis_server()
        self.dir = tempfile.mkdtemp(prefix="sse-fixup-redis-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = Path(self.dir) / "redis.log"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "no", "--logfile", str(self.log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RedisUnavailable(f"redis-server exited with {self.proc.returncode}: "
                                       + (self.log.read_text(errors="replace")[-800:] if self.log.exists() else ""))
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RedisUnavailable(f"redis-server not answering on port {self.port}")

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), 2) as s:
            s.sendall(b"FLUSHALL\r\n")
            s.recv(16)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def store_setting(kind: str, tmp_path: Path, redis_url: str | None = None, **limits):
    """The ``responses_store`` value of a config for one backend."""
    if kind == "memory":
        return {"memory": True, **limits} if limits else "memory"
    if kind == "sqlite":
        return {"sqlite": str(tmp_path / "responses.db"), **limits}
    return {"redis": redis_url, **limits}


def config(upstream: str, store, **keys):
    """A Config read as from a file (so that responses_store is checked as users write it)."""
    return parse(yaml.safe_dump({"upstream": upstream, "responses_store": store, **keys}))


class ProxyProcess:
    """``python -m sse_fixup serve`` with a config file, as an operator runs it."""

    def __init__(self, cfg: dict, tmp_path: Path, name: str):
        self.port = free_port()
        self.path = tmp_path / f"{name}.yaml"
        self.log = tmp_path / f"{name}.log"
        self.path.write_text(yaml.safe_dump({**cfg, "listen": {"host": "127.0.0.1", "port": self.port}}))
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    async def start(self):
        # stderr (the access log) to a file: a pipe nobody reads would fill and block it
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sse_fixup", "serve", "--config", str(self.path),
            stdout=asyncio.subprocess.PIPE, stderr=open(self.log, "wb"))
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if b"listening" not in line:
            raise RuntimeError(f"the proxy did not start: {line!r} {self.stderr()[-1500:]}")
        return self

    def stderr(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def stop(self):
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
