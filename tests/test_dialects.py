"""App-frontend dialects (issue 14): NDJSON, the AI SDK UI message stream, status events.

A stream in (a scripted upstream, chat or Responses SSE, or a JSON body), the exact lines or
chunks out; every fault of the README's failure table ends an NDJSON stream in one error
line; an NDJSON body read split at every byte assembles to the same lines."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest

from sse_fixup.config import Config, Limits, Status, Timeouts, parse as parse_config
from sse_fixup.dialects.usechat import UIRequestError, chat_request
from sse_fixup.routes import Router
from sse_fixup.rules.base import RequestInfo
from sse_fixup.transform import SSEWriter

from .helpers import CHAT, RESP, parse, start
from .upstreams import Scripted, chat_events, resp_events, sse

ENV = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "tiny"}


def chunk(delta=None, finish=None, **extra):
    return sse({**ENV, "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}], **extra})


CALL = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
CHAT_TOOL_STREAM = [
    chunk({"role": "assistant", "reasoning_content": "The user wants"}),
    chunk({"reasoning_content": " weather."}),
    chunk({"content": "Let me check."}),
    chunk({"tool_calls": [CALL]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    chunk(finish="tool_calls"),
    sse({**ENV, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}),
    b"data: [DONE]\n\n", "eof"]

USAGE = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}


def lines(body: bytes) -> list:
    assert body.endswith(b"\n"), body
    return [json.loads(x) for x in body.split(b"\n")[:-1]]


def assemble(pieces) -> list:
    """What a correct NDJSON reader makes of the reads: lines only once whole."""
    buf, out = b"", []
    for piece in pieces:
        buf += piece
        *whole, buf = buf.split(b"\n")
        out += [json.loads(x) for x in whole]
    assert buf == b""
    return out


# -- NDJSON ---------------------------------------------------------------------------

async def test_ndjson_from_a_chat_stream_with_a_tool_call(aiohttp_server, aiohttp_client):
    up = Scripted(CHAT_TOOL_STREAM)
    client = await start(aiohttp_server, aiohttp_client, up, output="ndjson", ndjson_reasoning=True)
    resp = await client.post("/v1/chat/completions", json={**CHAT, "stream": False})
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    assert lines(await resp.read()) == [
        {"event": "analyzing"},
        {"event": "reasoning", "content": "The user wants"},
        {"event": "reasoning", "content": " weather."},
        {"event": "answering", "content": "Let me check."},
        {"event": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}},
        {"event": "completed", "finish_reason": "tool_calls", "usage": USAGE}]
    assert json.loads(up.received[0][3])["stream"] is True      # a dialect always streams upstream


async def test_ndjson_from_a_responses_stream(aiohttp_server, aiohttp_client):
    done = {"type": "response.completed", "response": {"id": "resp_x", "status": "completed",
                                                       "usage": {"input_tokens": 3, "output_tokens": 3}}}
    up = Scripted([*resp_events(2), sse(done, "response.completed"), "eof"])
    client = await start(aiohttp_server, aiohttp_client, up, output="ndjson",
                         status=Status(start={"event": "thinking", "step": 1}, end={"event": "done"}))
    resp = await client.post("/v1/responses", json=RESP)
    assert lines(await resp.read()) == [
        {"event": "thinking", "step": 1},
        {"event": "answering", "content": "t0"}, {"event": "answering", "content": "t1"},
        {"event": "done", "finish_reason": "stop", "usage": {   # completed by responses.usage
            "input_tokens": 3, "output_tokens": 3, "total_tokens": 6,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0}}}]


async def test_ndjson_from_a_json_body(aiohttp_server, aiohttp_client):
    body = {"id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "tiny",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "Hello there."}}], "usage": USAGE}
    up = Scripted([orjson.dumps(body), "eof"], content_type="application/json")
    client = await start(aiohttp_server, aiohttp_client, up, output="ndjson", upstream_stream="never")
    resp = await client.post("/v1/chat/completions", json=CHAT)
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    assert lines(await resp.read()) == [
        {"event": "analyzing"}, {"event": "answering", "content": "Hello there."},
        {"event": "completed", "finish_reason": "stop", "usage": USAGE}]


@pytest.mark.parametrize("how", ["header", "accept"])
async def test_a_client_asks_for_ndjson_by_header(aiohttp_server, aiohttp_client, how):
    client = await start(aiohttp_server, aiohttp_client, Scripted([*chat_events(1), chunk(finish="stop"),
                                                                   b"data: [DONE]\n\n", "eof"]))
    headers = {"X-SSE-Fixup-Output": "ndjson"} if how == "header" else {"Accept": "application/x-ndjson"}
    resp = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert [x["event"] for x in lines(await resp.read())] == ["analyzing", "answering", "completed"]
    plain = await client.post("/v1/chat/completions", json=CHAT)          # the others: SSE as ever
    assert plain.headers["Content-Type"] == "text/event-stream"


async def test_ndjson_read_split_at_every_byte(aiohttp_server, aiohttp_client):
    """The Express bug: JSON.parse on each network read's pieces.  Whole lines only, so a
    reader that buffers to "\\n" gets the same lines however the body is cut - and the body
    read one byte at a time over the socket too."""
    client = await start(aiohttp_server, aiohttp_client, Scripted(CHAT_TOOL_STREAM), output="ndjson")
    resp = await client.post("/v1/chat/completions", json=CHAT)
    pieces = [b async for b in resp.content.iter_chunked(1)]
    body = b"".join(pieces)
    want = lines(body)
    assert assemble(pieces) == want and len(want) == 4
    for i in range(1, len(body)):
        assert assemble([body[:i], body[i:]]) == want, i
    with pytest.raises(ValueError):             # what the naive per-read parser does
        [json.loads(p) for p in body[:20].split(b"\n") if p]


def _faults():
    half = [*chat_events(2)]
    big = sse({**ENV, "choices": [{"index": 0, "delta": {"content": "x" * 5000}}]})
    return {
        "upstream_disconnected": (Scripted([*half, "reset"]), {}),
        "upstream_incomplete": (Scripted([*half, "eof"]), {}),
        "upstream_idle_timeout": (Scripted([*half, "hold"]), {"timeouts": Timeouts(idle=0.3, keepalive=None)}),
        "upstream_timeout": (Scripted([3.0, *half, "eof"]), {"timeouts": Timeouts(first_byte=0.3, keepalive=None)}),
        "event_too_large": (Scripted([*half, big, "eof"]), {"limits": Limits(max_event_bytes=1024)}),
    }


@pytest.mark.parametrize("code", list(_faults()))
async def test_every_stream_fault_ends_ndjson_in_one_error_line(aiohttp_server, aiohttp_client, code):
    up, cfg = _faults()[code]
    client = await start(aiohttp_server, aiohttp_client, up, output="ndjson", **cfg)
    resp = await client.post("/v1/chat/completions", json=CHAT)
    got = lines(await asyncio.wait_for(resp.read(), 5))
    assert got[-1]["event"] == "error" and got[-1]["code"] == code, got
    assert [x["event"] for x in got[:-1]] == ["analyzing"] + ["answering"] * (len(got) - 2)
    assert "completed" not in [x["event"] for x in got]


async def test_shutdown_ends_ndjson_in_an_error_line(aiohttp_server, aiohttp_client):
    from sse_fixup.proxy import WATCH
    from sse_fixup.rules.base import Fault
    client = await start(aiohttp_server, aiohttp_client, Scripted([*chat_events(1), "hold"]), output="ndjson")
    resp = await client.post("/v1/chat/completions", json=CHAT)
    assert json.loads(await resp.content.readline()) == {"event": "analyzing"}
    assert json.loads(await resp.content.readline())["event"] == "answering"
    client.server.app[WATCH].abort_all(Fault("proxy_shutdown", "the proxy is shutting down"))
    assert lines(await asyncio.wait_for(resp.read(), 5)) == [
        {"event": "error", "code": "proxy_shutdown", "message": "sse-fixup: the proxy is shutting down"}]


@pytest.mark.parametrize("case", ["backend_400", "unreachable", "too_large", "bad_key", "no_headers"])
async def test_refused_and_failed_requests_are_ndjson_errors_too(aiohttp_server, aiohttp_client, case):
    from sse_fixup.config import Auth
    from sse_fixup.proxy import create_app
    cfg = {"output": "ndjson"}
    up = Scripted([b'{"error": {"code": 400, "message": "\'type\' of tool must be \'function\'", '
                   b'"type": "invalid_request_error"}}', "eof"], status=400, content_type="application/json")
    if case == "unreachable":
        client = await aiohttp_client(create_app(Config(upstream="http://127.0.0.1:9", **cfg)))
    else:
        cfg |= {"too_large": {"limits": Limits(max_request_bytes=1024)}, "bad_key": {"auth": Auth(api_keys=["k"])},
                "no_headers": {"timeouts": Timeouts(first_byte=0.3)}}.get(case, {})
        if case == "no_headers":
            up = Scripted(["eof"], headers_delay=2)
        client = await start(aiohttp_server, aiohttp_client, up, **cfg)
    body = {**CHAT, "pad": "x" * 2000} if case == "too_large" else CHAT
    resp = await client.post("/v1/chat/completions", json=body)
    status = {"backend_400": 400, "unreachable": 502, "too_large": 413, "bad_key": 401, "no_headers": 504}[case]
    assert resp.status == status and resp.headers["Content-Type"].startswith("application/x-ndjson")
    got = lines(await resp.read())
    assert len(got) == 1 and got[0]["event"] == "error", got
    if case == "backend_400":
        assert got[0]["message"] == "'type' of tool must be 'function'"


async def test_ndjson_keepalive_is_a_line_too(aiohttp_server, aiohttp_client):
    """An SSE comment would break an NDJSON reader: upstream silence gets a JSON line."""
    up = Scripted([*chat_events(1), 0.35, chunk(finish="stop"), b"data: [DONE]\n\n", "eof"])
    client = await start(aiohttp_server, aiohttp_client, up, output="ndjson", timeouts=Timeouts(keepalive=0.1))
    got = lines(await (await client.post("/v1/chat/completions", json=CHAT)).read())
    events = [x["event"] for x in got]
    assert events[:2] == ["analyzing", "answering"] and events[-1] == "completed"
    assert set(events[2:-1]) == {"keepalive"}, events


@pytest.mark.parametrize("output", ["ndjson", "ui-message-stream"])
def test_arguments_that_do_not_parse(output):
    bad = [chunk({"tool_calls": [{**CALL, "function": {"name": "f", "arguments": '{"city": "Par'}}]}),
           chunk(finish="tool_calls"), b"data: [DONE]\n\n"]
    t = Router(Config()).route("/v1/x").open(RequestInfo("chat", "/v1/x", CHAT), "stream", output=output)
    out = t.feed(b"".join(bad)) + t.close()
    if output == "ndjson":
        assert lines(out)[0] == {"event": "tool_call", "id": "call_1", "name": "f", "arguments": None,
                                 "raw_arguments": '{"city": "Par'}
    else:
        err = [c for c in parse(out) if isinstance(c, dict) and c["type"] == "tool-input-error"]
        assert err and err[0]["input"] == '{"city": "Par'


def test_the_default_writer_keeps_the_fast_path():
    route = Router(Config()).route("/v1/x")
    t = route.open(RequestInfo("chat", "/v1/x", CHAT), "stream")
    assert type(t.stages[-1]) is SSEWriter and t._skim is not None and t.verbatim
    t = Router(Config(status=Status(sse="comment"))).route("/v1/x").open(RequestInfo("chat", "/v1/x", CHAT), "stream")
    assert t._skim is not None and t.head() == b": status analyzing\n\n"


# -- the UI message stream ------------------------------------------------------------

def ui_chunks(body: bytes) -> list:
    return parse(body)


async def test_ui_message_stream_from_a_chat_stream(aiohttp_server, aiohttp_client, fixed_clock):
    client = await start(aiohttp_server, aiohttp_client, Scripted(CHAT_TOOL_STREAM), output="ui-message-stream")
    resp = await client.post("/v1/chat/completions", json=CHAT)
    assert resp.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert ui_chunks(await resp.read()) == [
        {"type": "start", "messageId": "msg_" + "1".rjust(24, "0")}, {"type": "start-step"},
        {"type": "reasoning-start", "id": "reasoning-1"},
        {"type": "reasoning-delta", "id": "reasoning-1", "delta": "The user wants"},
        {"type": "reasoning-delta", "id": "reasoning-1", "delta": " weather."},
        {"type": "reasoning-end", "id": "reasoning-1"},
        {"type": "text-start", "id": "text-2"},
        {"type": "text-delta", "id": "text-2", "delta": "Let me check."},
        {"type": "text-end", "id": "text-2"},
        {"type": "tool-input-start", "toolCallId": "call_1", "toolName": "get_weather"},
        {"type": "tool-input-delta", "toolCallId": "call_1", "inputTextDelta": '{"city": '},
        {"type": "tool-input-delta", "toolCallId": "call_1", "inputTextDelta": '"Paris"}'},
        {"type": "tool-input-available", "toolCallId": "call_1", "toolName": "get_weather",
         "input": {"city": "Paris"}},
        {"type": "finish-step"}, {"type": "finish", "finishReason": "tool-calls"}, "[DONE]"]


async def test_ui_message_stream_cut_short_ends_in_an_error_chunk(aiohttp_server, aiohttp_client):
    client = await start(aiohttp_server, aiohttp_client, Scripted([*chat_events(1), "reset"]),
                         output="ui-message-stream")
    got = ui_chunks(await (await client.post("/v1/chat/completions", json=CHAT)).read())
    assert [c["type"] if isinstance(c, dict) else c for c in got] == [
        "start", "start-step", "text-start", "text-delta", "text-end", "error", "finish", "[DONE]"]
    assert "closed the stream" in got[5]["errorText"] and got[6]["finishReason"] == "error"


UI_BODY = {"id": "chat-1", "trigger": "submit-message", "model": "tiny", "temperature": 0.2,
           "messages": [
               {"id": "s", "role": "system", "parts": [{"type": "text", "text": "Be brief."}]},
               {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Weather in Paris?"}]},
               {"id": "a1", "role": "assistant", "parts": [
                   {"type": "step-start"},
                   {"type": "reasoning", "text": "need the tool"},
                   {"type": "text", "text": "Checking."},
                   {"type": "tool-get_weather", "toolCallId": "call_1", "state": "output-available",
                    "input": {"city": "Paris"}, "output": {"temp_c": 21}},
                   {"type": "step-start"},
                   {"type": "text", "text": "It is 21 C."}]},
               {"id": "u2", "role": "user", "parts": [{"type": "text", "text": "Thanks"}]}]}


def test_usechat_request_becomes_a_chat_request():
    assert chat_request(UI_BODY, "route-model") == {
        "model": "tiny", "temperature": 0.2, "stream": True, "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c":21}'},
            {"role": "assistant", "content": "It is 21 C."},
            {"role": "user", "content": "Thanks"}]}
    assert chat_request({"messages": []}, "route-model")["model"] == "route-model"
    with pytest.raises(UIRequestError, match=r"messages\[0\]"):
        chat_request({"messages": [{"role": "tool"}]})


async def test_usechat_posts_to_api_chat(aiohttp_server, aiohttp_client):
    up = Scripted([*chat_events(1), chunk(finish="stop"), b"data: [DONE]\n\n", "eof"])
    client = await start(aiohttp_server, aiohttp_client, up)
    resp = await client.post("/api/chat", json=UI_BODY)
    assert resp.status == 200 and resp.headers["x-vercel-ai-ui-message-stream"] == "v1"
    got = ui_chunks(await resp.read())
    assert got[-2] == {"type": "finish", "finishReason": "stop"} and got[-1] == "[DONE]"
    method, path, _, sent = up.received[0]
    assert path == "/v1/chat/completions"
    assert json.loads(sent)["messages"][-1] == {"role": "user", "content": "Thanks"}
    bad = await client.post("/api/chat", json={"messages": "nope"})
    assert bad.status == 400 and (await bad.text()).startswith("invalid_ui_request: sse-fixup: /api/chat")


def test_ui_path_is_a_route_key():
    cfg = parse_config("ui_path: /chat\nroutes:\n  - match: {path: /x/*}\n    ui_path: /x/chat\n")
    assert Router(cfg).ui_paths == {"/chat", "/x/chat"}


# -- status events in the SSE dialects ------------------------------------------------

async def test_status_comments_in_a_chat_stream(aiohttp_server, aiohttp_client):
    up = Scripted([*chat_events(1), chunk(finish="stop"), b"data: [DONE]\n\n", "eof"])
    client = await start(aiohttp_server, aiohttp_client, up, status=Status(sse="comment"))
    body = await (await client.post("/v1/chat/completions", json=CHAT)).read()
    assert body.startswith(b": status analyzing\n\n") and body.endswith(b"data: [DONE]\n\n: status completed\n\n")


async def test_status_data_events_in_a_responses_stream(aiohttp_server, aiohttp_client):
    done = {"type": "response.completed", "response": {"id": "resp_x", "status": "completed"}}
    up = Scripted([*resp_events(1), sse(done, "response.completed"), "eof"])
    client = await start(aiohttp_server, aiohttp_client, up, status=Status(sse="data"))
    body = await (await client.post("/v1/responses", json=RESP)).read()
    assert body.startswith(b'event: status\ndata: {"event":"analyzing"}\n\n')
    assert body.endswith(b'event: status\ndata: {"event":"completed"}\n\n')


# -- the real AI SDK: useChat's transport and readUIMessageStream ---------------------

async def run_ui(spec: dict) -> dict:
    import shutil
    from .helpers import NODE_DIR
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "ai").exists():
        pytest.fail("Node.js and the AI SDK are needed (npm ci in tests/clients/node)")
    proc = await asyncio.create_subprocess_exec(
        node, str(NODE_DIR / "ui.mjs"), json.dumps(spec), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=NODE_DIR)
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


USER = [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "Weather in Paris?"}]}]


@pytest.mark.node
async def test_usechat_transport_assembles_text_reasoning_and_tool_parts(aiohttp_server, aiohttp_client):
    up = Scripted(CHAT_TOOL_STREAM)
    client = await start(aiohttp_server, aiohttp_client, up)
    r = await run_ui({"api": str(client.make_url("/api/chat")), "body": {"model": "tiny"}, "messages": USER})
    assert r["errors"] == [], r
    parts = r["rounds"][0]["parts"]
    assert [p["type"] for p in parts] == ["step-start", "reasoning", "text", "tool-get_weather"]
    assert parts[1]["text"] == "The user wants weather." and parts[1]["state"] == "done"
    assert parts[2] == {"type": "text", "text": "Let me check.", "state": "done"}
    assert parts[3]["toolCallId"] == "call_1" and parts[3]["input"] == {"city": "Paris"}
    assert parts[3]["state"] == "input-available"
    assert json.loads(up.received[0][3])["model"] == "tiny"


@pytest.mark.node
async def test_usechat_transport_reports_a_cut_stream_as_an_error(aiohttp_server, aiohttp_client):
    client = await start(aiohttp_server, aiohttp_client, Scripted([*chat_events(1), "reset"]))
    r = await run_ui({"api": str(client.make_url("/api/chat")), "messages": USER})
    assert any("closed the stream before it was complete" in e for e in r["errors"]), r


# -- the real llama-server ------------------------------------------------------------


async def _llama_proxy(aiohttp_server, llama, **cfg):
    from sse_fixup.proxy import create_app
    return await aiohttp_server(create_app(Config(upstream=llama, **cfg)))


async def _ndjson(url: str, path: str, body: dict) -> tuple[list, list]:
    """POST, read the NDJSON body one byte per read; (lines, reads)."""
    import aiohttp
    async with aiohttp.ClientSession() as s:
        async with s.post(url + path, json=body, headers={"X-SSE-Fixup-Output": "ndjson"}) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/x-ndjson"
            pieces = [b async for b in resp.content.iter_chunked(1)]
    return assemble(pieces), pieces


@pytest.mark.llama
async def test_llama_ndjson_text(aiohttp_server, llama):
    proxy = await _llama_proxy(aiohttp_server, llama)
    got, _ = await _ndjson(str(proxy.make_url("")), "/v1/chat/completions",
                           {"model": "tiny", "messages": [{"role": "user", "content": "Say hello"}],
                            "max_tokens": 24})
    assert got[0] == {"event": "analyzing"}
    assert got[-1]["event"] == "completed" and got[-1]["finish_reason"] in ("stop", "length"), got
    assert got[-1]["usage"]["completion_tokens"] > 0
    middle = got[1:-1]
    assert middle and all(x["event"] == "answering" and isinstance(x["content"], str) for x in middle), got


@pytest.mark.llama
@pytest.mark.parametrize("endpoint", ["chat", "responses"])
async def test_llama_ndjson_tool_call(aiohttp_server, llama, endpoint, tmp_path):
    from sse_fixup.config import Answers as AnswersKeys
    from .helpers import TOOL_CHAT, TOOL_RESP
    sink = tmp_path / "answers.jsonl"
    proxy = await _llama_proxy(aiohttp_server, llama, answers=AnswersKeys(jsonl=str(sink)))
    if endpoint == "chat":
        path, body = "/v1/chat/completions", {"model": "tiny", "tools": [TOOL_CHAT], "tool_choice": "required",
                                              "messages": [{"role": "user", "content": "What is the weather in Paris?"}]}
    else:
        path, body = "/v1/responses", {"model": "tiny", "tools": [TOOL_RESP], "tool_choice": "required",
                                       "input": "What is the weather in Paris?"}
    got, _ = await _ndjson(str(proxy.make_url("")), path, body)
    calls = [x for x in got if x["event"] == "tool_call"]
    assert calls and all(c["name"] == "get_weather" and isinstance(c["arguments"]["city"], str)
                         for c in calls), got
    assert got[-1]["event"] == "completed" and got[-1]["finish_reason"] == "tool_calls", got
    # the sink got the same answer, assembled
    for _ in range(100):
        if sink.exists() and sink.read_text():
            break
        await asyncio.sleep(0.05)
    rec = json.loads(sink.read_text().splitlines()[0])
    assert [c["arguments"] for c in rec["tool_calls"]] == [c["arguments"] for c in calls]
    assert rec["finish_reason"] == "tool_calls" and rec["fault"] is None and rec["endpoint"] == endpoint
    assert rec["timings"]["first_token_ms"] is not None


@pytest.mark.llama
@pytest.mark.node
async def test_llama_usechat_tool_round_trip(aiohttp_server, llama):
    """useChat's transport through the proxy to llama-server: a tool call, then (with the
    tool's output in the UI messages) the answer - assembled, nothing raised."""
    from .helpers import TOOL_CHAT
    proxy = await _llama_proxy(aiohttp_server, llama)
    r = await run_ui({"api": str(proxy.make_url("/api/chat")),
                      "body": {"model": "tiny", "tools": [TOOL_CHAT], "max_tokens": 64},
                      "messages": [{"id": "u1", "role": "user",
                                    "parts": [{"type": "text", "text": "What is the weather in Paris?"}]}],
                      "toolOutput": {"temp_c": 21}})
    assert r["errors"] == [], r
    first = r["rounds"][0]["parts"]
    tools = [p for p in first if p["type"] == "tool-get_weather"]
    assert tools and isinstance(tools[0]["input"]["city"], str), first
    assert len(r["rounds"]) == 2
    second = r["rounds"][1]["parts"]
    assert any(p["type"] == "text" and p["text"] for p in second), second


# -- which strict clients tolerate status events (the README's table) ------------------

async def _status_proxy(aiohttp_server, form):
    from sse_fixup.proxy import create_app
    from .captures import FakeLlama
    up = await aiohttp_server(FakeLlama().app)
    proxy = await aiohttp_server(create_app(Config(upstream=str(up.make_url("")).rstrip("/"),
                                                   status=Status(sse=form))))
    return str(proxy.make_url("/v1"))


@pytest.mark.node
@pytest.mark.parametrize("form", ["comment", "data"])
@pytest.mark.parametrize("provider", ["responses", "chat", "compatible"])
@pytest.mark.parametrize("sdk", ["current", "legacy"])
async def test_aisdk_with_status_events(aiohttp_server, form, sdk, provider):
    """Measured: comments are ignored by every AI SDK line and provider; a data: status
    event fails each one's chunk schema ("Type validation failed") - the README's table."""
    from .helpers import run_sdk
    url = await _status_proxy(aiohttp_server, form)
    r = await run_sdk(url, sdk=sdk, provider=provider, call="stream", tools=False)
    if form == "comment":
        assert r["errors"] == [] and r["finishReason"] in ("stop", "length"), r
    else:
        assert r["errors"] and r["errors"][0].startswith('Type validation failed: Value: {"event":"analyzing"}'), \
            r["errors"][:1]


@pytest.mark.parametrize("form", ["comment", "data"])
@pytest.mark.parametrize("endpoint", ["chat", "responses"])
async def test_openai_python_with_status_events(aiohttp_server, form, endpoint):
    import openai
    url = await _status_proxy(aiohttp_server, form)
    oa = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
    try:
        if endpoint == "chat":
            text = ""
            async for c in await oa.chat.completions.create(
                    model="tiny", messages=[{"role": "user", "content": "Say hello"}], stream=True):
                if c.choices and c.choices[0].delta.content:
                    text += c.choices[0].delta.content
            outcome = "ok" if text else "no text"
        else:
            async with oa.responses.stream(model="tiny", input="Say hello") as s:
                final = await s.get_final_response()
            outcome = "ok" if final.output_text else "no text"
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    finally:
        await oa.close()
    # measured: the chat iterator skips an object without choices; the Responses stream
    # helper raises on an event before response.created
    if form == "comment" or endpoint == "chat":
        assert outcome == "ok", outcome
    else:
        assert outcome.startswith("RuntimeError: Expected to have received `response.created`"), outcome


def test_usechat_request_becomes_a_responses_request():
    from sse_fixup.dialects.usechat import responses_request
    got = responses_request(UI_BODY)
    assert got["stream"] is True and got["model"] == "tiny" and "messages" not in got
    assert got["input"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": '{"temp_c":21}'},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is 21 C."}]},
        {"role": "user", "content": "Thanks"}]


@pytest.mark.llama
@pytest.mark.node
async def test_llama_usechat_over_the_responses_endpoint(aiohttp_server, llama):
    """ui_endpoint: responses - useChat's request as a Responses request to llama-server
    (its Responses stream fixed by the presets first), the answer as the UI stream."""
    from .helpers import TOOL_RESP
    proxy = await _llama_proxy(aiohttp_server, llama, ui_endpoint="responses")
    r = await run_ui({"api": str(proxy.make_url("/api/chat")),
                      "body": {"model": "tiny", "tools": [TOOL_RESP], "tool_choice": "required"},
                      "messages": USER})
    assert r["errors"] == [], r
    tools = [p for p in r["rounds"][0]["parts"] if p["type"] == "tool-get_weather"]
    assert tools and isinstance(tools[0]["input"]["city"], str), r
