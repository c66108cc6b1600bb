"""Security defaults: loopback by default, inbound keys, upstream fixed by config, quiet logs."""

import asyncio
import logging

import pytest

from sse_fixup.config import Auth, Config, ConfigError, parse
from sse_fixup.proxy import create_app

from .upstreams import Scripted, chat_events

CHAT = {"model": "m", "messages": [{"role": "user", "content": "SECRET-PROMPT"}], "stream": True}


@pytest.fixture
async def up(aiohttp_server):
    s = Scripted([*chat_events(1), b"data: [DONE]\n\n"])
    s.server = await aiohttp_server(s.app)
    s.url = str(s.server.make_url("")).rstrip("/")
    return s


def test_listens_on_loopback_by_default():
    assert Config().host == "127.0.0.1"
    assert parse("upstream: http://127.0.0.1:8080\n").host == "127.0.0.1"


async def test_api_keys_reject_missing_and_wrong_keys(aiohttp_client, up):
    client = await aiohttp_client(create_app(Config(upstream=up.url, auth=Auth(api_keys=["k1", "k2"]))))
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic k1"}):
        resp = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == "Bearer"
        err = (await resp.json())["error"]
        assert (err["type"], err["code"], err["param"]) == ("invalid_request_error", "invalid_api_key", None)
    assert up.received == []
    assert (await client.get("/sse-fixup/metrics")).status == 401
    assert (await client.get("/healthz")).status == 200          # probes need no key


async def test_valid_key_passes_and_is_not_forwarded(aiohttp_client, up):
    client = await aiohttp_client(create_app(Config(upstream=up.url, auth=Auth(api_keys=["k1", "k2"]))))
    resp = await client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer k2"})
    assert resp.status == 200
    await resp.read()
    assert "Authorization" not in up.received[-1][2]


async def test_key_forwarded_when_configured_and_upstream_key_injected(aiohttp_client, up):
    client = await aiohttp_client(create_app(Config(
        upstream=up.url, auth=Auth(api_keys=["k1"], forward_key=True))))
    await (await client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer k1"})).read()
    assert up.received[-1][2]["Authorization"] == "Bearer k1"
    client = await aiohttp_client(create_app(Config(
        upstream=up.url, auth=Auth(api_keys=["k1"], upstream_key="backend-key"))))
    await (await client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer k1"})).read()
    assert up.received[-1][2]["Authorization"] == "Bearer backend-key"


async def test_without_auth_the_clients_authorization_reaches_the_backend(aiohttp_client, up):
    client = await aiohttp_client(create_app(Config(upstream=up.url)))
    await (await client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer b"})).read()
    assert up.received[-1][2]["Authorization"] == "Bearer b"


def test_keys_from_environment(monkeypatch):
    monkeypatch.setenv("MY_KEY", "from-env")
    cfg = parse("auth:\n  api_keys: [literal, {env: MY_KEY}]\n  upstream_key: {env: MY_KEY}\n", "c.yaml")
    assert cfg.auth.api_keys == ["literal", "from-env"] and cfg.auth.upstream_key == "from-env"
    monkeypatch.delenv("MY_KEY")
    with pytest.raises(ConfigError, match=r"c.yaml:2: auth.api_keys\[1\]: environment variable MY_KEY is not set"):
        parse("auth:\n  api_keys: [literal, {env: MY_KEY}]\n", "c.yaml")


async def test_request_cannot_choose_the_upstream(aiohttp_server, up):
    """Absolute-form targets, odd paths and Host headers all land on the configured upstream."""
    proxy = await aiohttp_server(create_app(Config(upstream=up.url)))
    for target in (b"http://evil.example/v1/models", b"//evil.example/v1/models",
                   b"/@evil.example/v1/models"):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        await writer.drain()
        status = (await reader.readline()).split()[1]
        await reader.read()
        writer.close()
        assert status == b"200", target
        method, path, headers, _ = up.received[-1]
        assert headers["Host"] == f"127.0.0.1:{up.server.port}"
        assert "evil.example" not in headers["Host"]
    assert len(up.received) == 3


async def test_bodies_and_keys_never_logged_unless_enabled(aiohttp_client, up, caplog):
    caplog.set_level(logging.DEBUG)
    for log_bodies in (False, True):
        caplog.clear()
        client = await aiohttp_client(create_app(Config(upstream=up.url, log_bodies=log_bodies,
                                                        auth=Auth(api_keys=["SECRET-KEY"]))))
        await (await client.post("/v1/chat/completions", json=CHAT,
                                 headers={"Authorization": "Bearer SECRET-KEY"})).read()
        await (await client.post("/v1/chat/completions", json=CHAT,
                                 headers={"Authorization": "Bearer SECRET-WRONG"})).read()
        text = caplog.text
        assert "SECRET-KEY" not in text and "SECRET-WRONG" not in text
        assert ("SECRET-PROMPT" in text) is log_bodies
        assert ("t0" in text) is log_bodies
