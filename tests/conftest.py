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
