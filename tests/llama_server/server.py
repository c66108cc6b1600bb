"""Start a real llama-server (built by build.py) on the tiny model (model.py), on loopback."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from .build import cache_root, server_binary, source_tree
from .model import make_model

MODEL_NAME = "tiny-qwen25-toolcall-v3.gguf"   # bump the suffix when model.py changes


def model_path() -> Path:
    path = cache_root() / MODEL_NAME
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        make_model(source_tree(), tmp)
        tmp.rename(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    def __init__(self, binary: Path, model: Path, extra: tuple[str, ...] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cache_root() / f"llama-server-{self.port}.log"
        self.proc = subprocess.Popen(
            [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(self.port),
             "--jinja", "-c", "4096", "-ngl", "0", "-t", "2", "--no-webui", "-n", "256", *extra],
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout: float = 60) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.proc.returncode}; log: {self.log}\n"
                                   + self.log.read_text(errors="replace")[-2000:])
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"llama-server not healthy after {timeout}s; log: {self.log}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


REASONING_TEMPLATE = "models/templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"


def reasoning_args() -> tuple[str, ...]:
    """A chat template that opens <think>: llama-server then streams reasoning (the r_* captures)."""
    return ("--chat-template-file", str(source_tree() / REASONING_TEMPLATE))


def start(extra: tuple[str, ...] = ()) -> tuple[LlamaServer, dict]:
    """Build (or reuse) everything, start the server; returns it and the measured times."""
    times = {}
    t0 = time.monotonic()
    binary = server_binary()
    times["build_s"] = time.monotonic() - t0
    t0 = time.monotonic()
    model = model_path()
    times["model_s"] = time.monotonic() - t0
    server = LlamaServer(binary, model, extra)
    times["start_s"] = server.wait_healthy()
    return server, times


def serve_for_tests(extra: tuple[str, ...] = (), label: str = "llama"):
    """A pytest fixture's body: skip under SSE_FIXUP_SKIP_LLAMA=1, fail clearly when the
    server cannot be built or started, yield its URL, stop it afterwards."""
    import os
    import sys

    import pytest

    from .build import BuildError

    if os.environ.get("SSE_FIXUP_SKIP_LLAMA") == "1":
        pytest.skip("SSE_FIXUP_SKIP_LLAMA=1")
    try:
        server, times = start(extra)
    except (BuildError, RuntimeError) as exc:
        pytest.fail(f"could not build or start the real llama-server: {exc}")
    print(f"\n[{label}] build {times['build_s']:.1f}s, model {times['model_s']:.1f}s, "
          f"start {times['start_s']:.1f}s", file=sys.stderr)
    try:
        yield server.url
    finally:
        server.stop()
