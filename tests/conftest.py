import itertools

import pytest

from sse_fixup.rules import base


@pytest.fixture
def fixed_clock(monkeypatch):
    """A fixed clock and predictable minted ids, so golden outputs are exact."""
    counter = itertools.count(1)
    monkeypatch.setattr(base, "now", lambda: 1795300000)
    monkeypatch.setattr(base, "token", lambda: f"{next(counter):024x}")


@pytest.fixture
async def urls(aiohttp_server):
    """The fake llama-server (replaying captures) and the proxy in front of it."""
    from sse_fixup.config import Config
    from sse_fixup.proxy import create_app

    from .captures import FakeLlama

    up = await aiohttp_server(FakeLlama().app)
    upstream = str(up.make_url("")).rstrip("/")
    proxy = await aiohttp_server(create_app(Config(upstream=upstream)))
    return {"proxy": str(proxy.make_url("/v1")), "direct": upstream + "/v1"}


# The real llama-server (tests/llama_server), one per session for each way of starting it;
# marked tests use them, SSE_FIXUP_SKIP_LLAMA=1 skips them.

@pytest.fixture(scope="session")
def llama():
    """llama-server b11434 on the tiny tool-calling model."""
    from .llama_server.server import serve_for_tests
    yield from serve_for_tests()


@pytest.fixture(scope="session")
def llama_reasoning():
    """The same, with DeepSeek-R1's chat template: it streams reasoning (thinking blocks on
    /v1/messages)."""
    from .llama_server.server import reasoning_args, serve_for_tests
    yield from serve_for_tests(reasoning_args(), "llama reasoning")


@pytest.fixture(scope="session")
def llama16k():
    """Room for Codex's first request (~6k tokens): the tiny model says its training context
    is 4096, past which llama-server caps every slot, so the metadata is overridden; one slot
    gets the whole context (-np 1)."""
    from .llama_server.server import serve_for_tests
    yield from serve_for_tests(("-c", "16384", "-np", "1", "--override-kv", "llama.context_length=int:16384"),
                               "llama 16k")
