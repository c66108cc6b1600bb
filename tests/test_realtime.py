"""The Realtime API on the WebSocket (issue 18): ``realtime: forward`` with the ``realtime``
rules in front of a Realtime server that sends defective events, and ``realtime: emulate``
serving a text session over chat completions - with the real clients (openai-python's
``client.realtime.connect``, LiveKit's ``RealtimeModel``), against fakes here and against the
real llama-server in the tests marked ``llama``."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from sse_fixup.chain import Chain
from sse_fixup.config import Config, Limits, Timeouts
from sse_fixup.proxy import create_app
from sse_fixup.rules import realtime as rt
from sse_fixup.rules.base import RequestInfo, StreamContext
from sse_fixup.sse import Event

from .realtime_support import DefectiveRealtime, livekit_turns, openai_turns, validate
from .upstreams import Scripted, sse


# -- the rules: a defective event stream in, the exact events out ----------------------


def run_rules(events: list[dict], rules=None) -> list[dict]:
    stage = Chain("realtime", rules or rt.RULES).open(StreamContext(RequestInfo("realtime")))
    out = []
    for obj in events:
        data = json.dumps(obj).encode()
        out += [e.json for e in stage.push([Event(data, None, data)])]
    return out


def test_rules_make_a_defective_text_response_whole(fixed_clock):
    from .realtime_support import text_answer
    out = run_rules(text_answer())
    ids = [e["event_id"] for e in out]
    assert len(set(ids)) == len(out) and all(i.startswith("event_") for i in ids)
    created, added, part, d1, d2, tdone, pdone, idone, done = out
    rid = created["response"]["id"]
    assert rid.startswith("resp_") and created["response"]["object"] == "realtime.response"
    item = added["item"]
    assert item["id"].startswith("item_") and item["type"] == "message" and item["object"] == "realtime.item"
    assert added["output_index"] == 0 and added["response_id"] == rid
    for e in (part, d1, d2, tdone, pdone):
        assert (e["response_id"], e["item_id"], e["output_index"], e["content_index"]) == (rid, item["id"], 0, 0)
    assert idone["item"]["id"] == item["id"] and idone["output_index"] == 0
    assert done["response"]["id"] == rid and done["response"]["status"] == "completed"
    assert done["response"]["output"][0]["id"] == item["id"]
    assert done["response"]["usage"] == {
        "input_tokens": 20, "output_tokens": 4, "total_tokens": 24,
        "input_token_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 0,
                                "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0}},
        "output_token_details": {"text_tokens": 0, "audio_tokens": 0}}
    for e in out:
        validate(e)


def test_rules_fill_a_tool_call_from_its_item(fixed_clock):
    from .realtime_support import tool_call
    out = run_rules(tool_call())
    added = out[1]
    assert added["item"]["type"] == "function_call" and added["item"]["id"].startswith("item_")
    for e in out[2:5]:
        assert e["item_id"] == added["item"]["id"] and e["call_id"] == "call_1" and e["output_index"] == 0
    assert out[4]["name"] == "get_weather"
    for e in out:
        validate(e)


def test_rules_keep_what_the_upstream_sent():
    good = [{"type": "response.created", "event_id": "e1", "response": {"id": "r1", "object": "realtime.response"}},
            {"type": "response.output_item.added", "event_id": "e2", "response_id": "r1", "output_index": 0,
             "item": {"id": "i1", "type": "message", "object": "realtime.item", "role": "assistant",
                      "content": []}},
            {"type": "response.output_text.delta", "event_id": "e3", "response_id": "r1", "item_id": "i1",
             "output_index": 0, "content_index": 0, "delta": "x"},
            {"type": "rate_limits.updated", "event_id": "e4", "rate_limits": []},
            {"type": "vendor.thing", "event_id": "e5", "what": 1}]
    assert run_rules(good) == good


def test_rules_second_output_item_and_second_part_get_the_next_indexes():
    out = run_rules([
        {"type": "response.created", "response": {"id": "r"}},
        {"type": "response.output_item.added", "item": {"id": "a", "type": "message", "role": "assistant"}},
        {"type": "response.content_part.added", "part": {"type": "text"}},
        {"type": "response.content_part.added", "part": {"type": "text"}},
        {"type": "response.output_text.delta", "delta": "x"},
        {"type": "response.output_item.added", "item": {"id": "b", "name": "f", "call_id": "c"}},
        {"type": "response.function_call_arguments.delta", "delta": "{}"},
    ])
    assert [(e.get("item_id"), e.get("output_index"), e.get("content_index")) for e in out[2:]] == [
        ("a", 0, 0), ("a", 0, 1), ("a", 0, 1), (None, 1, None), ("b", 1, None)]


def test_rule_error_event_takes_the_documented_shape():
    out = run_rules([{"type": "error", "error": "the model is not loaded"},
                     {"type": "error", "message": "bad", "code": "x"}])
    assert out[0]["error"] == {"message": "the model is not loaded", "type": "server_error", "code": None,
                               "param": None, "event_id": None}
    assert out[1]["error"] == {"message": "bad", "code": "x", "type": "server_error", "param": None,
                               "event_id": None} and "message" not in out[1]
    for e in out:
        validate(e)


def test_rule_response_done_status_from_status_details():
    out = run_rules([{"type": "response.done", "response": {"id": "r", "status_details": {
        "type": "failed", "error": {"type": "server_error", "code": "x"}}}}])
    assert out[0]["response"]["status"] == "failed"


def test_realtime_preset_is_in_default_and_disable_works():
    from sse_fixup.presets import PRESETS
    assert PRESETS["realtime"][1] == [r.name for r in rt.RULES]
    assert set(PRESETS["realtime"][1]) <= set(PRESETS["default"][1])
    assert "realtime.items" not in Config(upstream="http://x", disable=["realtime.items"]).rule_names()


# -- forward: a defective Realtime server, the real clients --------------------------------


@pytest.fixture
async def defective(aiohttp_server):
    fake = DefectiveRealtime()
    server = await aiohttp_server(fake.app)
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


async def _proxy(aiohttp_server, upstream: str, **cfg) -> str:
    server = await aiohttp_server(create_app(Config(upstream=upstream, **cfg)))
    return str(server.make_url("/v1"))


async def test_forward_openai_python_gets_valid_events(aiohttp_server, defective):
    base = await _proxy(aiohttp_server, defective.url)
    out = await openai_turns(base)
    assert out["invalid"] == [], out["invalid"]
    assert out["call"]["item_id"].startswith("item_") and out["call"]["call_id"] == "call_1"
    assert out["call"]["arguments"] == {"city": "Paris"}
    assert out["text"] == "It is sunny." and out["status"] == ["completed", "completed"]
    # client events went upstream untouched, query and all
    assert defective.handshakes[0][0] == "/v1/realtime?model=tiny"
    assert [e["type"] for e in defective.received][:3] == ["session.update", "conversation.item.create",
                                                          "response.create"]


async def test_forward_without_the_preset_openai_python_fails_as_directly(aiohttp_server, defective):
    direct = await openai_turns(defective.url + "/v1")
    base = await _proxy(aiohttp_server, defective.url, disable=[r.name for r in rt.RULES])
    through = await openai_turns(base)
    assert direct["invalid"] and through["invalid"] == direct["invalid"]
    assert {e.split(":")[0] for e in direct["invalid"]} >= {"session.created", "response.created", "response.done"}


async def test_forward_livekit_gets_the_tool_call_and_the_text(aiohttp_server, defective):
    base = await _proxy(aiohttp_server, defective.url)
    out = await livekit_turns(base, timeout=15)
    assert out["errors"] == [], out
    assert len(out["calls"]) == 1 and out["calls"][0]["call_id"] == "call_1"
    assert out["calls"][0]["arguments"] == {"city": "Paris"} and out["calls"][0]["id"].startswith("item_")
    assert out["text"] == "It is sunny."
    m = [m for m in out["metrics"] if str(getattr(m, "request_id", "")).startswith("resp_")][-1]
    assert (m.input_tokens, m.output_tokens, m.total_tokens) == (20, 4, 24)


async def test_forward_without_the_preset_livekit_fails_as_directly(aiohttp_server, defective):
    direct = await livekit_turns(defective.url + "/v1", timeout=3)
    base = await _proxy(aiohttp_server, defective.url, disable=[r.name for r in rt.RULES])
    through = await livekit_turns(base, timeout=3)
    for out in (direct, through):
        assert out["calls"] == [] and out["errors"], out


async def _ws(base: str, path="/v1/realtime?model=tiny", headers=None):
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(base.removesuffix("/v1") + path, headers=headers or {})
    return session, ws


async def _until(ws, typ: str, timeout=10.0) -> list[dict]:
    got = []
    while True:
        msg = await asyncio.wait_for(ws.receive(), timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            got.append({"type": f"<{msg.type.name}>", "code": ws.close_code, "reason": msg.extra})
            return got
        got.append(json.loads(msg.data))
        if got[-1]["type"] == typ:
            return got


async def test_forward_close_code_and_reason_propagate_from_upstream(aiohttp_server, defective):
    base = await _proxy(aiohttp_server, defective.url)
    session, ws = await _ws(base)
    try:
        await _until(ws, "session.created")
        await ws.send_str(json.dumps({"type": "test.close", "code": 4001, "reason": "bye now"}))
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert (msg.type, msg.data, msg.extra) == (aiohttp.WSMsgType.CLOSE, 4001, "bye now")
    finally:
        await ws.close()
        await session.close()


async def test_forward_close_code_and_reason_propagate_from_client(aiohttp_server, defective):
    base = await _proxy(aiohttp_server, defective.url)
    session, ws = await _ws(base)
    await _until(ws, "session.created")
    await ws.close(code=4002, message=b"client done")
    await session.close()
    for _ in range(50):
        if defective.closed_with:
            break
        await asyncio.sleep(0.05)
    assert defective.closed_with == [(4002, "client done")]


async def test_forward_upstream_gone_mid_response_fails_the_response(aiohttp_server, defective):
    base = await _proxy(aiohttp_server, defective.url)
    session, ws = await _ws(base)
    try:
        await _until(ws, "session.created")
        await ws.send_str(json.dumps({"type": "test.drop"}))
        got = await _until(ws, "<CLOSE>")
        types = [e["type"] for e in got]
        assert types == ["response.created", "response.output_item.added", "error", "response.done", "<CLOSE>"]
        assert got[2]["error"]["code"] == "upstream_disconnected"
        assert got[3]["response"]["status"] == "failed"
        assert got[3]["response"]["id"] == got[0]["response"]["id"]
        assert got[-1]["code"] == 1011
        for e in got[:-1]:
            validate(e)
    finally:
        await session.close()


async def test_forward_error_string_becomes_an_error_object(aiohttp_server, defective):
    base = await _proxy(aiohttp_server, defective.url)
    session, ws = await _ws(base)
    try:
        await _until(ws, "session.created")
        await ws.send_str(json.dumps({"type": "test.error"}))
        got = await _until(ws, "error")
        assert got[-1]["error"]["message"] == "the model is not loaded"
        validate(got[-1])
    finally:
        await ws.close()
        await session.close()


async def test_forward_to_a_backend_without_realtime_is_a_clear_http_error(aiohttp_server):
    up = await aiohttp_server(Scripted([b"{}", "eof"], status=404, content_type="application/json").app)
    base = await _proxy(aiohttp_server, str(up.make_url("")).rstrip("/"))
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await s.ws_connect(base + "/realtime?model=x")
        assert info.value.status == 404
        async with s.get(base + "/realtime?model=x", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                                "Sec-WebSocket-Version": "13",
                                                                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as r:
            body = await r.json()
    assert "realtime: emulate" in body["error"]["message"] and body["error"]["code"] == "upstream_refused"


async def test_forward_auth_as_configured(aiohttp_server, defective):
    from sse_fixup.config import Auth
    base = await _proxy(aiohttp_server, defective.url, auth=Auth(api_keys=["inbound"], upstream_key="backend"))
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await s.ws_connect(base + "/realtime?model=tiny", headers={"Authorization": "Bearer wrong"})
        assert info.value.status == 401 and defective.handshakes == []
        ws = await s.ws_connect(base + "/realtime?model=tiny", headers={"Authorization": "Bearer inbound",
                                                                       "X-Trace": "t1"})
        await _until(ws, "session.created")
        await ws.close()
    path, headers = defective.handshakes[0]
    assert path == "/v1/realtime?model=tiny"
    assert headers["Authorization"] == "Bearer backend" and headers["X-Trace"] == "t1"


async def test_realtime_off_is_404(aiohttp_server, defective):
    base = await _proxy(aiohttp_server, defective.url, realtime="off")
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await s.ws_connect(base + "/realtime")
    assert info.value.status == 404


async def test_max_message_size_closes_with_1009(aiohttp_server, defective):
    base = await _proxy(aiohttp_server, defective.url, limits=Limits(max_event_bytes=1024))
    session, ws = await _ws(base)
    try:
        await _until(ws, "session.created")
        await ws.send_str(json.dumps({"type": "conversation.item.create", "item": {"x": "y" * 4000}}))
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1009
    finally:
        await session.close()


# -- emulate over a scripted chat backend --------------------------------------------------

ENV = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "tiny"}


def chat_text(*parts, usage=True):
    out = [sse({**ENV, "choices": [{"index": 0, "delta": {"role": "assistant", "content": p}}]}) for p in parts]
    out.append(sse({**ENV, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    if usage:
        out.append(sse({**ENV, "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 3,
                                                        "total_tokens": 14,
                                                        "prompt_tokens_details": {"cached_tokens": 8}}}))
    return out + [b"data: [DONE]\n\n", "eof"]


def chat_tool_without_ids():
    """llama-server-like: a tool call whose later fragments lack id/name, no finish_reason."""
    call = {"index": 0, "id": "call_7", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    return [sse({**ENV, "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [call]}}]}),
            sse({**ENV, "choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": '{"city":'}}]}}]}),
            sse({**ENV, "choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": ' "Paris"}'}}]}}]}),
            sse({**ENV, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
            b"data: [DONE]\n\n", "eof"]


async def _emulate(aiohttp_server, upstream, **cfg):
    up = await aiohttp_server(upstream.app)
    return await _proxy(aiohttp_server, str(up.make_url("")).rstrip("/"), realtime="emulate", **cfg)


async def test_emulate_text_response_event_sequence(aiohttp_server):
    chat = Scripted(chat_text("Hel", "lo"))
    base = await _emulate(aiohttp_server, chat)
    session, ws = await _ws(base)
    try:
        got = await _until(ws, "session.created")
        await ws.send_str(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "instructions": "Be brief.", "output_modalities": ["text"],
            "max_output_tokens": 50, "temperature": 0.2}}))
        await ws.send_str(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}}))
        await ws.send_str(json.dumps({"type": "response.create", "response": {"metadata": {"k": "v"}}}))
        got += await _until(ws, "response.done")
    finally:
        await ws.close()
        await session.close()
    assert [e["type"] for e in got] == [
        "session.created", "session.updated", "conversation.item.added", "conversation.item.done",
        "response.created", "response.output_item.added", "conversation.item.added",
        "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "conversation.item.done", "response.done"]
    for e in got:
        validate(e)
    done = got[-1]["response"]
    assert done["status"] == "completed" and done["metadata"] == {"k": "v"}
    assert done["output"][0]["content"] == [{"type": "output_text", "text": "Hello"}]
    assert done["usage"]["input_tokens"] == 11 and done["usage"]["output_tokens"] == 3
    assert done["usage"]["input_token_details"]["cached_tokens"] == 8
    sent = json.loads(chat.received[0][3])
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert sent["stream"] is True and sent["max_tokens"] == 50 and sent["temperature"] == 0.2
    assert chat.received[0][1] == "/v1/chat/completions"


async def test_emulate_tool_call_then_tool_result_goes_to_chat(aiohttp_server):
    chat = Scripted(chat_tool_without_ids())
    base = await _emulate(aiohttp_server, chat)
    session, ws = await _ws(base)
    try:
        await _until(ws, "session.created")
        from .realtime_support import TOOL
        await ws.send_str(json.dumps({"type": "session.update", "session": {"type": "realtime", "tools": [TOOL]}}))
        await ws.send_str(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]}}))
        await ws.send_str(json.dumps({"type": "response.create", "response": {"tool_choice": "required"}}))
        got = await _until(ws, "response.done")
        for e in got:
            validate(e)
        assert [e["type"] for e in got][-9:] == [
            "response.created", "response.output_item.added", "conversation.item.added",
            "response.function_call_arguments.delta", "response.function_call_arguments.delta",
            "response.function_call_arguments.done", "response.output_item.done", "conversation.item.done",
            "response.done"]
        item = next(e for e in got if e["type"] == "response.output_item.done")["item"]
        assert item["call_id"] == "call_7" and json.loads(item["arguments"]) == {"city": "Paris"}
        sent = json.loads(chat.received[0][3])
        assert sent["tool_choice"] == "required"
        assert sent["tools"] == [{"type": "function", "function": {k: TOOL[k] for k in
                                                                   ("name", "description", "parameters")}}]
        await ws.send_str(json.dumps({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": "call_7", "output": "sunny"}}))
        await ws.send_str(json.dumps({"type": "response.create"}))
        await _until(ws, "response.done")
        sent = json.loads(chat.received[1][3])
        assert sent["messages"][1:] == [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_7", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_7", "content": "sunny"}]
    finally:
        await ws.close()
        await session.close()


async def _session(base, *events, until="response.done", headers=None):
    """Connect, send ``events``, collect the server events up to ``until`` (after session.created)."""
    session, ws = await _ws(base, headers=headers)
    try:
        await _until(ws, "session.created")
        for e in events:
            await ws.send_str(json.dumps(e))
        return await _until(ws, until)
    finally:
        await ws.close()
        await session.close()


USER = {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                     "content": [{"type": "input_text", "text": "Hi"}]}}


@pytest.mark.parametrize("event, param", [
    ({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["audio"]}},
     "session.output_modalities"),
    ({"type": "response.create", "response": {"output_modalities": ["audio"]}}, "response.output_modalities"),
    ({"type": "input_audio_buffer.append", "audio": "AAAA"}, "type"),
    ({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
        {"type": "input_audio", "audio": "AAAA"}]}}, "item.content[0].type"),
])
async def test_emulate_refuses_audio_naming_the_modality(aiohttp_server, event, param):
    chat = Scripted(chat_text("x"))
    base = await _emulate(aiohttp_server, chat)
    got = await _session(base, {**event, "event_id": "evt_1"}, until="error")
    err = got[-1]["error"]
    assert (err["code"], err["param"], err["event_id"]) == ("unsupported_modality", param, "evt_1")
    assert "text only" in err["message"] and "audio" in err["message"]
    validate(got[-1])
    assert chat.received == []


async def test_emulate_beta_names_with_openai_beta_header(aiohttp_server):
    base = await _emulate(aiohttp_server, Scripted(chat_text("Hi")))
    got = await _session(base, USER, {"type": "response.create"}, headers={"OpenAI-Beta": "realtime=v1"})
    types = [e["type"] for e in got]
    assert types == ["conversation.item.created", "response.created", "response.output_item.added",
                     "conversation.item.created", "response.content_part.added", "response.text.delta",
                     "response.text.done", "response.content_part.done", "response.output_item.done",
                     "response.done"]
    assert got[-1]["response"]["output"][0]["content"] == [{"type": "text", "text": "Hi"}]
    assert got[-1]["response"]["modalities"] == ["text"]


async def test_emulate_cancel_stops_the_upstream_at_once(aiohttp_server):
    chat = Scripted([sse({**ENV, "choices": [{"index": 0, "delta": {"content": "Once"}}]}), "hold"])
    base = await _emulate(aiohttp_server, chat)
    session, ws = await _ws(base)
    try:
        await _until(ws, "session.created")
        await ws.send_str(json.dumps(USER))
        await ws.send_str(json.dumps({"type": "response.create"}))
        await _until(ws, "response.output_text.delta")
        await ws.send_str(json.dumps({"type": "response.cancel"}))
        got = await _until(ws, "response.done")
        await asyncio.wait_for(chat.closed.wait(), 2)        # the upstream request is gone
        assert [e["type"] for e in got] == ["response.output_text.done", "response.content_part.done",
                                            "response.output_item.done", "conversation.item.done",
                                            "response.done"]
        resp = got[-1]["response"]
        assert resp["status"] == "cancelled" and resp["status_details"]["reason"] == "client_cancelled"
        assert resp["output"][0]["status"] == "incomplete"
        await ws.send_str(json.dumps({"type": "response.cancel", "event_id": "evt_9"}))
        err = (await _until(ws, "error"))[-1]["error"]
        assert err["code"] == "response_cancel_not_active" and err["event_id"] == "evt_9"
    finally:
        await ws.close()
        await session.close()


async def test_emulate_upstream_gone_mid_response_is_error_and_failed(aiohttp_server):
    chat = Scripted([sse({**ENV, "choices": [{"index": 0, "delta": {"content": "Once"}}]}), 0.05, "reset"])
    base = await _emulate(aiohttp_server, chat)
    got = await _session(base, USER, {"type": "response.create"})
    types = [e["type"] for e in got]
    assert types[-6:] == ["error", "response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "conversation.item.done", "response.done"]
    err = got[-6]["error"]
    assert err["type"] == "server_error" and err["code"] == "upstream_disconnected"
    assert got[-1]["response"]["status"] == "failed"
    assert got[-1]["response"]["status_details"]["error"]["code"] == "upstream_disconnected"
    for e in got:
        validate(e)


async def test_emulate_upstream_http_error_is_error_and_failed(aiohttp_server):
    chat = Scripted([b'{"error": {"message": "model not found"}}', "eof"], status=404,
                    content_type="application/json")
    base = await _emulate(aiohttp_server, chat)
    got = await _session(base, USER, {"type": "response.create"})
    assert [e["type"] for e in got] == ["conversation.item.added", "conversation.item.done", "response.created",
                                        "error", "response.done"]
    assert "HTTP 404" in got[3]["error"]["message"] and "model not found" in got[3]["error"]["message"]
    assert got[-1]["response"]["status"] == "failed"


async def test_emulate_conversation_items_delete_retrieve_truncate(aiohttp_server):
    chat = Scripted(chat_text("ok"))
    base = await _emulate(aiohttp_server, chat)
    item = lambda i, text, role="user": {"type": "conversation.item.create", "item": {  # noqa: E731
        "id": i, "type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}}
    got = await _session(
        base, item("a", "one"), item("c", "three"),
        {**item("b", "two"), "previous_item_id": "a"}, {**item("z", "zero"), "previous_item_id": "root"},
        {"type": "conversation.item.delete", "item_id": "c"},
        {"type": "conversation.item.retrieve", "item_id": "b"},
        {"type": "conversation.item.delete", "item_id": "nope", "event_id": "evt_x"},
        {"type": "conversation.item.create", "item": {"id": "a", "type": "message", "role": "user",
                                                       "content": []}},
        {"type": "response.create"})
    for e in got:
        validate(e)
    added = [(e["item"]["id"], e["previous_item_id"]) for e in got if e["type"] == "conversation.item.added"]
    assert added[:4] == [("a", None), ("c", "a"), ("b", "a"), ("z", None)]
    assert next(e for e in got if e["type"] == "conversation.item.deleted")["item_id"] == "c"
    assert next(e for e in got if e["type"] == "conversation.item.retrieved")["item"]["id"] == "b"
    errors = [e["error"] for e in got if e["type"] == "error"]
    assert [(e["code"], e["event_id"]) for e in errors] == [("item_not_found", "evt_x"),
                                                             ("item_create_duplicate_item_id", None)]
    sent = json.loads(chat.received[0][3])
    assert [m["content"] for m in sent["messages"]] == ["zero", "one", "two"]


async def test_emulate_one_response_at_a_time_and_out_of_band(aiohttp_server):
    chat = Scripted([sse({**ENV, "choices": [{"index": 0, "delta": {"content": "x"}}]}), 0.3,
                     *chat_text("y")])
    base = await _emulate(aiohttp_server, chat)
    got = await _session(base, USER, {"type": "response.create", "response": {"conversation": "none"}},
                         {"type": "response.create"})
    err = next(e for e in got if e["type"] == "error")["error"]
    assert err["code"] == "conversation_already_has_active_response"
    # out of band: no conversation.item.* for its output, no conversation_id
    after = got[[e["type"] for e in got].index("response.created"):]
    assert not [e for e in after if e["type"].startswith("conversation.item.")]
    assert got[-1]["response"]["conversation_id"] is None


async def test_emulate_metrics_per_connection(aiohttp_server):
    up = await aiohttp_server(Scripted(chat_text("Hel", "lo")).app)
    app = create_app(Config(upstream=str(up.make_url("")).rstrip("/"), realtime="emulate"))
    server = await aiohttp_server(app)
    base = str(server.make_url("/v1"))
    await _session(base, USER, {"type": "response.create"})
    async with aiohttp.ClientSession() as s:
        text = await (await s.get(base.removesuffix("/v1") + "/sse-fixup/metrics")).text()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert 'sse_fixup_realtime_connections_total{mode="emulate"} 1.0' in lines
    assert 'sse_fixup_realtime_responses_total{mode="emulate",status="completed"} 1.0' in lines
    assert 'sse_fixup_tokens_total{kind="input",model="tiny"} 11.0' in lines
    assert 'sse_fixup_tokens_total{kind="cached",model="tiny"} 8.0' in lines
    assert any(line.startswith('sse_fixup_ttft_seconds_count{endpoint="realtime",model="tiny"} 1.0')
               for line in lines)


async def test_emulate_idle_client_is_closed(aiohttp_server):
    up = await aiohttp_server(Scripted(chat_text("x")).app)
    base = await _proxy(aiohttp_server, str(up.make_url("")).rstrip("/"), realtime="emulate",
                        timeouts=Timeouts(idle=0.3))
    session, ws = await _ws(base)
    try:
        await _until(ws, "session.created")
        msg = await asyncio.wait_for(ws.receive(), 3)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
    finally:
        await session.close()


async def test_forward_idle_closes_both_sides(aiohttp_server, defective):
    base = await _proxy(aiohttp_server, defective.url, timeouts=Timeouts(idle=0.3))
    session, ws = await _ws(base)
    try:
        await _until(ws, "session.created")
        msg = await asyncio.wait_for(ws.receive(), 3)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
        for _ in range(40):
            if defective.closed_with:
                break
            await asyncio.sleep(0.05)
        assert defective.closed_with and defective.closed_with[0][0] == 1001
    finally:
        await session.close()


# -- the real llama-server behind realtime: emulate ------------------------------------------


@pytest.mark.llama
async def test_llama_emulate_openai_python_tool_call_then_text(llama, aiohttp_server):
    base = await _proxy(aiohttp_server, llama, realtime="emulate")
    out = await openai_turns(base)
    assert out["invalid"] == [], out["invalid"]
    call = out["call"]
    assert call and call["item_id"].startswith("item_") and call["call_id"] and call["name"] == "get_weather"
    assert isinstance(call["arguments"], dict) and isinstance(call["arguments"].get("city"), str), call
    assert out["status"][0] == "completed" and out["status"][1] in ("completed", "incomplete"), out["status"]
    assert out["text"].strip(), out


@pytest.mark.llama
async def test_llama_emulate_livekit_tool_call_then_text(llama, aiohttp_server):
    base = await _proxy(aiohttp_server, llama, realtime="emulate")
    out = await livekit_turns(base)
    assert out["errors"] == [], out
    assert out["calls"] and out["calls"][0]["name"] == "get_weather" and out["calls"][0]["id"].startswith("item_")
    assert isinstance(out["calls"][0]["arguments"].get("city"), str)
    assert out["text"].strip(), out
    responses = [m for m in out["metrics"] if str(getattr(m, "request_id", "")).startswith("resp_")]
    assert len(responses) == 2 and all(m.input_tokens > 0 and m.output_tokens > 0 for m in responses)
    assert all(m.ttft > 0 for m in responses[1:]), responses   # the text answer's first token
