"""The proxy over real sockets, in front of a fake llama-server that replays captures."""

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web

from sse_fixup.config import Config
from sse_fixup.proxy import create_app

from .captures import FakeLlama, load
from .helpers import GOLDEN, free_port


@pytest.fixture
async def fake(aiohttp_server):
    f = FakeLlama()
    f.server = await aiohttp_server(f.app)
    f.url = str(f.server.make_url("")).rstrip("/")
    return f


@pytest.fixture
async def proxy(aiohttp_client, fake):
    return await aiohttp_client(create_app(Config(upstream=fake.url)))


async def post(client, path, body, headers=None):
    return await client.post(path, data=json.dumps(body),
                             headers=headers or {"Content-Type": "application/json"})


@pytest.mark.parametrize("name,path", [
    ("d_resp_stream_tool_required", "/v1/responses"),
    ("c_resp_stream_text", "/v1/responses"),
    ("b_chat_stream_tool_required", "/v1/chat/completions"),
    ("e_d_resp_tool_required", "/v1/responses"),
    ("e_b_chat_tool_required", "/v1/chat/completions"),
])
async def test_endpoint_output_equals_golden(proxy, fixed_clock, name, path):
    resp = await post(proxy, path, load(name).request)
    assert resp.status == 200
    assert await resp.read() == (GOLDEN / f"{name}.out").read_bytes()
    if load(name).is_sse:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["Cache-Control"] == "no-cache"
        assert resp.headers["X-Accel-Buffering"] == "no"


async def test_events_are_written_as_they_arrive(aiohttp_client, fake):
    fake.delay = 0.2
    proxy = await aiohttp_client(create_app(Config(upstream=fake.url)))
    resp = await post(proxy, "/v1/responses", load("d_resp_stream_tool_required").request)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    first = await resp.content.readany()
    assert b"response.created" in first
    assert loop.time() - t0 < 0.15       # not held back until the next upstream write
    resp.close()


async def test_other_paths_pass_through_untouched(proxy):
    resp = await proxy.get("/v1/models")
    assert resp.status == 200
    assert await resp.read() == load("g_get_models").body
    resp = await proxy.get("/health")
    assert await resp.json() == {"status": "ok"}


async def test_chat_path_without_v1_is_patched(proxy, fake, fixed_clock):
    body = load("b_chat_stream_tool_required").request
    resp = await post(proxy, "/chat/completions", body)
    assert await resp.read() == (GOLDEN / "b_chat_stream_tool_required.out").read_bytes()
    assert fake.requests[-1][1] == "/chat/completions"


async def test_upstream_base_path(aiohttp_server, aiohttp_client, fixed_clock):
    fake = FakeLlama()
    outer = web.Application()
    outer.add_subapp("/base", fake.app)
    server = await aiohttp_server(outer)
    proxy = await aiohttp_client(create_app(Config(upstream=str(server.make_url("/base")))))
    resp = await post(proxy, "/v1/responses", load("d_resp_stream_tool_required").request)
    assert await resp.read() == (GOLDEN / "d_resp_stream_tool_required.out").read_bytes()
    assert fake.requests[-1][1] == "/base/v1/responses"


async def test_authorization_forwarded_hop_by_hop_dropped(proxy, fake):
    await post(proxy, "/v1/chat/completions", load("e_a_chat_text").request,
               headers={"Authorization": "Bearer sk-test", "Connection": "keep-alive, X-Drop-Me",
                        "X-Drop-Me": "1", "X-Keep": "2", "Content-Type": "application/json"})
    sent = fake.requests[-1][2]
    assert sent["Authorization"] == "Bearer sk-test"
    assert sent["X-Keep"] == "2"
    assert "X-Drop-Me" not in sent


async def test_upstream_error_status_passes_through(proxy):
    resp = await proxy.post("/v1/chat/completions", data=b"{not json",
                            headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"]["type"] == "invalid_request_error"


async def test_upstream_down_gives_502_openai_error(aiohttp_client):
    proxy = await aiohttp_client(create_app(Config(upstream=f"http://127.0.0.1:{free_port()}")))
    resp = await post(proxy, "/v1/responses", {"model": "m", "input": "hi", "stream": True})
    assert resp.status == 502
    err = (await resp.json())["error"]
    assert err["type"] == "upstream_error" and err["code"] == "upstream_unreachable"
    assert "unreachable" in err["message"]


async def test_healthz_answers_from_the_proxy(aiohttp_client):
    proxy = await aiohttp_client(create_app(Config(upstream=f"http://127.0.0.1:{free_port()}")))
    resp = await proxy.get("/healthz")
    assert resp.status == 200 and (await resp.json())["status"] == "ok"


async def test_client_disconnect_cancels_upstream(aiohttp_server, fake):
    fake.hold = True
    server = await aiohttp_server(create_app(Config(upstream=fake.url)))
    async with aiohttp.ClientSession() as session:
        resp = await session.post(server.make_url("/v1/responses"),
                                  json=load("d_resp_stream_tool_required").request)
        await resp.content.readany()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        resp.close()              # the client goes away mid-stream
        await asyncio.wait_for(fake.disconnected.wait(), 2)
        assert loop.time() - t0 < 0.5


async def test_metrics_count_patches(proxy):
    await post(proxy, "/v1/responses", load("d_resp_stream_tool_required").request)
    text = await (await proxy.get("/sse-fixup/metrics")).text()
    assert 'sse_fixup_rule_applied_total{rule="responses.output_index"}' in text
    assert 'sse_fixup_requests_total{endpoint="responses",kind="stream",status="200"} 1.0' in text
