"""Upstream faults and bad input: what the client sees in each case (README "Failure behaviour")."""

import asyncio
import json
import ssl

import aiohttp
import pytest

from sse_fixup.config import Config, Limits, Timeouts
from sse_fixup.proxy import create_app

from .helpers import CHAT, RESP, free_port, metric, parse, start
from .upstreams import KeepAliveHTTP, Scripted, SilentTCP, chat_events, resp_events, sse


# -- the upstream cannot be reached -------------------------------------------------------

@pytest.mark.parametrize("upstream", ["refused", "http://no-such-host.invalid:8080"],
                         ids=["refused", "dns"])
async def test_unreachable_upstream_is_502_with_openai_error(aiohttp_client, upstream):
    if upstream == "refused":
        upstream = f"http://127.0.0.1:{free_port()}"     # nothing listens there
    client = await aiohttp_client(create_app(Config(upstream=upstream)))
    resp = await client.post("/v1/responses", json=RESP)
    assert resp.status == 502
    body = await resp.json()
    assert body["error"]["code"] == "upstream_unreachable"
    assert body["error"]["type"] == "upstream_error" and body["error"]["param"] is None


async def test_tls_error_is_502(aiohttp_server, aiohttp_client):
    plain = await aiohttp_server(Scripted([sse({"x": 1})]).app)   # speaks plain HTTP
    client = await aiohttp_client(create_app(Config(upstream=f"https://127.0.0.1:{plain.port}")))
    resp = await client.post("/v1/chat/completions", json=CHAT)
    assert resp.status == 502
    assert (await resp.json())["error"]["code"] == "upstream_unreachable"
    assert ssl  # the handshake error surfaces as a connector error, not a traceback


# -- the upstream answers with an error ------------------------------------------------------

@pytest.mark.parametrize("status", [400, 404, 500, 503])
async def test_upstream_error_status_and_body_pass_through(aiohttp_server, aiohttp_client, status):
    body = json.dumps({"error": {"code": status, "message": "nope", "type": "server_error"}}).encode()
    client = await start(aiohttp_server, aiohttp_client,
                         Scripted([body], status=status, content_type="application/json"))
    resp = await client.post("/v1/responses", json=RESP)
    assert resp.status == status
    assert await resp.read() == body


# -- streams that end badly ---------------------------------------------------------------------

@pytest.mark.parametrize("ending,code", [("reset", "upstream_disconnected"),
                                         ("eof", "upstream_incomplete")])
async def test_responses_stream_cut_short_ends_in_error_and_response_failed(
        aiohttp_server, aiohttp_client, ending, code):
    client = await start(aiohttp_server, aiohttp_client, Scripted([*resp_events(3), ending]))
    resp = await client.post("/v1/responses", json=RESP)
    events = parse(await resp.read())
    assert [e["type"] for e in events] == ["response.created"] + ["response.output_text.delta"] * 3 \
        + ["error", "response.failed"]
    err, failed = events[-2:]
    assert err["code"] == code and err["error"]["code"] == code
    assert failed["response"]["status"] == "failed" and failed["response"]["id"] == "resp_x"
    assert failed["response"]["error"]["code"] == code
    assert [e["sequence_number"] for e in events] == list(range(6))
    if ending == "reset":
        assert 'kind="upstream_disconnected"' in await metric(client, "sse_fixup_upstream_errors")


@pytest.mark.parametrize("ending,code", [("reset", "upstream_disconnected"),
                                         ("eof", "upstream_incomplete")])
async def test_chat_stream_cut_short_ends_in_error_chunk_and_done(
        aiohttp_server, aiohttp_client, ending, code):
    client = await start(aiohttp_server, aiohttp_client, Scripted([*chat_events(2), ending]))
    resp = await client.post("/v1/chat/completions", json=CHAT)
    events = parse(await resp.read())
    assert events[-2]["error"]["code"] == code
    assert events[-1] == "[DONE]"
    assert len(events) == 4


async def test_openai_python_raises_on_a_cut_stream(aiohttp_server, aiohttp_client):
    """The real client surfaces the cut as an APIError instead of a silent short answer."""
    import openai
    client = await start(aiohttp_server, aiohttp_client, Scripted([*chat_events(2), "reset"]))
    oa = openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key="x", max_retries=0)
    got = []
    with pytest.raises(openai.APIError, match="closed the stream before it was complete"):
        async for chunk in await oa.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True):
            got.append(chunk.choices[0].delta.content)
    assert got == ["t0", "t1"]
    await oa.close()


# -- timeouts and keepalive -----------------------------------------------------------------

async def test_no_headers_within_first_byte_is_504(aiohttp_server, aiohttp_client):
    client = await start(aiohttp_server, aiohttp_client, Scripted(["eof"], headers_delay=2),
                         timeouts=Timeouts(first_byte=0.3, keepalive=None))
    resp = await client.post("/v1/responses", json=RESP)
    assert resp.status == 504
    assert (await resp.json())["error"]["code"] == "upstream_timeout"


async def test_no_body_within_first_byte_ends_stream_with_timeout(aiohttp_server, aiohttp_client):
    up = Scripted([2.0, *resp_events(1), "eof"])
    client = await start(aiohttp_server, aiohttp_client, up,
                         timeouts=Timeouts(first_byte=0.3, idle=10, keepalive=None))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    resp = await client.post("/v1/responses", json=RESP)
    events = parse(await resp.read())
    assert loop.time() - t0 < 1.5
    assert [e["type"] for e in events] == ["error", "response.failed"]
    assert events[0]["code"] == "upstream_timeout"
    await asyncio.wait_for(up.closed.wait(), 1)          # and the upstream was let go


async def test_idle_timeout_between_events_ends_stream(aiohttp_server, aiohttp_client):
    up = Scripted([*chat_events(2), 2.0, *chat_events(1), "eof"])
    client = await start(aiohttp_server, aiohttp_client, up,
                         timeouts=Timeouts(first_byte=10, idle=0.3, keepalive=None))
    resp = await client.post("/v1/chat/completions", json=CHAT)
    events = parse(await resp.read())
    assert len(events) == 4
    assert events[2]["error"]["code"] == "upstream_idle_timeout" and events[3] == "[DONE]"


async def test_keepalive_comments_during_a_long_wait(aiohttp_server, aiohttp_client):
    steps = [*chat_events(1), 0.5, *chat_events(1), b"data: [DONE]\n\n", "eof"]
    client = await start(aiohttp_server, aiohttp_client, Scripted(steps),
                         timeouts=Timeouts(first_byte=10, idle=10, keepalive=0.1),
                         presets=[])
    body = await (await client.post("/v1/chat/completions", json=CHAT)).read()
    n = body.count(b": keepalive\n\n")
    assert 2 <= n <= 6
    # apart from the comments, the stream is byte for byte what the upstream sent
    assert body.replace(b": keepalive\n\n", b"") == b"".join(s for s in steps if isinstance(s, bytes))


# -- bad bytes ----------------------------------------------------------------------------

async def test_garbage_passes_through_unchanged_and_is_counted(aiohttp_server, aiohttp_client):
    garbage = [b"data: not json at all\n\n", b"data: {\"broken\": \n\n",
               b"data: {\"bad\": \"\xff\xfe\"}\n\n", b"\x00\x01\x02 binary\n\n",
               b": a comment\n\n", b"event: unknown.event\ndata: {\"type\": \"unknown.event\"}\n\n"]
    steps = [*chat_events(1), *garbage, *chat_events(1), b"data: [DONE]\n\n", "eof"]
    client = await start(aiohttp_server, aiohttp_client, Scripted(steps))
    resp = await client.post("/v1/chat/completions", json=CHAT)
    body = await resp.read()
    for piece in garbage:
        assert piece in body
    text = await metric(client, "sse_fixup_events_total")
    assert 'outcome="non_json"} 3.0' in text


async def test_oversized_event_ends_stream_with_error(aiohttp_server, aiohttp_client):
    big = b"data: {\"x\": \"" + b"a" * 5000 + b"\"}\n\n"
    steps = [*chat_events(1), big[:3000], big[3000:], *chat_events(1), "eof"]
    client = await start(aiohttp_server, aiohttp_client, Scripted(steps),
                         limits=Limits(max_event_bytes=4096))
    events = parse(await (await client.post("/v1/chat/completions", json=CHAT)).read())
    assert len(events) == 3
    assert events[1]["error"]["code"] == "event_too_large" and events[2] == "[DONE]"
    assert 'outcome="too_large"} 1.0' in await metric(client, "sse_fixup_events_total")


def test_oversized_event_inside_one_read_is_caught_too():
    """Untouched compact chat chunks pass unparsed; an oversized one among them, all in
    one read, must still end the stream (the decoder enforces the limit)."""
    from sse_fixup.routes import Router
    from sse_fixup.rules.base import RequestInfo

    def chunk(text):
        return (b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
                b'"choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]}\n\n' % text)
    route = Router(Config(limits=Limits(max_event_bytes=4096))).route("/v1/chat/completions")
    t = route.open(RequestInfo("chat", "/v1/chat/completions", {"model": "m"}), "stream")
    assert t.feed(chunk(b"t0") + chunk(b"t1")) == chunk(b"t0") + chunk(b"t1")
    out = t.feed(chunk(b"t2") + chunk(b"a" * 5000) + chunk(b"t3"))
    assert out == chunk(b"t2") and t.fault.code == "event_too_large"
    end = parse(t.close())
    assert end[0]["error"]["code"] == "event_too_large" and end[-1] == "[DONE]"


# -- the client side ------------------------------------------------------------------------

async def test_client_disconnect_mid_stream_closes_upstream_within_100ms(aiohttp_server):
    up = Scripted([*resp_events(2), "hold"])      # then silent: a long tool call, say
    upserver = await aiohttp_server(up.app)
    proxy = await aiohttp_server(create_app(Config(upstream=str(upserver.make_url("")).rstrip("/"))))
    async with aiohttp.ClientSession() as session:
        resp = await session.post(proxy.make_url("/v1/responses"), json=RESP)
        await resp.content.readuntil(b"t1")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        resp.close()
        await asyncio.wait_for(up.closed.wait(), 2)
        assert loop.time() - t0 < 0.1


async def test_client_disconnect_before_headers_closes_upstream_within_100ms(aiohttp_server):
    silent = SilentTCP()
    base = await silent.start()
    proxy = await aiohttp_server(create_app(Config(upstream=base)))
    try:
        async with aiohttp.ClientSession() as session:
            task = asyncio.ensure_future(session.post(proxy.make_url("/v1/responses"), json=RESP))
            await asyncio.wait_for(silent.connected.wait(), 2)
            await asyncio.sleep(0.05)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            task.cancel()                   # the client gives up while the prompt is processed
            await asyncio.wait_for(silent.closed.wait(), 2)
            assert silent.closed_at - t0 < 0.1
    finally:
        silent.close()


async def test_request_body_over_limit_is_413(aiohttp_server, aiohttp_client):
    up = Scripted([b"{}"], content_type="application/json")
    client = await start(aiohttp_server, aiohttp_client, up, limits=Limits(max_request_bytes=2048))
    big = json.dumps({"model": "m", "input": "x" * 5000}).encode()
    resp = await client.post("/v1/responses", data=big, headers={"Content-Type": "application/json"})
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "request_too_large"

    async def chunked():
        yield big[:1000]
        yield big[1000:]
    resp = await client.post("/v1/files", data=chunked())      # no Content-Length
    assert resp.status == 413
    resp = await client.post("/v1/files", data=big)            # passthrough path, with length
    assert resp.status == 413
    assert up.received == []                                    # nothing reached the backend


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
async def test_malformed_request_body_is_forwarded_untouched(aiohttp_server, aiohttp_client, body):
    up = Scripted([b'{"error": {"message": "bad", "code": 400}}'], status=400,
                  content_type="application/json")
    client = await start(aiohttp_server, aiohttp_client, up)
    resp = await client.post("/v1/chat/completions", data=body,
                             headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert up.received[-1][3] == body


# -- pooled connections the upstream closed -----------------------------------------------

async def test_pooled_connection_the_upstream_dropped_is_retried_once_on_a_new_one(aiohttp_client):
    """llama-server closes a kept-alive connection after a stream; the next request on the
    pooled connection fails before any byte came back, so it is sent again, not a 502."""
    up = KeepAliveHTTP(stale=2)          # the second request on any connection is dropped
    base = await up.start()
    try:
        client = await aiohttp_client(create_app(Config(upstream=base)))
        stream = await client.post("/v1/chat/completions", json=CHAT)
        assert stream.status == 200 and parse(await stream.read())[-1] == "[DONE]"
        for _ in range(3):            # POST: not idempotent, so aiohttp would not retry it
            resp = await client.post("/v1/chat/completions", json={**CHAT, "stream": False})
            assert resp.status == 200, await resp.text()
        assert up.dropped >= 1 and up.answered == 4
        retries = await metric(client, "sse_fixup_upstream_retries_total")
        assert retries.endswith(f" {float(up.dropped)}"), retries
    finally:
        up.close()


async def test_a_new_connection_that_fails_is_not_retried(aiohttp_client):
    up = KeepAliveHTTP(stale=1)          # every first request is dropped: the upstream is broken
    base = await up.start()
    try:
        client = await aiohttp_client(create_app(Config(upstream=base)))
        resp = await client.post("/v1/chat/completions", json={**CHAT, "stream": False})
        assert resp.status == 502 and up.dropped == 1
    finally:
        up.close()


async def test_upstream_keep_alive_timeout_is_honoured(aiohttp_client):
    """``Keep-Alive: timeout=1``: a connection idle longer is not reused (no retry needed)."""
    up = KeepAliveHTTP(keep_alive=1, idle_close=1.0)
    base = await up.start()
    try:
        client = await aiohttp_client(create_app(Config(upstream=base)))
        plain = {**CHAT, "stream": False}
        assert (await client.post("/v1/chat/completions", json=plain)).status == 200
        await asyncio.sleep(1.3)
        assert (await client.post("/v1/chat/completions", json=plain)).status == 200
        assert up.connections == 2 and up.dropped == 0
        assert (await metric(client, "sse_fixup_upstream_retries_total")).endswith(" 0.0")
    finally:
        up.close()


async def test_json_body_that_never_comes_is_504_after_idle(aiohttp_server, aiohttp_client):
    up = Scripted([b'{"id":', "hold"], content_type="application/json")
    client = await start(aiohttp_server, aiohttp_client, up, timeouts=Timeouts(idle=0.3))
    resp = await client.post("/v1/chat/completions", json={**CHAT, "stream": False})
    assert resp.status == 504
    assert (await resp.json())["error"]["code"] == "upstream_idle_timeout"


async def test_stream_aggregated_for_a_json_client_ends_in_an_error_body_when_silent(aiohttp_server,
                                                                                   aiohttp_client):
    up = Scripted([*chat_events(2), "hold"])
    client = await start(aiohttp_server, aiohttp_client, up, timeouts=Timeouts(idle=0.3))
    resp = await client.post("/v1/chat/completions", json={**CHAT, "stream": False})
    assert resp.status == 504 and resp.content_type == "application/json"
    assert (await resp.json())["error"]["code"] == "upstream_idle_timeout"
