"""The response store (issue 13): ``previous_response_id``, ``store``, GET/DELETE
/v1/responses/{id} on backends that keep no conversation.

llama-server b11434 answers ``400 llama.cpp does not support 'previous_response_id'``; a
client that chains turns (LiveKit's Responses LLM, the OpenAI Agents SDK, openai-python)
fails on its second turn.  With ``responses_store`` the proxy keeps each response and
sends the continuation upstream self-contained.

The first part drives the proxy against the fake llama-server (real captures) and says
exactly what goes upstream and what the client gets, for each backend of the store
(memory, sqlite, and a real redis-server started here).  The second part (marked
``llama``) drives the real clients against the real llama-server: the tiny model calls
its tool whenever tools are offered and no tool result is in the context, so a turn that
answers in text proves that the earlier turns reached the model.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time

import aiohttp
import pytest

from sse_fixup.proxy import create_app

from .captures import FakeLlama
from .helpers import TOOL_RESP, free_port, parse
from .store_support import ProxyProcess, RedisServer, RedisUnavailable, config, store_setting
from .upstreams import Scripted

KINDS = ["memory", "sqlite", "redis"]
QUESTION = "What is the weather in Paris?"


@pytest.fixture(scope="session")
def redis_server():
    try:
        server = RedisServer()
    except RedisUnavailable as exc:
        pytest.fail(f"the redis store tests need a real redis-server: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def setting(request, tmp_path):
    """``setting(kind, **limits)``: the responses_store value; redis starts on first use."""
    def make(kind, **limits):
        url = None
        if kind == "redis":
            server = request.getfixturevalue("redis_server")
            server.flush()
            url = server.url
        return store_setting(kind, tmp_path, url, **limits)
    return make


@pytest.fixture
async def fake(aiohttp_server):
    up = FakeLlama()
    server = await aiohttp_server(up.app)
    up.url = str(server.make_url("")).rstrip("/")
    return up


@pytest.fixture
def proxy(aiohttp_server, fake):
    """``await proxy(store, **keys)``: the base URL of a proxy in front of the fake."""
    async def make(store, **keys):
        server = await aiohttp_server(create_app(config(fake.url, store, **keys)))
        return str(server.make_url("")).rstrip("/")
    return make


async def post(base: str, body: dict) -> tuple[int, object]:
    """POST /v1/responses: status, and the events (a stream) or the JSON body."""
    async with aiohttp.ClientSession() as s:
        async with s.post(base + "/v1/responses", json=body) as r:
            raw = await r.read()
            if r.headers.get("Content-Type", "").startswith("text/event-stream"):
                return r.status, [e for e in parse(raw) if isinstance(e, dict)]
            return r.status, json.loads(raw)


async def get(base: str, path: str, method: str = "GET") -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.request(method, base + path) as r:
            return r.status, json.loads(await r.read())


async def metrics(base: str, name: str) -> dict[str, float]:
    """The samples of metric ``name``: {labels: value}."""
    async with aiohttp.ClientSession() as s:
        text = await (await s.get(base + "/sse-fixup/metrics")).text()
    out = {}
    for m in re.finditer(rf"^{name}\{{(.*?)\}} (\S+)$", text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def completed(events: list) -> dict:
    (done,) = [e for e in events if e.get("type") == "response.completed"]
    return done["response"]


def not_found(rid: str) -> dict:
    return {"error": {"message": f"sse-fixup: Previous response with id '{rid}' not found.",
                      "type": "invalid_request_error", "code": "previous_response_not_found",
                      "param": "previous_response_id"}}


# -- what goes upstream ----------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
async def test_three_turns_go_upstream_self_contained(proxy, fake, setting, kind):
    base = await proxy(setting(kind))
    status, events = await post(base, {"model": "tiny", "input": QUESTION, "tools": [TOOL_RESP],
                                       "instructions": "Be brief.", "stream": True})
    assert status == 200
    one = completed(events)
    (call,) = one["output"]
    assert call["type"] == "function_call"

    result = {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny, 21 C"}
    status, events = await post(base, {"model": "tiny", "previous_response_id": one["id"],
                                       "input": [result], "tools": [TOOL_RESP], "stream": True})
    assert status == 200
    two = completed(events)
    # upstream: the whole conversation, no previous_response_id, and turn 1's instructions
    # not carried over (the API's rule)
    assert fake.requests[1][3] == {
        "model": "tiny", "tools": [TOOL_RESP], "stream": True,
        "input": [{"type": "message", "role": "user", "content": QUESTION}, call, result]}

    status, events = await post(base, {"model": "tiny", "previous_response_id": two["id"],
                                       "input": "Thanks!", "stream": True,
                                       "x_capture": "c_resp_stream_text"})
    assert status == 200
    three = completed(events)
    assert fake.requests[2][3]["input"] == [
        {"type": "message", "role": "user", "content": QUESTION}, call, result, *two["output"],
        {"type": "message", "role": "user", "content": "Thanks!"}]
    assert "previous_response_id" not in fake.requests[2][3]
    assert len({one["id"], two["id"], three["id"]}) == 3

    # the response objects, as the client got them (llama-server says store: false and
    # previous_response_id: null; the store's copy says what happened)
    status, got = await get(base, f"/v1/responses/{two['id']}")
    assert status == 200
    assert got == {**two, "store": True, "previous_response_id": one["id"]}
    status, got = await get(base, f"/v1/responses/{one['id']}")
    assert got == {**one, "store": True, "previous_response_id": None, "instructions": "Be brief."}


async def test_a_json_answer_is_kept_like_a_stream(proxy, fake):
    base = await proxy("memory")
    status, one = await post(base, {"model": "tiny", "input": QUESTION, "tools": [TOOL_RESP]})
    assert status == 200 and one["object"] == "response"
    (call,) = [o for o in one["output"] if o["type"] == "function_call"]
    result = {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}
    status, two = await post(base, {"model": "tiny", "previous_response_id": one["id"], "input": [result]})
    assert status == 200 and two["status"] == "completed"
    assert fake.requests[1][3]["input"] == [
        {"type": "message", "role": "user", "content": QUESTION}, *one["output"], result]


async def test_a_request_without_previous_response_id_goes_up_byte_for_byte(aiohttp_server):
    up = Scripted([b"data: {}\n\n"], content_type="application/json")
    server = await aiohttp_server(up.app)
    px = await aiohttp_server(create_app(config(str(server.make_url("")).rstrip("/"), "memory")))
    raw = b'{"model":"tiny",   "input":"hi", "store":true}'
    async with aiohttp.ClientSession() as s:
        async with s.post(str(px.make_url("/v1/responses")), data=raw,
                          headers={"Content-Type": "application/json"}) as r:
            await r.read()
    assert up.received[0][3] == raw


# -- the API's answers -------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
async def test_an_unknown_id_is_the_apis_404_and_never_reaches_the_backend(proxy, fake, setting, kind):
    base = await proxy(setting(kind))
    t0 = time.monotonic()
    status, body = await post(base, {"model": "tiny", "previous_response_id": "resp_nope", "input": "hi"})
    assert (status, body) == (404, not_found("resp_nope"))
    assert fake.requests == []
    assert time.monotonic() - t0 < 2          # a shared store looks again, briefly
    status, body = await get(base, "/v1/responses/resp_nope")
    assert status == 404 and body["error"]["code"] == "response_not_found"


@pytest.mark.parametrize("kind", KINDS)
async def test_store_false_keeps_nothing(proxy, fake, setting, kind):
    base = await proxy(setting(kind))
    status, events = await post(base, {"model": "tiny", "input": QUESTION, "stream": True,
                                       "store": False})
    assert status == 200
    rid = completed(events)["id"]
    assert (await get(base, f"/v1/responses/{rid}"))[0] == 404
    status, body = await post(base, {"model": "tiny", "previous_response_id": rid, "input": "and?"})
    assert (status, body) == (404, not_found(rid))
    # store: false continues a kept response, and is itself not kept
    status, events = await post(base, {"model": "tiny", "input": QUESTION, "stream": True,
                                       "x_capture": "c_resp_stream_text"})
    kept = completed(events)["id"]
    status, events = await post(base, {"model": "tiny", "input": "more", "stream": True, "store": False,
                                       "previous_response_id": kept, "x_capture": "c2_resp_stream_text_instructions_msgs"})
    assert status == 200
    assert fake.requests[-1][3]["input"][0] == {"type": "message", "role": "user", "content": QUESTION}
    assert (await get(base, f"/v1/responses/{completed(events)['id']}"))[0] == 404
    assert await metrics(base, "sse_fixup_store_saved_total") == {f'backend="{kind}"': 1.0}


@pytest.mark.parametrize("kind", KINDS)
async def test_get_input_items_and_delete(proxy, setting, kind):
    base = await proxy(setting(kind))
    items = [{"type": "message", "role": "developer", "content": "Answer in French."},
             {"type": "message", "role": "user", "content": [{"type": "input_text", "text": QUESTION}]}]
    status, events = await post(base, {"model": "tiny", "input": items, "stream": True,
                                       "x_capture": "c2_resp_stream_text_instructions_msgs"})
    one = completed(events)
    status, events = await post(base, {"model": "tiny", "input": "Thanks", "stream": True,
                                       "previous_response_id": one["id"], "x_capture": "c_resp_stream_text"})
    rid = completed(events)["id"]
    assert rid != one["id"]

    status, page = await get(base, f"/v1/responses/{rid}/input_items")
    assert status == 200 and page["object"] == "list" and page["has_more"] is False
    listed = page["data"]
    # newest first by default; every item has an id; string content as an input_text part
    assert [(i["type"], i.get("role")) for i in listed] == [
        ("message", "user"), *[(o["type"], o.get("role")) for o in reversed(one["output"])],
        ("message", "user"), ("message", "developer")]
    assert listed[0]["content"] == [{"type": "input_text", "text": "Thanks"}]
    assert all(isinstance(i["id"], str) and i["id"] for i in listed)
    assert [page["first_id"], page["last_id"]] == [listed[0]["id"], listed[-1]["id"]]

    status, asc = await get(base, f"/v1/responses/{rid}/input_items?order=asc&limit=2")
    assert asc["data"] == listed[::-1][:2] and asc["has_more"] is True
    status, rest = await get(base, f"/v1/responses/{rid}/input_items?order=asc&after={asc['last_id']}")
    assert asc["data"] + rest["data"] == listed[::-1] and rest["has_more"] is False
    status, bad = await get(base, f"/v1/responses/{rid}/input_items?limit=0")
    assert status == 400 and bad["error"]["param"] == "limit"

    assert await get(base, f"/v1/responses/{rid}", "DELETE") == (
        200, {"id": rid, "object": "response.deleted", "deleted": True})
    assert (await get(base, f"/v1/responses/{rid}"))[0] == 404
    assert (await get(base, f"/v1/responses/{rid}", "DELETE"))[0] == 404
    assert (await get(base, f"/v1/responses/{one['id']}"))[0] == 200       # only that one


@pytest.mark.parametrize("kind", KINDS)
async def test_an_expired_id_is_not_found(proxy, fake, setting, kind):
    base = await proxy(setting(kind, ttl=0.5))
    status, events = await post(base, {"model": "tiny", "input": QUESTION, "stream": True})
    rid = completed(events)["id"]
    assert (await get(base, f"/v1/responses/{rid}"))[0] == 200
    await asyncio.sleep(0.8)
    status, body = await post(base, {"model": "tiny", "previous_response_id": rid, "input": "and?"})
    assert (status, body) == (404, not_found(rid))
    assert (await get(base, f"/v1/responses/{rid}"))[0] == 404
    assert len(fake.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_the_oldest_is_evicted_over_max_items_and_counted(proxy, setting, kind):
    base = await proxy(setting(kind, max_items=2))
    ids = []
    for capture in ("c_resp_stream_text", "d_resp_stream_tool_required", "c3_resp_stream_text_length"):
        status, events = await post(base, {"model": "tiny", "input": QUESTION, "stream": True,
                                           "x_capture": capture})
        ids.append(completed(events)["id"])
        await asyncio.sleep(0.05)       # distinct times: "oldest" is well defined
    assert len(set(ids)) == 3
    assert [(await get(base, f"/v1/responses/{rid}"))[0] for rid in ids] == [404, 200, 200]
    evicted = await metrics(base, "sse_fixup_store_evictions_total")
    assert evicted == {f'backend="{kind}",reason="max_items"': 1.0}


# -- a store that is down ----------------------------------------------------------------

@pytest.mark.parametrize("down", ["sqlite", "redis"])
async def test_a_store_that_is_down_fails_continuations_with_503_and_nothing_else(proxy, tmp_path, down):
    store = {"sqlite": str(tmp_path / "no" / "such" / "dir" / "r.db")} if down == "sqlite" \
        else {"redis": f"redis://127.0.0.1:{free_port()}/0"}      # nothing listens there
    base = await proxy(store)
    status, events = await post(base, {"model": "tiny", "input": QUESTION, "stream": True})
    assert status == 200 and completed(events)["status"] == "completed"     # not needed: not broken
    t0 = time.monotonic()
    status, body = await post(base, {"model": "tiny", "previous_response_id": "resp_1", "input": "and?"})
    assert status == 503 and time.monotonic() - t0 < 6                      # never hangs
    assert body["error"]["code"] == "store_unavailable" and body["error"]["type"] == "server_error"
    assert body["error"]["message"].startswith(f"sse-fixup: the response store ({down} ")
    status, body = await get(base, "/v1/responses/resp_1")
    assert status == 503 and body["error"]["code"] == "store_unavailable"
    await asyncio.sleep(0.2)
    errors = await metrics(base, "sse_fixup_store_errors_total")
    assert errors.get(f'backend="{down}",op="put"', 0) >= 1 and errors[f'backend="{down}",op="get"'] >= 1


async def test_a_redis_that_goes_down_and_comes_back(proxy, redis_server):
    """The store down while the proxy runs: a 503, then service again - no restart."""
    redis_server.flush()
    base = await proxy({"redis": redis_server.url})
    status, events = await post(base, {"model": "tiny", "input": QUESTION, "stream": True})
    rid = completed(events)["id"]
    assert (await get(base, f"/v1/responses/{rid}"))[0] == 200        # kept, before Redis stops
    os.kill(redis_server.proc.pid, 19)                 # SIGSTOP: a Redis that does not answer
    try:
        t0 = time.monotonic()
        status, body = await post(base, {"model": "tiny", "previous_response_id": rid, "input": "and?"})
        assert status == 503 and body["error"]["code"] == "store_unavailable"
        assert time.monotonic() - t0 < 8
    finally:
        os.kill(redis_server.proc.pid, 18)             # SIGCONT
    status, events = await post(base, {"model": "tiny", "previous_response_id": rid, "input": "and?",
                                       "stream": True})
    assert status == 200


# -- routes ------------------------------------------------------------------------------

async def test_without_a_store_everything_goes_to_the_backend(aiohttp_server):
    up = Scripted([b'{"error": {"message": "not here"}}'], status=404, content_type="application/json")
    server = await aiohttp_server(up.app)
    px = await aiohttp_server(create_app(config(str(server.make_url("")).rstrip("/"), None)))
    base = str(px.make_url("")).rstrip("/")
    assert (await get(base, "/v1/responses/resp_1"))[0] == 404
    assert (await get(base, "/v1/responses/resp_1", "DELETE"))[0] == 404
    assert (await get(base, "/v1/responses/resp_1/input_items"))[0] == 404
    status, _ = await post(base, {"model": "tiny", "previous_response_id": "resp_1", "input": "hi"})
    assert status == 404
    assert [(m, p) for m, p, _, _ in up.received] == [
        ("GET", "/v1/responses/resp_1"), ("DELETE", "/v1/responses/resp_1"),
        ("GET", "/v1/responses/resp_1/input_items"), ("POST", "/v1/responses")]
    assert json.loads(up.received[3][3])["previous_response_id"] == "resp_1"


async def test_a_route_has_its_own_store(proxy, fake):
    base = await proxy(None, routes=[{"match": {"model": "kept*"}, "responses_store": "memory"}])
    status, events = await post(base, {"model": "kept-tiny", "input": QUESTION, "stream": True})
    rid = completed(events)["id"]
    status, _ = await post(base, {"model": "kept-tiny", "previous_response_id": rid, "input": "and?",
                                  "stream": True})
    assert status == 200 and "previous_response_id" not in fake.requests[-1][3]
    # the default route keeps nothing: its request goes to the backend as sent
    await post(base, {"model": "tiny", "previous_response_id": rid, "input": "and?"})
    assert fake.requests[-1][3]["previous_response_id"] == rid


async def test_the_chat_bridge_without_a_store_refuses_previous_response_id(proxy, fake):
    base = await proxy(None, upstream_api="chat")
    status, body = await post(base, {"model": "tiny", "previous_response_id": "resp_1", "input": "hi"})
    assert status == 400 and body["error"]["code"] == "previous_response_not_supported"
    assert "responses_store" in body["error"]["message"] and fake.requests == []


@pytest.mark.parametrize("kind", KINDS)
async def test_the_chat_bridge_gets_the_whole_conversation_as_messages(proxy, fake, setting, kind):
    base = await proxy(setting(kind), upstream_api="chat")
    status, events = await post(base, {"model": "tiny", "input": QUESTION, "tools": [TOOL_RESP],
                                       "stream": True})
    one = completed(events)
    (call,) = [o for o in one["output"] if o["type"] == "function_call"]
    result = {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}
    status, events = await post(base, {"model": "tiny", "previous_response_id": one["id"],
                                       "input": [result], "tools": [TOOL_RESP], "stream": True})
    assert status == 200 and completed(events)["status"] == "completed"
    method, path, _, sent = fake.requests[1]
    assert path == "/v1/chat/completions"
    assert sent["messages"] == [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call["call_id"], "type": "function",
             "function": {"name": "get_weather", "arguments": call["arguments"]}}]},
        {"role": "tool", "tool_call_id": call["call_id"], "content": "sunny"}]


# -- several proxy processes, one store --------------------------------------------------

@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_two_proxy_processes_share_the_store(fake, setting, tmp_path, kind):
    cfg = {"upstream": fake.url, "responses_store": setting(kind)}
    a, b = ProxyProcess(cfg, tmp_path, "a"), ProxyProcess(cfg, tmp_path, "b")
    try:
        await asyncio.gather(a.start(), b.start())
        status, events = await post(a.url, {"model": "tiny", "input": QUESTION, "tools": [TOOL_RESP],
                                            "stream": True})
        one = completed(events)
        (call,) = one["output"]
        result = {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}
        # turn 2 at once, through the other process
        status, events = await post(b.url, {"model": "tiny", "previous_response_id": one["id"],
                                            "input": [result], "tools": [TOOL_RESP], "stream": True})
        assert status == 200, (events, b.stderr())
        assert fake.requests[1][3]["input"] == [
            {"type": "message", "role": "user", "content": QUESTION}, call, result]
        two = completed(events)
        assert (await get(a.url, f"/v1/responses/{two['id']}"))[0] == 200
        assert (await get(a.url, f"/v1/responses/{one['id']}", "DELETE"))[0] == 200
        assert (await get(b.url, f"/v1/responses/{one['id']}"))[0] == 404
    finally:
        await asyncio.gather(a.stop(), b.stop())


# -- real clients, the real llama-server -------------------------------------------------


@pytest.fixture
def real_proxy(aiohttp_server, llama):
    async def make(store, **keys):
        server = await aiohttp_server(create_app(config(llama, store, **keys)))
        return str(server.make_url("")).rstrip("/")
    return make


def _openai(base: str):
    import openai
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key="none", max_retries=0)


async def openai_three_turns(base: str) -> list:
    """openai-python: a tool call, the tool result, a follow-up; each turn sends only its
    new input and previous_response_id."""
    client = _openai(base)
    one = await client.responses.create(model="tiny", input=QUESTION, tools=[TOOL_RESP])
    calls = [o for o in one.output if o.type == "function_call"]
    assert calls and all(c.name == "get_weather" for c in calls), one
    two = await client.responses.create(
        model="tiny", previous_response_id=one.id, tools=[TOOL_RESP],
        input=[{"type": "function_call_output", "call_id": c.call_id, "output": "sunny, 21 C"}
               for c in calls])
    # the tool result reached the model (else it would call the tool again)
    assert [o.type for o in two.output if o.type != "reasoning"] == ["message"], two
    three = await client.responses.create(model="tiny", previous_response_id=two.id,
                                          input="Thanks! And tomorrow?", tools=[TOOL_RESP])
    assert [o.type for o in three.output if o.type != "reasoning"] == ["message"], three
    got = await client.responses.retrieve(three.id)
    assert got.id == three.id and got.previous_response_id == two.id
    items = [i async for i in client.responses.input_items.list(three.id, order="asc")]
    assert [i.type for i in items][:1] == ["message"] and items[-1].type == "message"
    assert sum(i.type == "function_call_output" for i in items) == len(calls)
    await client.close()
    return [one, two, three]


@pytest.mark.llama
@pytest.mark.parametrize("kind", KINDS)
async def test_openai_python_three_turns(real_proxy, setting, kind):
    base = await real_proxy(setting(kind))
    await openai_three_turns(base)
    assert (await metrics(base, "sse_fixup_store_lookups_total"))[f'backend="{kind}",result="hit"'] >= 3


@pytest.mark.llama
@pytest.mark.parametrize("kind", KINDS)
async def test_openai_python_three_turns_over_the_chat_bridge(real_proxy, setting, kind):
    base = await real_proxy(setting(kind), upstream_api="chat")
    await openai_three_turns(base)


@pytest.mark.llama
@pytest.mark.parametrize("kind", KINDS)
async def test_livekit_responses_llm_tool_call_result_and_follow_up(real_proxy, setting, kind):
    try:
        from livekit.agents import llm
        from livekit.agents.types import APIConnectOptions
        from livekit.plugins.openai.responses import LLM
    except ImportError as e:
        pytest.fail(f"livekit-plugins-openai is needed ({e})", pytrace=False)
    base = await real_proxy(setting(kind))
    sent: list = []

    @llm.function_tool
    async def get_weather(city: str) -> str:
        """Get the weather

        Args:
            city: the city
        """
        return "sunny"

    async def turn(model, ctx) -> tuple[str, list]:
        text, calls = "", []
        async with model.chat(chat_ctx=ctx, tools=[get_weather],
                              conn_options=APIConnectOptions(max_retry=0, timeout=60)) as stream:
            async for chunk in stream:
                if chunk.delta is not None:
                    text += chunk.delta.content or ""
                    calls += chunk.delta.tool_calls
        sent.append(stream._extra_kwargs.get("previous_response_id"))
        return text, calls

    # HTTP, not the plugin's default WebSocket (the proxy serves /v1/responses over HTTP)
    async with LLM(model="tiny", base_url=base + "/v1", api_key="none", use_websocket=False) as model:
        ctx = llm.ChatContext.empty()
        ctx.add_message(role="user", content=QUESTION)
        text, calls = await turn(model, ctx)
        assert calls and calls[0].name == "get_weather", text
        for c in calls:
            ctx.items.append(llm.FunctionCall(call_id=c.call_id, name=c.name, arguments=c.arguments))
            ctx.items.append(llm.FunctionCallOutput(call_id=c.call_id, name=c.name, output="sunny",
                                                    is_error=False))
        text, calls = await turn(model, ctx)
        assert calls == [] and text.strip(), "the tool result did not reach the model"
        ctx.add_message(role="assistant", content=text)
        ctx.add_message(role="user", content="Thanks! And tomorrow?")
        text, calls = await turn(model, ctx)
        assert calls == [] and text.strip()
    # turns 2 and 3 were chained by the plugin: only the new items and the id went out
    assert sent[0] is None and all(isinstance(s, str) and s for s in sent[1:]), sent
    assert (await metrics(base, "sse_fixup_store_lookups_total"))[f'backend="{kind}",result="hit"'] >= 2


@pytest.mark.llama
@pytest.mark.parametrize("kind", KINDS)
async def test_openai_agents_sdk_multi_turn_agent(real_proxy, setting, kind):
    try:
        from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
    except ImportError as e:
        pytest.fail(f"openai-agents is needed ({e})", pytrace=False)
    set_tracing_disabled(True)
    base = await real_proxy(setting(kind))
    called = []

    @function_tool
    def get_weather(city: str) -> str:
        """Get the weather.

        Args:
            city: the city
        """
        called.append(city)
        return "sunny, 21 C"

    client = _openai(base)
    agent = Agent(name="weather", instructions="You answer weather questions.", tools=[get_weather],
                  model=OpenAIResponsesModel(model="tiny", openai_client=client))
    # the agent loop: the tool call, the tool result sent with previous_response_id
    first = await Runner.run(agent, QUESTION, auto_previous_response_id=True, max_turns=4)
    assert called and isinstance(first.final_output, str) and first.final_output.strip()
    assert first.last_response_id
    # the next user turn continues the conversation the server (the proxy) keeps
    second = await Runner.run(agent, "Thanks! And tomorrow?", previous_response_id=first.last_response_id,
                              max_turns=4)
    assert len(called) == 1, "the tool result of turn 1 did not reach the model"
    assert isinstance(second.final_output, str) and second.final_output.strip()
    await client.close()
    assert (await metrics(base, "sse_fixup_store_lookups_total"))[f'backend="{kind}",result="hit"'] >= 2


@pytest.mark.llama
@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_openai_python_turns_alternate_between_two_proxy_processes(llama, setting, tmp_path, kind):
    cfg = {"upstream": llama, "responses_store": setting(kind)}
    a, b = ProxyProcess(cfg, tmp_path, "a"), ProxyProcess(cfg, tmp_path, "b")
    try:
        await asyncio.gather(a.start(), b.start())
        ca, cb = _openai(a.url), _openai(b.url)
        one = await ca.responses.create(model="tiny", input=QUESTION, tools=[TOOL_RESP])
        calls = [o for o in one.output if o.type == "function_call"]
        assert calls
        two = await cb.responses.create(
            model="tiny", previous_response_id=one.id, tools=[TOOL_RESP],
            input=[{"type": "function_call_output", "call_id": c.call_id, "output": "sunny"} for c in calls])
        assert [o.type for o in two.output if o.type != "reasoning"] == ["message"], (two, b.stderr())
        three = await ca.responses.create(model="tiny", previous_response_id=two.id,
                                          input="Thanks!", tools=[TOOL_RESP])
        assert [o.type for o in three.output if o.type != "reasoning"] == ["message"], three
        assert (await cb.responses.retrieve(three.id)).previous_response_id == two.id
        await ca.close()
        await cb.close()
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_a_message_without_type_goes_up_with_type_message(proxy, fake):
    """LiveKit's Responses LLM sends its assistant turns as ``{"role", "content"}`` (the API's
    easy input message); llama-server b11434 refuses that for an assistant ("Cannot
    determine type of 'item'").  An expanded request gives each such item its type."""
    base = await proxy("memory")
    status, events = await post(base, {"model": "tiny", "input": QUESTION, "stream": True})
    rid = completed(events)["id"]
    said = {"role": "assistant", "content": [{"type": "input_text", "text": "It is sunny."}]}
    await post(base, {"model": "tiny", "previous_response_id": rid, "stream": True,
                      "input": [said, {"role": "user", "content": "Thanks"}]})
    assert fake.requests[1][3]["input"][-2:] == [
        {"type": "message", **said}, {"type": "message", "role": "user", "content": "Thanks"}]


async def test_the_sqlite_file_is_private_and_survives_a_restart(aiohttp_server, fake, tmp_path):
    """Conversations at rest: the file the proxy creates is readable by its user only; a
    new proxy (a restart) on the same file continues the conversation."""
    store = {"sqlite": str(tmp_path / "r.db")}
    first = await aiohttp_server(create_app(config(fake.url, store)))
    status, events = await post(str(first.make_url("")).rstrip("/"), {"model": "tiny", "input": QUESTION,
                                                                      "stream": True})
    rid = completed(events)["id"]
    await asyncio.sleep(0.1)
    await first.close()                      # cleanup: pending saves finish, the file is closed
    assert (tmp_path / "r.db").stat().st_mode & 0o777 == 0o600
    second = await aiohttp_server(create_app(config(fake.url, store)))
    status, _ = await post(str(second.make_url("")).rstrip("/"), {"model": "tiny", "input": "and?",
                                                                  "previous_response_id": rid})
    assert status == 200
    assert fake.requests[1][3]["input"][0] == {"type": "message", "role": "user", "content": QUESTION}


async def test_a_completed_without_output_is_kept_with_the_streamed_items(aiohttp_server):
    """A backend whose response.completed has ``output: []`` (the items came only as
    output_item.done events): the store keeps the items the client was streamed, so the
    continuation still carries the answer."""
    from .upstreams import sse
    item = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": "It is sunny.", "annotations": []}]}
    up = Scripted([
        sse({"type": "response.created", "response": {"id": "resp_a", "status": "in_progress", "output": []}},
            "response.created"),
        sse({"type": "response.output_item.done", "output_index": 0, "item": item}, "response.output_item.done"),
        sse({"type": "response.completed", "response": {"id": "resp_a", "status": "completed", "output": []}},
            "response.completed"), "eof"])
    server = await aiohttp_server(up.app)
    px = await aiohttp_server(create_app(config(str(server.make_url("")).rstrip("/"), "memory")))
    base = str(px.make_url("")).rstrip("/")
    status, events = await post(base, {"model": "m", "input": QUESTION, "stream": True})
    assert completed(events)["output"] == []                 # what the client got, untouched
    status, got = await get(base, "/v1/responses/resp_a")
    assert got["output"] == [item]
    await post(base, {"model": "m", "input": "Thanks", "previous_response_id": "resp_a", "stream": True})
    assert json.loads(up.received[1][3])["input"] == [
        {"type": "message", "role": "user", "content": QUESTION}, item,
        {"type": "message", "role": "user", "content": "Thanks"}]
