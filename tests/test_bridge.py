"""upstream_api: chat - Responses clients (Codex CLI, the AI SDK's .responses(), openai-python
responses.*) in front of a backend that serves only /v1/chat/completions (issue 12, part 2).

The request mapping and the chat→Responses stage are specified here by exact input and
output; the real clients run against the real llama-server b11434 (marked ``llama``)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import openai
import pytest

from sse_fixup.config import Config
from sse_fixup.convert import TranslationError
from sse_fixup.convert.responses_chat import ChatBodyToResponse, ChatStreamToResponses, ChatTranslation
from sse_fixup.convert.responses_request import chat_request
from sse_fixup.proxy import create_app
from sse_fixup.rules.base import Fault, RequestInfo, StreamContext
from sse_fixup.sse import Decoder
from sse_fixup.transform import BodyReader, JSONWriter, SSEWriter, Transform

from .helpers import TOOL_RESP, fixed_ids, parse, run_sdk, transform
from .upstreams import Scripted, sse

FIX = Path(__file__).parent / "fixtures" / "bridge"
ENV = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1795300000, "model": "qwen"}
WEATHER = {"type": "function", "name": "get_weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def chunk(delta: dict | None = None, finish=None, **extra) -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return sse({**ENV, "choices": choices, **extra})


DONE = b"data: [DONE]\n\n"
USAGE = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16,
         "prompt_tokens_details": {"cached_tokens": 3}, "completion_tokens_details": {"reasoning_tokens": 2}}


def stage_events(body: bytes, request: dict | None = None, splits: int | None = None,
                 fault: Fault | None = None) -> tuple[bytes, list]:
    """The stage alone (Decoder → chat→Responses → SSE writer): its own bytes, exactly."""
    ctx = StreamContext(RequestInfo("responses", "/v1/responses",
                                    request or {"model": "tiny", "stream": True}))
    t = Transform(Decoder(), [ChatStreamToResponses(ctx), SSEWriter(True)], ctx)
    pieces = [body] if splits is None else [body[i:i + splits] for i in range(0, len(body), splits)]
    out = b"".join(t.feed(p) for p in pieces) + t.close(fault)
    return out, parse(out)


def types(events) -> list[str]:
    return [e["type"] for e in events]


# -- the request ------------------------------------------------------------------------------

def test_every_responses_field_becomes_its_chat_field():
    body = {"model": "tiny", "instructions": "Be brief.", "stream": True, "temperature": 0.2, "top_p": 0.9,
            "input": [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Use tools."}]},
                      {"role": "user", "content": [{"type": "input_text", "text": "Weather in "},
                                                   {"type": "input_text", "text": "Paris?"}]}],
            "tools": [WEATHER], "tool_choice": {"type": "function", "name": "get_weather"},
            "parallel_tool_calls": False, "max_output_tokens": 64, "reasoning": {"effort": "low", "summary": "auto"},
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
            "store": False, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k",
            "client_metadata": {"a": "b"}, "top_k": 20}
    assert chat_request(body) == {
        "model": "tiny", "stream": True, "temperature": 0.2, "top_p": 0.9, "parallel_tool_calls": False,
        "top_k": 20,                         # a backend's own field goes as it came
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "system", "content": "Use tools."},
                     {"role": "user", "content": [{"type": "text", "text": "Weather in "},
                                                  {"type": "text", "text": "Paris?"}]}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["parameters"]}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "max_tokens": 64, "reasoning_effort": "low",
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"},
                                                                   "strict": True}},
        "stream_options": {"include_usage": True}}


def test_tool_calls_and_their_outputs_become_assistant_tool_calls_and_tool_messages():
    body = {"model": "tiny", "input": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "xyz"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "id": "fc_2", "call_id": "c2", "name": "get_weather", "arguments": '{"city":"Rome"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "21C"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "25C"}]},
        {"type": "function_call", "call_id": "c3", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c3", "output": {"temp": 1}}]}
    assert chat_request(body)["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [   # one turn: text and both calls
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "21C"},
        {"role": "tool", "tool_call_id": "c2", "content": "25C"},
        {"role": "assistant", "content": None, "tool_calls": [   # after the outputs: a new turn
            {"id": "c3", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c3", "content": '{"temp":1}'}]


def test_an_output_without_call_id_answers_the_open_call_of_its_name():
    # Codex 0.171 sends the output of a call to a namespaced tool with name, no call_id
    body = {"model": "tiny", "input": [
        {"role": "user", "content": "go"},
        {"type": "function_call", "call_id": "c9", "name": "goal_objective", "arguments": "{}"},
        {"type": "function_call_output", "id": "fco_1", "name": "goal_objective", "namespace": "agent",
         "output": "+"}]}
    assert chat_request(body)["messages"][-1] == {"role": "tool", "tool_call_id": "c9", "content": "+"}
    # answering no open call (Codex's note after create_goal): a user message that names it
    body["input"][2]["name"] = "other"
    assert chat_request(body)["messages"][-1] == {"role": "user", "content": "[agent.other] +"}
    # neither call_id nor name: the 400 naming the field
    del body["input"][2]["name"]
    with pytest.raises(TranslationError) as exc:
        chat_request(body)
    assert exc.value.param == "input[2].call_id"


def test_a_string_input_images_and_non_streaming():
    assert chat_request({"model": "m", "input": "hi"}) == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    img = {"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"}]}]}
    assert chat_request(img)["messages"][0]["content"][1] == \
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}}
    with pytest.raises(TranslationError) as exc:
        chat_request({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]})
    assert exc.value.param == "input[0].content[0]" and "file_id" in exc.value.message


def test_streaming_upstream_is_asked_for_usage_as_the_route_streams_it():
    assert "stream_options" not in chat_request({"input": "hi", "stream": False})
    assert chat_request({"input": "hi"}, upstream_stream="always")["stream_options"] == {"include_usage": True}
    assert "stream_options" not in chat_request({"input": "hi", "stream": True}, upstream_stream="never")


@pytest.mark.parametrize("tool", [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["v"]},
                                  {"type": "namespace", "name": "ns", "tools": [WEATHER]},
                                  {"type": "code_interpreter", "container": {"type": "auto"}}])
def test_hosted_tools_are_refused_with_the_key_that_drops_them(tool):
    body = {"model": "m", "input": "hi", "tools": [WEATHER, tool]}
    with pytest.raises(TranslationError) as exc:
        chat_request(body)
    assert exc.value.param == "tools[1].type" and exc.value.code == "unsupported_tool"
    assert repr(tool["type"]) in exc.value.message and "drop_unsupported_tools: true" in exc.value.message
    out = chat_request({**body, "tool_choice": {"type": tool["type"]}}, drop_unsupported_tools=True)
    assert out["tools"] == [{"type": "function", "function": {"name": "get_weather",
                                                              "parameters": WEATHER["parameters"]}}]
    assert out["tool_choice"] == "auto"


def test_only_hosted_tools_dropped_leaves_no_tools_and_no_tool_choice():
    out = chat_request({"input": "hi", "tools": [{"type": "web_search"}], "tool_choice": "required",
                        "parallel_tool_calls": True}, drop_unsupported_tools=True)
    assert out == {"messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("key", ["previous_response_id", "conversation"])
def test_server_side_state_is_never_ignored(key):
    with pytest.raises(TranslationError) as exc:
        chat_request({"model": "m", "input": "and then?", key: "resp_123"})
    assert exc.value.param == key and exc.value.code == "previous_response_not_supported"
    assert "keeps no conversation state" in exc.value.message and "responses_store" in exc.value.message


@pytest.mark.parametrize("body, param", [
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]"),
    ({"input": [{"type": "computer_call_output", "call_id": "c"}]}, "input[0].type"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ({"input": 5}, "input"),
    ({"input": "hi", "background": True}, "background"),
])
def test_bad_or_inexpressible_input_is_a_400_naming_the_place(body, param):
    with pytest.raises(TranslationError) as exc:
        chat_request(body)
    assert exc.value.param == param


def test_paths_keep_their_base_path():
    tr = ChatTranslation(Config())
    assert tr.path("/v1/responses") == "/v1/chat/completions"
    assert tr.path("/openai/v1/responses/") == "/openai/v1/chat/completions"


# -- the stream ---------------------------------------------------------------------------------

TEXT_STREAM = (chunk({"role": "assistant", "content": None}) + chunk({"reasoning_content": "Think"})
               + chunk({"content": "Hel"}) + chunk({"content": "lo"}) + chunk({}, "stop")
               + chunk(None, usage=USAGE) + DONE)


def test_text_and_reasoning_stream_exactly():
    with fixed_ids():
        raw, events = stage_events(TEXT_STREAM)
    resp = events[0]["response"]
    assert resp["id"] == "resp_000000000000000000000001" and resp["status"] == "in_progress"
    assert resp["model"] == "qwen" and resp["created_at"] == 1795300000 and resp["output"] == []
    rs, msg = "rs_000000000000000000000002", "msg_000000000000000000000003"
    text_part = {"type": "output_text", "text": "Hello", "annotations": []}
    reasoning = {"id": rs, "type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "Think"}]}
    message = {"id": msg, "type": "message", "role": "assistant", "status": "completed", "content": [text_part]}
    assert events[2:-1] == [
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"id": rs, "type": "reasoning", "summary": [], "content": []}, "sequence_number": 2},
        {"type": "response.content_part.added", "item_id": rs, "output_index": 0, "content_index": 0,
         "part": {"type": "reasoning_text", "text": ""}, "sequence_number": 3},
        {"type": "response.reasoning_text.delta", "item_id": rs, "output_index": 0, "content_index": 0,
         "delta": "Think", "sequence_number": 4},
        {"type": "response.reasoning_text.done", "item_id": rs, "output_index": 0, "content_index": 0,
         "text": "Think", "sequence_number": 5},
        {"type": "response.content_part.done", "item_id": rs, "output_index": 0, "content_index": 0,
         "part": {"type": "reasoning_text", "text": "Think"}, "sequence_number": 6},
        {"type": "response.output_item.done", "output_index": 0, "item": reasoning, "sequence_number": 7},
        {"type": "response.output_item.added", "output_index": 1,
         "item": {**message, "status": "in_progress", "content": []}, "sequence_number": 8},
        {"type": "response.content_part.added", "item_id": msg, "output_index": 1, "content_index": 0,
         "part": {**text_part, "text": ""}, "sequence_number": 9},
        {"type": "response.output_text.delta", "item_id": msg, "output_index": 1, "content_index": 0,
         "delta": "Hel", "logprobs": [], "sequence_number": 10},
        {"type": "response.output_text.delta", "item_id": msg, "output_index": 1, "content_index": 0,
         "delta": "lo", "logprobs": [], "sequence_number": 11},
        {"type": "response.output_text.done", "item_id": msg, "output_index": 1, "content_index": 0,
         "text": "Hello", "logprobs": [], "sequence_number": 12},
        {"type": "response.content_part.done", "item_id": msg, "output_index": 1, "content_index": 0,
         "part": text_part, "sequence_number": 13},
        {"type": "response.output_item.done", "output_index": 1, "item": message, "sequence_number": 14},
    ]
    done = events[-1]
    assert done["type"] == "response.completed" and done["sequence_number"] == 15
    assert done["response"]["status"] == "completed" and done["response"]["incomplete_details"] is None
    assert done["response"]["output"] == [reasoning, message]
    assert done["response"]["usage"] == {"input_tokens": 11, "input_tokens_details": {"cached_tokens": 3},
                                         "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2},
                                         "total_tokens": 16}
    assert raw.startswith(b"event: response.created\ndata: {")      # named events, as Responses streams are


@pytest.mark.parametrize("fixture", ["f_chat_stream_tool_required_include_usage", "b6_chat_stream_two_tools_auto",
                                     "r_chat_stream_reasoning", "a2_chat_stream_text_length"])
def test_any_split_of_the_chat_stream_gives_the_same_bytes(fixture):
    body = (FIX / f"{fixture}.body").read_bytes()
    with fixed_ids():
        whole, _ = stage_events(body)
    for size in (1, 2, 7, 64):
        with fixed_ids():
            assert stage_events(body, splits=size)[0] == whole, size


def test_tool_call_arguments_split_across_chunks():
    call = {"index": 0, "id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    body = (chunk({"role": "assistant", "content": None}) + chunk({"tool_calls": [call]})
            + chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]})
            + chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Paris"}'}}]})
            + chunk({}, "tool_calls") + DONE)
    with fixed_ids():
        _, events = stage_events(body)
    fc = "fc_000000000000000000000002"
    item = {"id": fc, "type": "function_call", "status": "completed", "call_id": "call_9",
            "name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert [{k: v for k, v in e.items() if k != "sequence_number"} for e in events[2:-1]] == [
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**item, "status": "in_progress", "arguments": ""}},
        {"type": "response.function_call_arguments.delta", "item_id": fc, "output_index": 0, "delta": '{"ci'},
        {"type": "response.function_call_arguments.delta", "item_id": fc, "output_index": 0, "delta": 'ty":"Paris"}'},
        {"type": "response.function_call_arguments.done", "item_id": fc, "output_index": 0,
         "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "response.output_item.done", "output_index": 0, "item": item}]
    assert events[-1]["type"] == "response.completed" and events[-1]["response"]["output"] == [item]
    assert events[-1]["response"]["usage"] is None          # the backend sent none: the rules add zeros


def test_parallel_calls_each_get_their_own_item_and_index():
    def call(i, name, args):
        return {"index": i, "id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": args}}
    body = (chunk({"content": "Both:"}) + chunk({"tool_calls": [call(0, "a", '{"x":')]})
            + chunk({"tool_calls": [call(1, "b", '{}')]})
            + chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]})   # interleaved: still call 0
            + chunk({}, "tool_calls") + chunk(None, usage=USAGE))
    with fixed_ids():
        _, events = stage_events(body)
    added = [(e["output_index"], e["item"]["type"], e["item"].get("name")) for e in events
             if e["type"] == "response.output_item.added"]
    assert added == [(0, "message", None), (1, "function_call", "a"), (2, "function_call", "b")]
    done = events[-1]["response"]["output"]
    assert [(o["type"], o.get("arguments")) for o in done] == [("message", None), ("function_call", '{"x":1}'),
                                                              ("function_call", "{}")]
    assert len({o["id"] for o in done}) == 3
    # the terminal event left with the usage chunk, with no [DONE] to wait for
    assert types(events)[-1] == "response.completed" and types(events).count("response.output_item.done") == 3


def test_finish_reason_length_is_response_incomplete():
    body = chunk({"content": "Once upon"}) + chunk({}, "length") + DONE
    _, events = stage_events(body)
    last = events[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["status"] == "incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["output"][0]["status"] == "incomplete"


def test_an_error_chunk_mid_stream_ends_in_error_and_response_failed():
    body = chunk({"content": "Hi"}) + sse({"error": {"code": 500, "message": "slot crashed", "type": "server_error"}}) \
        + chunk({"content": "ignored"})
    _, events = stage_events(body)
    assert types(events)[-2:] == ["error", "response.failed"]
    err = events[-2]
    assert err["code"] == "500" and err["message"] == "slot crashed" and err["error"]["type"] == "server_error"
    assert "ignored" not in json.dumps(events)


def test_upstream_fault_mid_stream_ends_in_the_terminal_error_not_completion():
    body = chunk({"role": "assistant", "content": None}) + chunk({"content": "Hel"})
    out = transform([body], "responses", {"model": "tiny", "stream": True}, cfg=Config(upstream_api="chat"),
                    fault=Fault("upstream_disconnected", "the upstream closed the stream"))
    events = parse(out)
    assert types(events)[-2:] == ["error", "response.failed"]
    assert events[-2]["code"] == "upstream_disconnected"
    assert "response.completed" not in types(events)
    # and a stream that simply stops (no finish_reason, no [DONE]) is not claimed complete either
    events = parse(transform([body], "responses", {"model": "tiny", "stream": True}, cfg=Config(upstream_api="chat")))
    assert types(events)[-2:] == ["error", "response.failed"] and events[-2]["code"] == "upstream_incomplete"


def test_the_full_chain_keeps_the_stage_output_valid():
    """With the default presets (the responses rules after the stage) nothing is lost or doubled."""
    body = (FIX / "f_chat_stream_tool_required_include_usage.body").read_bytes()
    events = parse(transform([body], "responses", {"model": "tiny", "stream": True, "tools": [TOOL_RESP]},
                             cfg=Config(upstream_api="chat")))
    assert types(events)[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert types(events)[-1] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert types(events).count("response.function_call_arguments.done") == 1
    final = events[-1]["response"]
    assert final["usage"]["input_tokens"] == 187 and final["output"][0]["type"] == "function_call"
    assert json.loads(final["output"][0]["arguments"])["city"] == "Berlin"


# -- bodies and errors ----------------------------------------------------------------------------

def test_chat_body_becomes_a_response_body():
    body = {"id": "chatcmpl-2", "object": "chat.completion", "created": 1795300000, "model": "qwen",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Let me check.", "reasoning_content": "User wants weather.",
                "tool_calls": [{"id": "call_1", "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}}
    data = json.dumps(body).encode()
    with fixed_ids():
        ctx = StreamContext(RequestInfo("responses", "/v1/responses", {"model": "tiny"}))
        t = Transform(BodyReader(), [ChatBodyToResponse(ctx), JSONWriter()], ctx)
        resp = json.loads(t.feed(data) + t.close())
    assert resp["id"] == "resp_000000000000000000000001" and resp["object"] == "response"
    assert resp["status"] == "completed" and resp["model"] == "qwen"
    assert resp["output"] == [
        {"id": "rs_000000000000000000000002", "type": "reasoning", "summary": [],
         "content": [{"type": "reasoning_text", "text": "User wants weather."}]},
        {"id": "msg_000000000000000000000003", "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Let me check.", "annotations": [], "logprobs": []}]},
        {"id": "fc_000000000000000000000004", "type": "function_call", "status": "completed", "call_id": "call_1",
         "name": "get_weather", "arguments": '{"city":"Paris"}'}]
    assert resp["usage"]["input_tokens"] == 9 and resp["usage"]["output_tokens"] == 4


def test_backend_errors_come_back_as_openai_error_bodies():
    tr = ChatTranslation(Config())
    out = json.loads(tr.error(400, (FIX / "f_err_chat_bad_tool_choice.body").read_bytes()))
    assert out == {"error": {"code": 400, "message": "Invalid tool_choice: sometimes",
                             "type": "invalid_request_error", "param": None}}
    out = json.loads(tr.error(502, b"<html>bad gateway</html>"))
    assert out["error"]["code"] == "502" and "bad gateway" in out["error"]["message"]


# -- through the proxy ----------------------------------------------------------------------------

async def proxy_for(aiohttp_server, aiohttp_client, upstream, **cfg):
    server = await aiohttp_server(upstream.app)
    return await aiohttp_client(create_app(Config(upstream=str(server.make_url("")).rstrip("/"),
                                                  upstream_api="chat", **cfg)))


async def test_proxy_refuses_hosted_tools_and_previous_response_id_before_the_backend(aiohttp_server, aiohttp_client):
    up = Scripted([DONE])
    client = await proxy_for(aiohttp_server, aiohttp_client, up)
    r = await client.post("/v1/responses", json={"model": "m", "input": "hi", "tools": [{"type": "web_search"}]})
    assert r.status == 400
    err = (await r.json())["error"]
    assert err["param"] == "tools[0].type" and "drop_unsupported_tools" in err["message"]
    r = await client.post("/v1/responses", json={"model": "m", "input": "hi", "previous_response_id": "resp_1"})
    assert r.status == 400 and (await r.json())["error"]["code"] == "previous_response_not_supported"
    assert up.received == []


async def test_proxy_asks_the_chat_path_and_streams_responses(aiohttp_server, aiohttp_client):
    up = Scripted([TEXT_STREAM])
    client = await proxy_for(aiohttp_server, aiohttp_client, up, drop_unsupported_tools=True)
    r = await client.post("/openai/v1/responses", json={"model": "m", "input": "hi", "stream": True,
                                                        "tools": [WEATHER, {"type": "web_search"}]})
    events = parse(await r.read())
    assert r.status == 200 and types(events)[-1] == "response.completed"
    method, path, _, sent = up.received[0]
    assert path == "/openai/v1/chat/completions"
    sent = json.loads(sent)
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"]
    assert sent["messages"] == [{"role": "user", "content": "hi"}] and sent["stream_options"] == {"include_usage": True}


async def test_proxy_translates_backend_error_status_and_body(aiohttp_server, aiohttp_client):
    up = Scripted([(FIX / "f_err_chat_bad_tool_choice.body").read_bytes()], status=400,
                  content_type="application/json")
    client = await proxy_for(aiohttp_server, aiohttp_client, up)
    r = await client.post("/v1/responses", json={"model": "m", "input": "hi"})
    assert r.status == 400 and (await r.json())["error"]["message"] == "Invalid tool_choice: sometimes"


async def test_a_chat_body_reaches_a_non_streaming_client_as_a_response(aiohttp_server, aiohttp_client):
    body = {"id": "c", "object": "chat.completion", "created": 1, "model": "qwen",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi!"}}]}
    client = await proxy_for(aiohttp_server, aiohttp_client,
                             Scripted([json.dumps(body).encode()], content_type="application/json"))
    r = await client.post("/v1/responses", json={"model": "m", "input": "hi"})
    resp = await r.json()
    assert resp["object"] == "response" and resp["status"] == "completed"
    assert resp["output"][0]["content"][0]["text"] == "Hi!"
    # and a streaming client behind a backend that answers with a body gets the whole stream
    r = await client.post("/v1/responses", json={"model": "m", "input": "hi", "stream": True})
    events = parse(await r.read())
    assert types(events)[0] == "response.created" and types(events)[-1] == "response.completed"
    assert "response.output_text.delta" in types(events)


async def test_a_route_that_always_streams_gives_a_json_client_one_response(aiohttp_server, aiohttp_client):
    up = Scripted([TEXT_STREAM])
    client = await proxy_for(aiohttp_server, aiohttp_client, up, upstream_stream="always")
    r = await client.post("/v1/responses", json={"model": "m", "input": "hi"})
    resp = await r.json()
    assert r.status == 200 and resp["status"] == "completed"
    assert [o["type"] for o in resp["output"]] == ["reasoning", "message"]
    assert resp["usage"]["input_tokens"] == 11
    sent = json.loads(up.received[0][3])
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_first_event_leaves_before_the_upstream_finished(aiohttp_server, aiohttp_client):
    gate = asyncio.Event()

    class Slow(Scripted):
        async def handle(self, request):
            from aiohttp import web
            await request.read()
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(chunk({"role": "assistant", "content": ""}) + chunk({"content": "Hel"}))
            await gate.wait()                       # the rest only after the client saw the start
            await resp.write(chunk({"content": "lo"}) + chunk({}, "stop") + DONE)
            await resp.write_eof()
            return resp

    client = await proxy_for(aiohttp_server, aiohttp_client, Slow())
    r = await client.post("/v1/responses", json={"model": "m", "input": "hi", "stream": True})
    seen = b""
    while b"response.output_text.delta" not in seen:
        seen += await asyncio.wait_for(r.content.readany(), 5)
    assert b"response.completed" not in seen
    gate.set()
    rest = await r.read()
    assert types(parse(seen + rest))[-1] == "response.completed"


# -- real clients, real llama-server ---------------------------------------------------------------


@pytest.fixture
async def bridge(llama16k, aiohttp_server):
    """The proxy with upstream_api: chat in front of a tap in front of llama-server."""
    from .codex_support import Tap
    tap = Tap(llama16k)
    tap_server = await aiohttp_server(tap.app)
    proxy = await aiohttp_server(create_app(Config(upstream=str(tap_server.make_url("")).rstrip("/"),
                                                   upstream_api="chat", drop_unsupported_tools=True)))
    return str(proxy.make_url("/v1")), tap


def chat_requests(tap) -> list[dict]:
    paths = {p for p, _ in tap.requests}
    assert paths == {"/v1/chat/completions"}, paths          # never llama-server's own /v1/responses
    return [b for _, b in tap.requests]


@pytest.mark.llama
@pytest.mark.node
@pytest.mark.parametrize("call", ["stream", "generate"])
async def test_aisdk_responses_provider_gets_the_tool_call_and_sends_its_result(bridge, call):
    url, tap = bridge
    r = await run_sdk(url, sdk="current", provider="responses", call=call, tools=True)
    assert r["errors"] == [] and r["finishReason"] == "tool-calls", r
    assert r["toolCalls"] and all(tc["toolName"] == "get_weather" and not tc["invalid"] for tc in r["toolCalls"]), r
    r = await run_sdk(url, sdk="current", provider="responses", call=call, tools=True, roundtrip=True)
    assert r["errors"] == [] and r["finishReason"] in ("stop", "length"), r
    last = chat_requests(tap)[-1]["messages"]
    assert last[-2]["tool_calls"][0]["id"] == "call_abc" and last[-1]["role"] == "tool"
    assert last[-1]["tool_call_id"] == "call_abc" and json.loads(last[-1]["content"]) == {"temp_c": 21}


@pytest.mark.llama
async def test_openai_python_responses_stream_tool_call_and_result(bridge):
    url, tap = bridge
    client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0)
    async with client.responses.stream(model="tiny", input="What is the weather in Paris?",
                                       tools=[TOOL_RESP], tool_choice="required") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    calls = [o for o in final.output if o.type == "function_call"]
    assert calls and all(c.name == "get_weather" for c in calls)
    assert isinstance(json.loads(calls[0].arguments)["city"], str)
    assert final.usage.input_tokens > 0
    inputs = [{"role": "user", "content": "What is the weather in Paris?"},
              *[c.model_dump(exclude_none=True) for c in calls],
              *[{"type": "function_call_output", "call_id": c.call_id, "output": '{"temp_c": 21}'} for c in calls]]
    async with client.responses.stream(model="tiny", input=inputs, tools=[TOOL_RESP]) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_response()
    assert final.status in ("completed", "incomplete") and final.output_text
    sent = chat_requests(tap)[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant"] + ["tool"] * len(calls)
    assert [t["id"] for t in sent[1]["tool_calls"]] == [c.call_id for c in calls]
    assert sent[2]["tool_call_id"] == calls[0].call_id and sent[2]["content"] == '{"temp_c": 21}'


@pytest.mark.llama
@pytest.mark.node
async def test_codex_cli_exec_runs_a_tool_and_sends_its_output_back(bridge, tmp_path):
    from .codex_support import run_codex
    url, tap = bridge
    events, log = await run_codex(url, tmp_path, "What is in this directory?")
    kinds = [e["type"] for e in events]
    assert "turn.completed" in kinds and "turn.failed" not in kinds and "error" not in kinds, (events, log)
    sent = chat_requests(tap)
    assert len(sent) >= 2, (events, log)
    assert len(json.dumps(sent[0])) > 20000         # Codex's whole prompt went through (~6k tokens)
    # Codex's first turn was a tool call (the tiny model calls one whenever tools are offered);
    # the next request carries that call and its output as a tool message
    follow = sent[1]["messages"]
    calls = [m for m in follow if m["role"] == "assistant" and m.get("tool_calls")]
    results = [m for m in follow if m["role"] == "tool"]
    assert calls and results, follow[-3:]
    assert results[0]["tool_call_id"] == calls[0]["tool_calls"][0]["id"] and results[0]["content"]
    messages = [e["item"]["text"] for e in events if e["type"] == "item.completed"
                and e["item"]["type"] == "agent_message"]
    assert messages, events                             # and the text answer after the result reached Codex
    print(f"\n[codex] called {calls[0]['tool_calls'][0]['function']['name']}, {len(sent)} chat requests",
          file=sys.stderr)
