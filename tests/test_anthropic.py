"""upstream_api: anthropic - chat clients in front of an Anthropic Messages backend (issue 12).

The request mapping field by field and its 400s; Anthropic's documented stream shapes in,
the exact chat.completion.chunk stream out, split at every byte; bodies and error bodies;
the proxy in front of a fake upstream (path, the first chunk leaving before the upstream
ends, faults, openai-python and the AI SDK).  At the end, marked llama: the real
llama-server b11434's /v1/messages behind the proxy, driven by the AI SDK (chat and
openai-compatible providers, current and 3.0.41) and openai-python."""

from __future__ import annotations

import asyncio
import json
import sys

import openai
import orjson
import pytest

from sse_fixup.config import Config
from sse_fixup.convert import TranslationError
from sse_fixup.proxy import create_app
from sse_fixup.routes import Router
from sse_fixup.rules.base import RequestInfo

from . import anthropic_support as A
from .helpers import TOOL_CHAT, fixed_ids, parse, run_sdk
from .upstreams import Scripted, chat_events

CHAT = {"model": "claude", "messages": [{"role": "user", "content": "hi"}]}
TOOL_MSG = {"name": "get_weather", "description": "Get the weather",
            "input_schema": TOOL_CHAT["function"]["parameters"]}


def tr(**keys):
    return Router(Config(upstream_api="anthropic", **keys)).route("/v1/chat/completions").translations["chat"]


def request(body: dict, **keys) -> dict:
    return tr(**keys).request(body)


def refused(body: dict) -> TranslationError:
    with pytest.raises(TranslationError) as info:
        request(body)
    return info.value


def run(chunks, req: dict, upstream: str = "stream", client: str | None = None, **keys) -> bytes:
    """What the proxy sends a chat client for an Anthropic answer arriving in ``chunks``."""
    route = Router(Config(upstream_api="anthropic", **keys)).route("/v1/chat/completions")
    t = route.open(RequestInfo("chat", "/v1/chat/completions", req), upstream, client)
    return b"".join(t.feed(c) for c in chunks) + t.close()


def deltas(out: bytes) -> list:
    """Each chunk's (delta, finish_reason), the usage chunk as ("usage", usage), then [DONE]."""
    res = []
    for c in parse(out):
        if isinstance(c, str):
            res.append(c)
        elif "error" in c:
            res.append(("error", c["error"]))
        elif c["choices"]:
            res.append((c["choices"][0]["delta"], c["choices"][0]["finish_reason"]))
        else:
            res.append(("usage", c["usage"]))
    return res


# -- the request ---------------------------------------------------------------------------

def test_request_every_field_mapped():
    body = {
        "model": "claude-sonnet-4-5", "stream": True, "stream_options": {"include_usage": True},
        "max_completion_tokens": 300, "temperature": 0.2, "top_p": 0.9, "stop": "END",
        "user": "u1", "seed": 7, "parallel_tool_calls": False,
        "tools": [TOOL_CHAT], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is on this picture, and the weather?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]},
            {"role": "assistant", "content": "Checking.", "reasoning_content": "hm",
             "tool_calls": [{"id": "call_1", "type": "function",
                             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
                            {"id": "call_2", "type": "function",
                             "function": {"name": "get_weather", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\": 21}"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "cloudy"}]},
            {"role": "user", "content": "Thanks"},
            {"role": "assistant", "content": None, "tool_calls": []},
        ]}
    assert request(body) == {
        "model": "claude-sonnet-4-5", "max_tokens": 300, "stream": True,
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use tools."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is on this picture, and the weather?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "{\"temp_c\": 21}"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "cloudy"}]},
            {"role": "user", "content": "Thanks"}],
        "stop_sequences": ["END"], "temperature": 0.2, "top_p": 0.9,
        "tools": [TOOL_MSG],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}}


@pytest.mark.parametrize("choice, parallel, expected", [
    ("auto", None, None), (None, None, None),          # auto is the Messages API's default
    ("required", None, {"type": "any"}), ("none", None, {"type": "none"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    ({"type": "function", "function": {"name": "get_weather"}}, None, {"type": "tool", "name": "get_weather"}),
])
def test_request_tool_choice(choice, parallel, expected):
    body = {**CHAT, "tools": [TOOL_CHAT], "tool_choice": choice, "parallel_tool_calls": parallel}
    out = request({k: v for k, v in body.items() if v is not None})
    assert out.get("tool_choice") == expected
    assert out["tools"] == [TOOL_MSG]


def test_request_tool_choice_none_without_tools_says_nothing():
    assert "tool_choice" not in request({**CHAT, "tool_choice": "none"})


def test_request_tool_without_parameters_gets_an_empty_object_schema():
    tool = {"type": "function", "function": {"name": "now"}}
    assert request({**CHAT, "tools": [tool]})["tools"] == [
        {"name": "now", "input_schema": {"type": "object", "properties": {}}}]


def test_request_max_tokens_default_is_configurable():
    assert request(CHAT)["max_tokens"] == 4096
    assert request(CHAT, default_max_tokens=512)["max_tokens"] == 512
    assert request({**CHAT, "max_tokens": 9})["max_tokens"] == 9
    assert request({**CHAT, "stop": ["a", "b"]})["stop_sequences"] == ["a", "b"]
    assert "stream" not in request(CHAT) and request({**CHAT, "stream": False})["stream"] is False


@pytest.mark.parametrize("change, param", [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"some_vendor_field": 1}, "some_vendor_field"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"stop": [1]}, "stop"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
     "messages[0].content[0].type"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]},
     "messages[0].content[0].image_url.url"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": "late"}]},
     "messages[1].role"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ({"messages": [{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]},
     "messages[0].tool_calls[0].function.arguments"),
])
def test_request_that_cannot_be_expressed_is_a_400_naming_the_field(change, param):
    err = refused({**CHAT, **change})
    assert err.param == param
    assert err.message.startswith(param + ":") and "upstream_api: anthropic" in err.message


async def test_proxy_sends_messages_request_to_v1_messages(aiohttp_server, aiohttp_client):
    up = Scripted(A.text_stream())
    server = await aiohttp_server(up.app)
    client = await aiohttp_client(create_app(Config(upstream=str(server.make_url("")).rstrip("/"),
                                                    upstream_api="anthropic", default_max_tokens=64)))
    r = await client.post("/v1/chat/completions?beta=1", json={**CHAT, "stream": True})
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    assert deltas(await r.read())[-1] == "[DONE]"
    method, path, headers, sent = up.received[0]
    assert (method, path) == ("POST", "/v1/messages?beta=1")
    assert headers["anthropic-version"] == "2023-06-01"       # the Messages API's headers, sent
    assert json.loads(sent) == {"model": "claude", "max_tokens": 64, "stream": True,
                                "messages": [{"role": "user", "content": "hi"}]}
    # a request it cannot express never reaches the backend
    r = await client.post("/v1/chat/completions", json={**CHAT, "n": 3})
    assert r.status == 400 and len(up.received) == 1
    err = (await r.json())["error"]
    assert err["param"] == "n" and err["type"] == "invalid_request_error"
    assert err["code"] == "unsupported_parameter" and err["message"].startswith("sse-fixup: n:")


def test_headers_for_the_messages_api():
    from multidict import CIMultiDict
    h = tr().headers(CIMultiDict({"Authorization": "Bearer sk-ant-1", "Content-Type": "application/json"}))
    assert dict(h) == {"Content-Type": "application/json", "anthropic-version": "2023-06-01",
                       "x-api-key": "sk-ant-1"}
    # a client that speaks the headers itself keeps its own
    h = tr().headers(CIMultiDict({"anthropic-version": "2099-01-01", "x-api-key": "k", "Authorization": "Bearer t"}))
    assert dict(h) == {"anthropic-version": "2099-01-01", "x-api-key": "k", "Authorization": "Bearer t"}


def test_path_is_the_messages_endpoint():
    assert [tr().path(p) for p in ("/v1/chat/completions", "/chat/completions", "/openai/v1/chat/completions/")] \
        == ["/v1/messages", "/messages", "/openai/v1/messages"]


ROUTE_YAML = """\
upstream: {chat}                 # everything else: an OpenAI-compatible backend
routes:
  - match: {{model: "claude*"}}
    upstream: {messages}         # a backend that speaks /v1/messages
    upstream_api: anthropic
    default_max_tokens: 1024
    drop_reasoning: true
"""


async def test_per_route_upstream_api_from_yaml(aiohttp_server, aiohttp_client):
    from sse_fixup.config import parse as parse_config
    messages, chat = Scripted(A.thinking_tool_stream()), Scripted(chat_events(1) + [b"data: [DONE]\n\n"])
    urls = [str((await aiohttp_server(u.app)).make_url("")).rstrip("/") for u in (messages, chat)]
    client = await aiohttp_client(create_app(parse_config(ROUTE_YAML.format(messages=urls[0], chat=urls[1]), "r.yaml")))
    out = await (await client.post("/v1/chat/completions", json={**CHAT, "model": "claude-x", "stream": True})).read()
    assert messages.received[0][1] == "/v1/messages" and json.loads(messages.received[0][3])["max_tokens"] == 1024
    assert b"reasoning_content" not in out and deltas(out)[-2:] == [({}, "tool_calls"), "[DONE]"]
    await (await client.post("/v1/chat/completions", json={**CHAT, "model": "qwen", "stream": True})).read()
    assert chat.received[0][1] == "/v1/chat/completions" and json.loads(chat.received[0][3])["model"] == "qwen"


# -- the stream ----------------------------------------------------------------------------

ENV = {"id": "msg_01", "object": "chat.completion.chunk", "created": 1795300000, "model": "claude-sonnet-4-5"}


def chunk(delta, finish=None):
    return {**ENV, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


THINKING_TOOL_CHUNKS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"reasoning_content": "The user wants"}),
    chunk({"reasoning_content": " the weather."}),
    chunk({"content": "Let me check."}),
    chunk({"tool_calls": [{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                           "function": {"name": "get_weather", "arguments": ""}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"locat"}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "ion\": \"San Fra"}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "ncisco, CA\"}"}}]}),
    chunk({}, "tool_calls"),
    {**ENV, "choices": [], "usage": {"prompt_tokens": 592, "completion_tokens": 89, "total_tokens": 681,
                                     "prompt_tokens_details": {"cached_tokens": 100}}},
    "[DONE]",
]
WITH_USAGE = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}


def test_stream_thinking_text_and_split_tool_input_become_chunks():
    with fixed_ids():
        out = run(A.thinking_tool_stream(), WITH_USAGE)
    assert parse(out) == THINKING_TOOL_CHUNKS
    assert out.count(b": keepalive\n\n") == 1          # the ping, as the keepalive comment


def test_stream_split_at_every_byte_gives_the_same_stream():
    data = b"".join(A.thinking_tool_stream())
    with fixed_ids():
        whole = run([data], WITH_USAGE)
        assert run([bytes([b]) for b in data], WITH_USAGE) == whole
        for i in range(1, len(data)):
            assert run([data[:i], data[i:]], WITH_USAGE) == whole, i


def test_stream_each_event_leaves_when_its_input_is_complete():
    route = Router(Config(upstream_api="anthropic")).route("/v1/chat/completions")
    t = route.open(RequestInfo("chat", "/v1/chat/completions", {**CHAT, "stream": True}), "stream")
    events = A.text_stream()
    assert [c["choices"][0]["delta"] for c in parse(t.feed(events[0]))] == [{"role": "assistant", "content": ""}]
    assert t.feed(events[1]) == b""                     # a block start with no text: nothing to say
    assert t.feed(events[3][:20]) == b""                # half an event: not yet
    assert [c["choices"][0]["delta"] for c in parse(t.feed(events[3][20:]))] == [{"content": "Hello"}]


def test_stream_without_usage_request_has_no_usage_chunk_and_drop_reasoning_drops_thinking():
    with fixed_ids():
        out = run(A.thinking_tool_stream(), {**CHAT, "stream": True}, drop_reasoning=True)
    got = deltas(out)
    assert not [d for d in got if isinstance(d, tuple) and isinstance(d[0], dict) and "reasoning_content" in d[0]]
    assert not [d for d in got if d[0] == "usage"]
    assert got[-2:] == [({}, "tool_calls"), "[DONE]"]
    assert b"The user wants" not in out


@pytest.mark.parametrize("reason, finish", [("end_turn", "stop"), ("stop_sequence", "stop"),
                                             ("max_tokens", "length"), ("refusal", "content_filter")])
def test_stream_stop_reason_becomes_finish_reason(reason, finish):
    out = run(A.text_stream(reason), {**CHAT, "stream": True})
    assert deltas(out) == [({"role": "assistant", "content": ""}, None), ({"content": "Hello"}, None),
                           ({"content": "!"}, None), ({}, finish), "[DONE]"]


def test_stream_overloaded_error_mid_stream_is_the_chat_terminal_error():
    events = A.text_stream()[:4] + [A.OVERLOADED]
    out = run(events, {**CHAT, "stream": True})
    assert deltas(out) == [({"role": "assistant", "content": ""}, None), ({"content": "Hello"}, None),
                           ("error", {"message": "Overloaded", "type": "overloaded_error",
                                      "code": "overloaded_error", "param": None}), "[DONE]"]
    # a client that asked for one body gets the error body, not a half answer
    route = Router(Config(upstream_api="anthropic")).route("/v1/chat/completions")
    t = route.open(RequestInfo("chat", "/v1/chat/completions", CHAT), "stream", "body")
    body = orjson.loads(b"".join(t.feed(e) for e in events) + t.close())
    assert body["error"]["code"] == "overloaded_error" and t.ctx.status == 502


def test_stream_llama_server_error_event_shape():
    # llama-server sends its error object itself: event: error, data: {code, message, type}
    events = A.text_stream()[:2] + [b'event: error\ndata: {"code":500,"message":"boom","type":"server_error"}\n\n']
    assert deltas(run(events, {**CHAT, "stream": True}))[-2:] == [
        ("error", {"code": 500, "message": "boom", "type": "server_error", "param": None}), "[DONE]"]


def test_stream_cut_short_ends_in_chat_terminal_error_not_a_finish():
    from sse_fixup.rules.base import Fault
    route = Router(Config(upstream_api="anthropic")).route("/v1/chat/completions")
    t = route.open(RequestInfo("chat", "/v1/chat/completions", {**CHAT, "stream": True}), "stream")
    out = b"".join(t.feed(e) for e in A.text_stream()[:4]) + t.close(Fault("upstream_disconnected", "gone"))
    got = deltas(out)
    assert got[-2][0] == "error" and got[-2][1]["code"] == "upstream_disconnected" and got[-1] == "[DONE]"
    assert not [d for d in got if isinstance(d, tuple) and isinstance(d[0], dict) and d[1]]   # no finish


def test_stream_without_message_stop_still_ends_cleanly_after_message_delta():
    out = run(A.text_stream()[:-1], {**CHAT, "stream": True})
    assert deltas(out)[-2:] == [({}, "stop"), "[DONE]"]


def test_tool_use_without_input_deltas_gets_its_input_as_arguments():
    events = [A.message_start(), A.block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}),
              A.block_stop(0), A.message_delta("tool_use"), A.STOP]
    got = deltas(run(events, {**CHAT, "stream": True}))
    assert got[1:4] == [({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function",
                                          "function": {"name": "now", "arguments": ""}}]}, None),
                        ({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}, None),
                        ({}, "tool_calls")]


def test_unknown_events_and_blocks_carry_no_chat_meaning_and_comments_pass():
    events = A.text_stream()[:2] + [b": a comment\n\n", A.ev({"type": "future_event", "x": 1}),
                                    A.delta(0, {"type": "citations_delta", "citation": {}})] + A.text_stream()[3:]
    out = run(events, {**CHAT, "stream": True})
    assert b": a comment\n\n" in out and b"future_event" not in out and b"citation" not in out
    assert deltas(out)[-1] == "[DONE]"


def test_real_llama_server_tool_stream_capture():
    out = run([A.fixture("llama_tool_stream.sse")], WITH_USAGE)
    got = deltas(out)
    calls = [d[0]["tool_calls"][0] for d in got if isinstance(d, tuple) and isinstance(d[0], dict)
             and "tool_calls" in d[0]]
    assert calls[0]["function"]["name"] == "get_weather" and calls[0]["id"]
    args = "".join(c["function"].get("arguments", "") for c in calls)
    assert isinstance(json.loads(args)["city"], str)
    assert got[-3:] == [({}, "tool_calls"), ("usage", {"prompt_tokens": 167, "completion_tokens": 41,
                                                       "total_tokens": 208, "prompt_tokens_details":
                                                       {"cached_tokens": 18}}), "[DONE]"]


def test_real_llama_server_text_stream_capture_max_tokens_is_length():
    got = deltas(run([A.fixture("llama_text_stream.sse")], {**CHAT, "stream": True}))
    assert got[0] == ({"role": "assistant", "content": ""}, None)
    assert got[-2:] == [({}, "length"), "[DONE]"]
    assert all(set(d[0]) == {"content"} for d in got[1:-2])


def test_stream_aggregated_for_a_client_that_asked_for_one_body():
    # upstream_stream: always, or a backend that streams anyway: the client gets a chat.completion
    with fixed_ids():
        body = orjson.loads(run(A.thinking_tool_stream(), CHAT, "stream", "body"))
    assert body["choices"] == [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
        "role": "assistant", "content": "Let me check.", "reasoning_content": "The user wants the weather.",
        "tool_calls": [{"id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"location\": \"San Francisco, CA\"}"}}]}}]
    assert body["usage"] == {"prompt_tokens": 592, "completion_tokens": 89, "total_tokens": 681,
                             "prompt_tokens_details": {"cached_tokens": 100}}


def test_route_include_usage_usage_chunk_only_for_clients_that_asked():
    hidden = deltas(run(A.thinking_tool_stream(), {**CHAT, "stream": True}, include_usage=True))
    shown = deltas(run(A.thinking_tool_stream(), WITH_USAGE, include_usage=True))
    assert [d for d in hidden if d[0] == "usage"] == []
    assert [d[1]["prompt_tokens"] for d in shown if d[0] == "usage"] == [592]


# -- bodies and errors ---------------------------------------------------------------------

def test_body_message_becomes_chat_completion():
    msg = {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
           "content": [{"type": "thinking", "thinking": "Weather.", "signature": "x"},
                       {"type": "text", "text": "Let me check."},
                       {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
           "stop_reason": "tool_use", "stop_sequence": None,
           "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 7}}
    with fixed_ids():
        body = orjson.loads(run([orjson.dumps(msg)], CHAT, "body"))
    assert body == {"id": "msg_01", "object": "chat.completion", "created": 1795300000, "model": "claude-sonnet-4-5",
                    "choices": [{"index": 0, "logprobs": None, "finish_reason": "tool_calls", "message": {
                        "role": "assistant", "content": "Let me check.", "reasoning_content": "Weather.",
                        "tool_calls": [{"id": "toolu_1", "type": "function",
                                        "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
                    "usage": {"prompt_tokens": 15, "completion_tokens": 7, "total_tokens": 22,
                              "prompt_tokens_details": {"cached_tokens": 5}}}
    # drop_reasoning drops it from bodies too
    dropped = orjson.loads(run([orjson.dumps(msg)], CHAT, "body", drop_reasoning=True))
    assert "reasoning_content" not in dropped["choices"][0]["message"]


def test_body_tool_call_only_has_null_content_and_real_capture_converts():
    body = orjson.loads(run([A.fixture("llama_tool_body.json")], CHAT, "body"))
    msg = body["choices"][0]["message"]
    assert msg["content"] is None and body["choices"][0]["finish_reason"] == "tool_calls"
    assert msg["tool_calls"][0]["function"]["name"] == "get_weather"
    assert isinstance(json.loads(msg["tool_calls"][0]["function"]["arguments"])["city"], str)


def test_body_upstream_stream_never_gives_a_streaming_client_chunks():
    msg = {"id": "msg_01", "type": "message", "role": "assistant", "model": "m",
           "content": [{"type": "text", "text": "Hi"}], "stop_reason": "max_tokens", "usage": {"input_tokens": 1,
                                                                                              "output_tokens": 1}}
    got = deltas(run([orjson.dumps(msg)], {**CHAT, "stream": True}, "body", "stream"))
    assert got == [({"role": "assistant", "content": ""}, None), ({"content": "Hi"}, None), ({}, "length"), "[DONE]"]


@pytest.mark.parametrize("status, data, expected", [
    (529, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}',
     {"message": "Overloaded", "type": "overloaded_error", "code": "overloaded_error", "param": None}),
    (500, b'{"error":{"code":500,"message":"\'messages\' is required","type":"server_error"}}',
     {"message": "'messages' is required", "type": "server_error", "code": 500, "param": None}),
    (502, b"<html>bad gateway</html>",
     {"message": "the backend answered HTTP 502: <html>bad gateway</html>", "type": "upstream_error",
      "code": "502", "param": None}),
])
async def test_error_body_is_openai_shaped_with_its_status(aiohttp_server, aiohttp_client, status, data, expected):
    up = Scripted([data], status=status, content_type="application/json")
    server = await aiohttp_server(up.app)
    client = await aiohttp_client(create_app(Config(upstream=str(server.make_url("")).rstrip("/"),
                                                    upstream_api="anthropic")))
    for stream in (True, False):
        r = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
        assert r.status == status
        assert await r.json() == {"error": expected}


# -- through the proxy: timing and real clients on fakes -----------------------------------

async def _proxy(aiohttp_server, up, **keys):
    server = await aiohttp_server(up.app)
    proxy = await aiohttp_server(create_app(Config(upstream=str(server.make_url("")).rstrip("/"),
                                                   upstream_api="anthropic", **keys)))
    return str(proxy.make_url("/v1"))


async def test_first_chunk_leaves_before_the_upstream_finished(aiohttp_server):
    import aiohttp
    events = A.text_stream()
    up = Scripted(events[:4] + ["hold"])            # never finishes
    base = await _proxy(aiohttp_server, up)
    async with aiohttp.ClientSession() as s:
        async with s.post(base + "/chat/completions", json={**CHAT, "stream": True}) as r:
            got = b""
            async with asyncio.timeout(5):
                while b'"Hello"' not in got:
                    got += await r.content.readany()
    assert [c["choices"][0]["delta"] for c in parse(got)] == [{"role": "assistant", "content": ""},
                                                             {"content": "Hello"}]


async def test_openai_python_on_documented_shapes(aiohttp_server):
    up = Scripted({"think": A.thinking_tool_stream(), "busy": A.text_stream()[:4] + [A.OVERLOADED]})
    base = await _proxy(aiohttp_server, up)
    client = openai.AsyncOpenAI(base_url=base, api_key="none", max_retries=0)
    async with client.chat.completions.stream(model="think", messages=CHAT["messages"], tools=[TOOL_CHAT]) as s:
        async for _ in s:
            pass
        final = await s.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == \
        ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", {"location": "San Francisco, CA"})
    with pytest.raises(openai.APIError, match="Overloaded"):
        stream = await client.chat.completions.create(model="busy", messages=CHAT["messages"], stream=True)
        async for _ in stream:
            pass
    with pytest.raises(openai.APIStatusError, match="Overloaded") as info:
        await client.chat.completions.create(model="busy", messages=CHAT["messages"])
    assert info.value.status_code == 502


@pytest.mark.node
@pytest.mark.parametrize("sdk", ["current", "legacy"])
async def test_aisdk_tool_result_round_trip_becomes_tool_use_and_tool_result(aiohttp_server, sdk):
    up = Scripted(A.text_stream())
    base = await _proxy(aiohttp_server, up)
    r = await run_sdk(base, sdk=sdk, provider="chat", call="stream", tools=True, roundtrip=True)
    assert r["errors"] == [] and r["text"] == "Hello!" and r["finishReason"] == "stop", r
    sent = json.loads(up.received[0][3])
    assert up.received[0][1] == "/v1/messages"
    assert sent["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "call_abc", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_abc",
                                      "content": "{\"temp_c\":21}"}]}]
    assert sent["tools"] == [{"name": "get_weather", "description": "Get the current weather for a city",
                              "input_schema": sent["tools"][0]["input_schema"]}]
    assert sent["tools"][0]["input_schema"]["properties"] == {"city": {"type": "string"}}


# -- the real llama-server's /v1/messages (b11434) -----------------------------------------


@pytest.fixture
async def proxy_url(llama, aiohttp_server):
    # the AI SDK sends no max_tokens: this bounds each text answer (the harness waits 60 s)
    proxy = await aiohttp_server(create_app(Config(upstream=llama, upstream_api="anthropic",
                                                   default_max_tokens=80)))
    return str(proxy.make_url("/v1"))


@pytest.fixture
async def tool_proxy_url(llama, aiohttp_server):
    # a tool call's JSON may run past 80 tokens before its string closes: the server's -n
    proxy = await aiohttp_server(create_app(Config(upstream=llama, upstream_api="anthropic",
                                                   default_max_tokens=256)))
    return str(proxy.make_url("/v1"))


@pytest.mark.llama
@pytest.mark.parametrize("call", ["stream", "generate"])
@pytest.mark.parametrize("provider", ["chat", "compatible"])
@pytest.mark.parametrize("sdk", ["current", "legacy"])
async def test_llama_messages_aisdk_tool_call(tool_proxy_url, sdk, provider, call):
    r = await run_sdk(tool_proxy_url, sdk=sdk, provider=provider, call=call, tools=True)
    assert r["errors"] == [], r
    assert r["finishReason"] == "tool-calls", r
    assert r["toolCalls"], r
    for tc in r["toolCalls"]:
        assert tc["toolName"] == "get_weather" and not tc["invalid"], r
        assert isinstance(tc["input"]["city"], str), r


@pytest.mark.llama
@pytest.mark.parametrize("call", ["stream", "generate"])
@pytest.mark.parametrize("provider", ["chat", "compatible"])
@pytest.mark.parametrize("sdk", ["current", "legacy"])
async def test_llama_messages_aisdk_text_and_tool_result_round_trip(proxy_url, sdk, provider, call):
    r = await run_sdk(proxy_url, sdk=sdk, provider=provider, call=call, tools=False)
    assert r["errors"] == [] and r["finishReason"] in ("stop", "length") and r["text"], r
    r = await run_sdk(proxy_url, sdk=sdk, provider=provider, call=call, tools=True, roundtrip=True)
    assert r["errors"] == [] and r["finishReason"] in ("stop", "length", "tool-calls"), r


@pytest.mark.llama
async def test_llama_messages_openai_python(proxy_url):
    client = openai.AsyncOpenAI(base_url=proxy_url, api_key="none", max_retries=0)
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    # text, non-stream and stream
    done = await client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Say hello"}],
                                                max_tokens=12)
    assert done.choices[0].finish_reason in ("stop", "length") and done.choices[0].message.content
    assert done.usage.prompt_tokens > 0 and done.usage.completion_tokens > 0
    stream = await client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Say hello"}],
                                                  max_tokens=12, stream=True, stream_options={"include_usage": True})
    got = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices)
    assert got[-1].choices == [] and got[-1].usage.completion_tokens > 0
    # tool call, non-stream and stream
    done = await client.chat.completions.create(model="tiny", messages=ask, tools=[TOOL_CHAT], tool_choice="required")
    call = done.choices[0].message.tool_calls[0]
    assert done.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    async with client.chat.completions.stream(model="tiny", messages=ask, tools=[TOOL_CHAT],
                                              tool_choice="required") as s:
        async for _ in s:
            pass
        final = await s.get_final_completion()
    scall = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls" and scall.function.name == "get_weather"
    assert isinstance(json.loads(scall.function.arguments)["city"], str)
    # the tool result goes back: assistant tool_calls + tool message → tool_use + tool_result
    follow = ask + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": scall.id, "type": "function", "function": {"name": "get_weather", "arguments": scall.function.arguments}}]},
        {"role": "tool", "tool_call_id": scall.id, "content": "{\"temp_c\": 21}"}]
    for stream in (False, True):
        r = await client.chat.completions.create(model="tiny", messages=follow, tools=[TOOL_CHAT],
                                                 max_tokens=16, stream=stream)
        if stream:
            chunks = [c async for c in r]
            assert chunks[-1].choices[0].finish_reason in ("stop", "length", "tool_calls")
        else:
            assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")
    # llama-server refuses what it cannot do: its error arrives OpenAI-shaped, status kept
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}])
    assert info.value.status_code == 500 and "image input is not supported" in info.value.message
    print(f"\n[llama /v1/messages] tool args {call.function.arguments!r}", file=sys.stderr)


@pytest.mark.llama
async def test_llama_messages_thinking_is_reasoning_content_or_dropped(llama_reasoning, aiohttp_server):
    async def reasoning(**keys):
        proxy = await aiohttp_server(create_app(Config(upstream=llama_reasoning, upstream_api="anthropic", **keys)))
        client = openai.AsyncOpenAI(base_url=str(proxy.make_url("/v1")), api_key="none", max_retries=0)
        stream = await client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Say hello"}], max_tokens=24, stream=True)
        parts = [(c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                 async for c in stream if c.choices]
        body = await client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Say hello"}], max_tokens=24)
        return "".join(parts), (body.choices[0].message.model_extra or {}).get("reasoning_content")
    streamed, body = await reasoning()
    assert streamed.strip() and body and body.strip()
    assert await reasoning(drop_reasoning=True) == ("", None)
