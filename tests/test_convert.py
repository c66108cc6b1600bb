"""The converters (issue 11, "Shapes"): the client gets the shape it asked for, whatever
shape the upstream answered in.

- JSON → SSE: a client that asked ``stream: true`` in front of an upstream that sent one
  JSON body gets the endpoint's full stream, which openai-python's own types accept event
  by event - alone and after the default stream rules - and which openai-python's own
  accumulators add up to the body again.
- SSE → JSON: a client that asked ``stream: false`` in front of an upstream that streamed
  gets the exact non-stream body (openai-python's ``ChatCompletion`` / ``Response``), or
  the OpenAI error object with an error status when the stream ended in an error.
- Round trips: body → stream → body keeps text, tool calls, finish reason, status and
  usage; stream → body → stream → body is stable.
"""

from __future__ import annotations

import json

import httpx2 as httpx  # openai-python's HTTP client library
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from sse_fixup.chain import Chain
from sse_fixup.config import Config
from sse_fixup.convert import (ChatJSONToStream, ChatStreamToJSON, ResponsesJSONToStream,
                               ResponsesStreamToJSON, json_to_stream, stream_to_json)
from sse_fixup.rules import BUILTIN
from sse_fixup.rules.base import Fault, RequestInfo, StreamContext
from sse_fixup.rules.responses import response_defaults
from sse_fixup.sse import Decoder
from sse_fixup.transform import BodyReader, JSONWriter, SSEWriter, Transform

from .captures import load, sse_names
from .helpers import fixed_ids

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
RESP_EVENT = TypeAdapter(ResponseStreamEvent)
USAGE = {"stream_options": {"include_usage": True}}


# -- the pipelines, as routes build them --------------------------------------------------

def stream_rules(endpoint: str) -> list:
    return [BUILTIN[n] for n in Config().rule_names()
            if BUILTIN[n].endpoint == endpoint and BUILTIN[n].mode == "stream"]


def to_stream(body: bytes, endpoint: str, request: dict | None = None, *, rules: bool = True,
              reads: list[bytes] | None = None, fault: Fault | None = None) -> bytes:
    """What a streaming client gets for an upstream JSON ``body`` (the default stream rules
    after the converter, or the converter alone)."""
    ctx = StreamContext(RequestInfo(endpoint, "/v1/x", {"stream": True, **(request or {})}))
    chain = [Chain(endpoint, stream_rules(endpoint)).open(ctx)] if rules else []
    t = Transform(BodyReader(), [json_to_stream(endpoint, ctx), *chain,
                                 SSEWriter(named=endpoint == "responses")], ctx)
    for read in reads or [body]:
        assert t.feed(read) == b""          # a JSON body is complete only at its end
    return t.close(fault)


def to_json(reads: list[bytes], endpoint: str, request: dict | None = None, *,
            fault: Fault | None = None) -> tuple[dict, int]:
    """What a non-stream client gets for an upstream stream: the body and the HTTP status."""
    ctx = StreamContext(RequestInfo(endpoint, "/v1/x", {**(request or {}), "stream": False}))
    conv = stream_to_json(endpoint, ctx)
    t = Transform(Decoder(), [Chain(endpoint, stream_rules(endpoint)).open(ctx), conv, JSONWriter()], ctx)
    for read in reads:
        assert t.feed(read) == b""          # nothing goes out before the stream has ended
    body = json.loads(t.close(fault))
    assert ctx.status == conv.status        # the proxy answers with the context's status
    return body, conv.status


def events(sse: bytes) -> list:
    """(event name, payload) per data event; the payload is the JSON or the string [DONE]."""
    d = Decoder()
    return [(e.event, e.data.decode() if e.data == b"[DONE]" else json.loads(e.data))
            for e in d.feed(sse) + d.close() if e.data is not None]


def final_completion(state: ChatCompletionStreamState):
    # openai-python raises on purpose for finish_reason length/content_filter, with the
    # accumulated completion on the exception
    try:
        return state.get_final_completion()
    except (openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError) as exc:
        return exc.completion


def last(sse: bytes, key: str):
    """``key`` of the last event of ``sse`` that has it."""
    return [o for _, o in events(sse) if o != "[DONE]" and o.get(key)][-1][key]


def calls_of(message: dict) -> list:
    return [(c["id"], c["function"]["name"], c["function"]["arguments"])
            for c in message.get("tool_calls") or ()]


# -- what a valid synthesised stream is ----------------------------------------------------

def check_chat_stream(evs: list, body: dict) -> list[dict]:
    """Every chunk a ChatCompletionChunk with the body's envelope, [DONE] last; openai-python's
    ChatCompletionStreamState adds the chunks up to the body's content, tool calls and
    finish reasons.  The chunks, parsed."""
    assert evs[-1] == (None, "[DONE]") and all(name is None for name, _ in evs)
    chunks = [obj for _, obj in evs[:-1]]
    state = ChatCompletionStreamState()
    for c in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(c))
        assert (c["id"], c["object"], c["created"], c["model"]) == \
            (body["id"], "chat.completion.chunk", body["created"], body["model"])
    final = final_completion(state)
    for choice, got in zip(body["choices"], final.choices, strict=True):
        msg = choice["message"]
        assert got.message.content == msg.get("content")
        assert got.finish_reason == choice["finish_reason"] or \
            (choice["finish_reason"], got.finish_reason) == ("stop", "tool_calls")
        assert [(c.id, c.function.name, c.function.arguments) for c in got.message.tool_calls or ()] \
            == calls_of(msg)
        if "reasoning_content" in msg:
            assert got.message.model_extra["reasoning_content"] == msg["reasoning_content"]
    return chunks


def kind(chunk) -> str:
    """What a chat chunk carries: role, reasoning_content, content, tool_call, finish, usage."""
    if chunk == "[DONE]":
        return chunk
    if not chunk["choices"]:
        return "usage"
    choice = chunk["choices"][0]
    if choice["finish_reason"]:
        return "finish"
    delta = choice["delta"]
    return "role" if "role" in delta else "tool_call" if "tool_calls" in delta else next(iter(delta))


TERMINAL = {"completed": "response.completed", "incomplete": "response.incomplete"}


def check_responses_stream(evs: list, body: dict) -> list[dict]:
    """Every event an openai-python ResponseStreamEvent named by its type, sequence numbers
    0, 1, 2, …; created and in_progress first, the terminal event of the body's status last
    with the body's output; items one after another, each event of an item naming it by
    id and position.  The events, parsed."""
    objs = [obj for _, obj in evs]
    for name, obj in evs:
        RESP_EVENT.validate_python(obj)
        assert name == obj["type"]
    assert [o["sequence_number"] for o in objs] == list(range(len(objs)))
    assert [o["type"] for o in objs[:2]] == ["response.created", "response.in_progress"]
    for start in objs[:2]:
        assert start["response"]["status"] == "in_progress" and start["response"]["output"] == []
        assert start["response"]["id"] == body["id"]
    last = objs[-1]
    assert last["type"] == TERMINAL[body["status"]]
    assert last["response"]["status"] == body["status"] and last["response"]["id"] == body["id"]
    done_items, current, parts = [], None, 0
    for o in objs[2:-1]:
        if o["type"] == "response.output_item.added":
            assert current is None and o["output_index"] == len(done_items)
            current, parts = o["item"], 0
            assert current.get("status", "in_progress") == "in_progress"
        elif o["type"] == "response.output_item.done":
            assert o["output_index"] == len(done_items) and o["item"]["id"] == current["id"]
            done_items.append(o["item"])
            current = None
        else:
            assert (o["item_id"], o["output_index"]) == (current["id"], len(done_items))
            if o["type"] == "response.content_part.added":
                assert o["content_index"] == parts
                parts += 1
            elif "content_index" in o:
                assert o["content_index"] == parts - 1
    assert current is None
    assert last["response"]["output"] == done_items
    assert [(i["type"], i.get("id")) for i in done_items] == [(i["type"], i.get("id")) for i in body["output"]]
    return objs


def texts_of(output: list) -> list[str]:
    return ["".join(p.get("text", "") for p in i["content"]) for i in output if i["type"] == "message"]


def fcalls_of(output: list) -> list:
    return [(i["id"], i["call_id"], i["name"], i["arguments"]) for i in output if i["type"] == "function_call"]


def sdk_final_response(sse: bytes):
    """openai-python's own Responses stream client (``responses.stream``) over ``sse``."""
    transport = httpx.MockTransport(lambda request: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=sse))
    client = openai.OpenAI(base_url="http://proxy/v1", api_key="none",
                           http_client=httpx.Client(transport=transport))
    with client.responses.stream(model="m", input="hi") as stream:
        return stream.get_final_response()


# -- JSON → SSE on the llama-server captures -----------------------------------------------

@pytest.mark.parametrize("rules", [False, True], ids=["converter alone", "with the default rules"])
@pytest.mark.parametrize("name, request_extra, kinds", [
    ("e_a_chat_text", {}, ["role", "content", "finish", "[DONE]"]),
    ("e_a_chat_text", USAGE, ["role", "content", "finish", "usage", "[DONE]"]),
    ("e_b_chat_tool_required", {}, ["role", "tool_call", "finish", "[DONE]"]),
    ("e_b_chat_tool_required", USAGE, ["role", "tool_call", "finish", "usage", "[DONE]"]),
    ("r_chat_reasoning_nonstream", {}, ["role", "reasoning_content", "content", "finish", "[DONE]"]),
])
def test_chat_body_becomes_the_chunk_stream_openai_python_accepts(name, request_extra, kinds, rules,
                                                                  fixed_clock):
    cap = load(name)
    body = json.loads(cap.body)
    evs = events(to_stream(cap.body, "chat", {**cap.request, **request_extra}, rules=rules))
    assert [kind(obj) for _, obj in evs] == kinds
    chunks = check_chat_stream(evs, body)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["system_fingerprint"] == "b11434-unknown" for c in chunks)
    if request_extra:   # the usage chunk, as the body had it (cached tokens included)
        assert chunks[-1]["usage"] == body["usage"]
        assert chunks[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 18}
    else:
        assert all(c.get("usage") is None for c in chunks)
    assert chunks[-1]["timings"] == body["timings"]          # llama-server's extra, kept
    for c in chunks:
        for tc in c["choices"] and c["choices"][0]["delta"].get("tool_calls") or ():
            # one delta per call: the identity and all of the arguments
            (call,) = body["choices"][0]["message"]["tool_calls"]
            assert tc == {"index": 0, "id": "CHgqB4XkK68teIbHmecMl8bGixHUghDI", "type": "function",
                          "function": {"name": "get_weather", "arguments": call["function"]["arguments"]}}


@pytest.mark.parametrize("rules", [False, True], ids=["converter alone", "with the default rules"])
@pytest.mark.parametrize("name, types", [
    ("e_c_resp_text", [
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done"]),
    ("e_d_resp_tool_required", [
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done"]),
    ("r_resp_reasoning_nonstream", [
        "response.output_item.added", "response.content_part.added", "response.reasoning_text.delta",
        "response.reasoning_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done"]),
])
def test_responses_body_becomes_the_event_stream_openai_python_accepts(name, types, rules, fixed_clock):
    cap = load(name)
    body = json.loads(cap.body)
    sse = to_stream(cap.body, "responses", cap.request, rules=rules)
    if rules:    # responses.reasoning_summary gives a reasoning item its text as the summary too
        for item in body["output"]:
            if item.get("type") == "reasoning" and not item.get("summary"):
                item["summary"] = [{"type": "summary_text",
                                    "text": "".join(c["text"] for c in item.get("content") or ())}]
    objs = check_responses_stream(events(sse), body)
    got = [o["type"] for o in objs]
    if rules:    # the default rules add the reasoning summary the AI SDK reads (responses.reasoning_summary)
        summary = [t for t in got if t.startswith("response.reasoning_summary")]
        assert bool(summary) is (name == "r_resp_reasoning_nonstream")
        got = [t for t in got if not t.startswith("response.reasoning_summary")]
    assert got == ["response.created", "response.in_progress", *types, "response.completed"]
    final = objs[-1]["response"]
    # the whole body, with the fields openai-python's Response requires
    # (the default rules: the requested model, not the backend's file path; tools echoed as
    # the Open Responses FunctionTool has them, strict null where the request left it out)
    if rules:
        body["model"] = cap.request["model"]
    assert {k: final[k] for k in body if k not in ("usage", "tools")} == \
        {k: v for k, v in body.items() if k not in ("usage", "tools")}
    assert final["usage"]["input_tokens_details"] == \
        {"cached_tokens": body["usage"]["input_tokens_details"]["cached_tokens"], "cache_write_tokens": 0}
    assert final["tools"] == [{**t, "strict": None} for t in cap.request.get("tools") or []]
    Response.model_validate(final)
    # the text and arguments came as deltas
    deltas = "".join(o["delta"] for o in objs if o["type"] in (
        "response.output_text.delta", "response.function_call_arguments.delta"))
    assert deltas == "".join(texts_of(body["output"])) + "".join(a for *_, a in fcalls_of(body["output"]))
    # and openai-python's own stream client adds them up to the body's output
    got = [i.model_dump() for i in sdk_final_response(sse).output]
    assert (texts_of(got), fcalls_of(got)) == (texts_of(body["output"]), fcalls_of(body["output"]))


@pytest.mark.parametrize("endpoint", ["chat", "responses"])
@pytest.mark.parametrize("body, code, quoted", [
    # llama-server's own error object (here as a 200 body): its message and fields reach the client
    (load("f_err_chat_stream_ctx_overflow").body, 400, "exceeds the available context size"),
    (b"<html><body>502 Bad Gateway</body></html>", "upstream_not_convertible", "502 Bad Gateway"),
    (b'{"object": "list", "data": []}', "upstream_not_convertible", '"object": "list"'),
    (b"", "upstream_not_convertible", "an empty body"),
])
def test_body_that_is_no_answer_becomes_the_terminal_error(endpoint, body, code, quoted, fixed_clock):
    evs = events(to_stream(body, endpoint))
    if endpoint == "chat":
        assert [kind(o) if "error" not in o else "error" for _, o in evs] == ["error", "[DONE]"]
        err = evs[0][1]["error"]
        assert err["code"] == code and quoted in err["message"] and err["type"]
        if code == 400:
            assert (err["type"], err["n_ctx"]) == ("exceed_context_size_error", 4096)
        return
    objs = [o for _, o in evs]
    for o in objs:
        RESP_EVENT.validate_python(o)
    assert [o["type"] for o in objs] == ["error", "response.failed"]
    assert [o["sequence_number"] for o in objs] == [0, 1]
    error, failed = objs
    assert error["code"] == str(code) and quoted in error["message"]
    assert error["error"]["code"] == str(code) and error["error"]["message"] == error["message"]
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["message"] == error["message"]


@pytest.mark.parametrize("endpoint", ["chat", "responses"])
def test_body_cut_short_becomes_the_terminal_error_of_the_fault(endpoint, fixed_clock):
    body = load("e_b_chat_tool_required" if endpoint == "chat" else "e_d_resp_tool_required").body
    fault = Fault("upstream_disconnected", "the upstream closed the connection")
    evs = [o for _, o in events(to_stream(body[:40], endpoint, reads=[body[:40]], fault=fault))]
    if endpoint == "chat":
        assert evs == [{"error": {"type": "server_error", "code": "upstream_disconnected", "param": None,
                                  "message": "sse-fixup: the upstream closed the connection"}}, "[DONE]"]
    else:
        assert [(o["type"], o["code"] if o["type"] == "error" else o["response"]["status"]) for o in evs] == \
            [("error", "upstream_disconnected"), ("response.failed", "failed")]


def test_factories_give_the_endpoint_s_stage():
    ctx = StreamContext(RequestInfo("chat", "/v1/chat/completions", {"stream": True}))
    assert type(json_to_stream("chat", ctx)) is ChatJSONToStream
    assert type(json_to_stream("responses", ctx)) is ResponsesJSONToStream
    assert type(stream_to_json("chat", ctx)) is ChatStreamToJSON
    assert type(stream_to_json("responses", ctx)) is ResponsesStreamToJSON
    with pytest.raises(ValueError):
        json_to_stream("embeddings", ctx)


# -- SSE → JSON on the llama-server captures -------------------------------------------------

def raw_chat_answer(body: bytes) -> tuple:
    """The text, tool calls and last finish reason a chat capture streamed, read straight
    off its chunks."""
    text, calls, reason = [], {}, None
    for _, obj in events(body):
        if obj == "[DONE]" or not obj.get("choices"):
            continue
        choice = obj["choices"][0]
        text.append(choice["delta"].get("content") or "")
        for tc in choice["delta"].get("tool_calls") or ():
            call = calls.setdefault(tc["index"], [tc.get("id"), tc["function"].get("name"), ""])
            call[2] += tc["function"].get("arguments") or ""
        reason = choice.get("finish_reason") or reason
    return "".join(text), [tuple(c) for _, c in sorted(calls.items())], reason


@pytest.mark.parametrize("name", [n for n in sse_names() if load(n).endpoint == "chat"])
def test_chat_stream_becomes_the_chat_completion(name, fixed_clock):
    cap = load(name)
    body, status = to_json(cap.chunks, "chat", cap.request)
    assert status == 200
    ChatCompletion.model_validate(body)
    text, calls, reason = raw_chat_answer(cap.body)
    (choice,) = body["choices"]
    assert (choice["message"]["content"] or "") == text
    assert calls_of(choice["message"]) == calls
    assert choice["finish_reason"] == ("tool_calls" if calls and reason == "stop" else reason)
    first = events(cap.body)[0][1]
    assert (body["id"], body["object"], body["created"], body["model"]) == \
        (first["id"], "chat.completion", first["created"], first["model"])
    if cap.request.get("stream_options"):       # the usage chunk's usage, cached tokens and all
        assert body["usage"] == last(cap.body, "usage")
        assert "cached_tokens" in body["usage"]["prompt_tokens_details"]
    if name.startswith("r_"):
        assert body["choices"][0]["message"]["reasoning_content"]
    # llama-server's extra on its last chunk stays on the body (as in its non-stream bodies)
    assert body["timings"] == last(cap.body, "timings")


@pytest.mark.parametrize("name", [n for n in sse_names() if load(n).endpoint == "responses"])
def test_responses_stream_becomes_the_response(name, fixed_clock):
    cap = load(name)
    body, status = to_json(cap.chunks, "responses", cap.request)
    assert status == 200
    Response.model_validate(body)
    objs = [o for _, o in events(cap.body)]
    text = "".join(o["delta"] for o in objs if o["type"] == "response.output_text.delta")
    args = "".join(o["delta"] for o in objs if o["type"] == "response.function_call_arguments.delta")
    terminal = objs[-1]
    assert body["status"] == terminal["response"]["status"] and body["id"] == terminal["response"]["id"]
    assert "".join(texts_of(body["output"])) == text
    assert "".join(a for *_, a in fcalls_of(body["output"])) == args
    assert body["usage"]["input_tokens"] == terminal["response"]["usage"]["input_tokens"]


def test_responses_output_comes_from_the_done_items_when_the_terminal_event_lists_none(fixed_clock):
    cap = load("d_resp_stream_tool_required")
    listed = cap.body[cap.body.index(b'"output":[{"id":"fc_'):cap.body.index(b'],"usage"') + 1]
    stripped = cap.body.replace(listed, b'"output":[]')
    assert b'"output":[]' in stripped
    body, _ = to_json([stripped], "responses", cap.request)
    full, _ = to_json(cap.chunks, "responses", cap.request)
    assert body == full and fcalls_of(body["output"])


CHAT_CHUNK = ('data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
              '"choices":[{"index":0,"delta":{"content":"par"},"finish_reason":null}]}\n\n')


@pytest.mark.parametrize("endpoint, reads, fault, code, status", [
    # cut off after some text: chat.terminal's error, not a short answer passed off as whole
    ("chat", [CHAT_CHUNK], None, "upstream_incomplete", 502),
    ("chat", [CHAT_CHUNK], Fault("upstream_idle_timeout", "nothing for 600 s"), "upstream_idle_timeout", 504),
    ("chat", [CHAT_CHUNK], Fault("proxy_shutdown", "shutting down"), "proxy_shutdown", 503),
    # llama-server's mid-stream error block: its own code is the status
    ("chat", [CHAT_CHUNK, 'data: {"error":{"code":500,"message":"boom","type":"server_error"}}\n\n'],
     None, 500, 500),
    ("responses", ['event: response.created\ndata: {"type":"response.created","response":{"id":"r1"}}\n\n'],
     None, "upstream_incomplete", 502),
    ("responses", ['event: response.created\ndata: {"type":"response.created","response":{"id":"r1"}}\n\n',
                   'data: {"error":{"code":400,"message":"too long","type":"exceed_context_size_error"}}\n\n'],
     None, "400", 400),
])
def test_stream_that_ends_in_an_error_becomes_the_error_object(endpoint, reads, fault, code, status,
                                                               fixed_clock):
    body, got = to_json([r.encode() for r in reads], endpoint, fault=fault)
    assert got == status
    assert list(body) == ["error"]
    err = body["error"]
    assert err["code"] == code and isinstance(err["message"], str) and err["message"]
    assert err["type"] and "param" in err


def test_response_failed_becomes_the_error_object(fixed_clock):
    failed = {"type": "response.failed", "response": {"id": "r1", "status": "failed", "output": [],
                                                       "error": {"code": "server_error", "message": "oom"}}}
    reads = [b'event: response.created\ndata: {"type":"response.created","response":{"id":"r1"}}\n\n',
             b"event: response.failed\ndata: " + json.dumps(failed).encode() + b"\n\n"]
    body, status = to_json(reads, "responses")
    assert status == 502
    assert body == {"error": {"code": "server_error", "message": "oom", "type": "server_error", "param": None}}


# -- round trips -----------------------------------------------------------------------------

TOOL_NAMES = st.sampled_from(["get_weather", "get_time", "search"])
ARGS = st.dictionaries(st.text(min_size=1, max_size=6),
                       st.one_of(st.integers(), st.text(max_size=8), st.booleans(), st.none()),
                       max_size=3).map(lambda d: json.dumps(d, ensure_ascii=False))
TEXT = st.text(max_size=60)


@st.composite
def chat_bodies(draw) -> dict:
    """chat.completion bodies: text, maybe reasoning_content, 0-2 tool calls with JSON
    arguments, a finish reason, usage with cached tokens."""
    calls = [{"id": f"call_{i}{draw(st.text('abcdef0123', min_size=1, max_size=8))}", "type": "function",
              "function": {"name": draw(TOOL_NAMES), "arguments": draw(ARGS)}}
             for i in range(draw(st.integers(0, 2)))]
    content = draw(st.one_of(st.none(), TEXT) if calls else TEXT)
    message = {"role": "assistant", "content": content}
    if draw(st.booleans()):
        message["reasoning_content"] = draw(TEXT)
    if calls:
        message["tool_calls"] = calls
    reason = draw(st.sampled_from(["tool_calls", "stop", "length"] if calls
                                  else ["stop", "length", "content_filter"]))
    prompt, completion = draw(st.integers(0, 5000)), draw(st.integers(0, 5000))
    cached = draw(st.integers(0, 100))
    return {"id": "chatcmpl-" + draw(st.text("abcXYZ123", min_size=1, max_size=10)),
            "object": "chat.completion",
            "created": draw(st.integers(0, 2**31)), "model": draw(st.sampled_from(["m", "qwen2.5"])),
            "choices": [{"index": 0, "message": message, "finish_reason": reason, "logprobs": None}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion,
                      "prompt_tokens_details": {"cached_tokens": cached}}}


@SETTINGS
@given(chat_bodies())
def test_chat_body_to_stream_to_body_keeps_the_answer(body):
    with fixed_ids():
        sse = to_stream(json.dumps(body).encode(), "chat", USAGE)
        check_chat_stream(events(sse), body)
        back, status = to_json([sse], "chat")
    ChatCompletion.model_validate(back)
    msg, got = body["choices"][0]["message"], back["choices"][0]["message"]
    assert status == 200
    assert got["content"] == msg["content"]
    assert got.get("reasoning_content") == msg.get("reasoning_content")
    assert calls_of(got) == calls_of(msg)
    reason = body["choices"][0]["finish_reason"]
    # (chat.finish_reason: "stop" with tool calls becomes "tool_calls")
    assert back["choices"][0]["finish_reason"] == \
        ("tool_calls" if reason == "stop" and msg.get("tool_calls") else reason)
    assert back["usage"] == body["usage"]
    assert (back["id"], back["created"], back["model"]) == (body["id"], body["created"], body["model"])


def pieces(draw, text: str) -> list[str]:
    """``text`` cut at drawn places (at least one piece)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=4)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


@st.composite
def chat_streams(draw) -> list[bytes]:
    """Chat streams as backends send them: deltas cut anywhere, llama-server's habits
    (content null on the role chunk, created changing, no [DONE]) now and then."""
    body = draw(chat_bodies())
    choice = body["choices"][0]
    msg = choice["message"]
    env = {k: body[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    deltas = [{"role": "assistant", "content": draw(st.sampled_from([None, ""]))}]
    if "reasoning_content" in msg:
        deltas += [{"reasoning_content": p} for p in pieces(draw, msg["reasoning_content"])]
    if msg["content"]:
        deltas += [{"content": p} for p in pieces(draw, msg["content"])]
    for i, call in enumerate(msg.get("tool_calls") or ()):
        first, *rest = pieces(draw, call["function"]["arguments"])
        deltas.append({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                       "function": {"name": call["function"]["name"], "arguments": first}}]})
        deltas += [{"tool_calls": [{"index": i, "function": {"arguments": p}}]} for p in rest]
    chunks = [{**env, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    chunks.append({**env, "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]})
    if draw(st.booleans()):
        chunks[-1]["timings"] = {"predicted_n": draw(st.integers(0, 99))}
    if draw(st.booleans()):
        chunks.append({**env, "choices": [], "usage": body["usage"]})
    if draw(st.booleans()):
        for c in chunks:
            c["created"] += draw(st.integers(0, 2))          # llama-server's created moves
    lines = [b"data: " + json.dumps(c, ensure_ascii=False).encode() + b"\n\n" for c in chunks]
    return lines + ([b"data: [DONE]\n\n"] if draw(st.booleans()) else [])


@SETTINGS
@given(chat_streams())
def test_chat_stream_to_body_to_stream_to_body_is_stable(reads):
    with fixed_ids():
        first, status = to_json(reads, "chat", USAGE)
        again, _ = to_json([to_stream(json.dumps(first).encode(), "chat", USAGE)], "chat", USAGE)
    assert status == 200
    ChatCompletion.model_validate(first)
    assert again == first


@st.composite
def responses_bodies(draw) -> dict:
    """response bodies: maybe a reasoning item, maybe a message, 0-2 function_call items,
    status completed or incomplete, full usage with cached tokens."""
    output = []
    if draw(st.booleans()):
        output.append({"id": "rs_1", "type": "reasoning", "summary": [], "status": "completed",
                       "content": [{"type": "reasoning_text", "text": draw(TEXT)}]})
    if draw(st.booleans()):
        output.append({"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                       "content": [{"type": "output_text", "text": draw(TEXT), "annotations": [],
                                    "logprobs": []}]})
    for i in range(draw(st.integers(0, 2))):
        output.append({"id": f"fc_{i}", "type": "function_call", "status": "completed", "call_id": f"call_{i}",
                       "name": draw(TOOL_NAMES), "arguments": draw(ARGS)})
    status = draw(st.sampled_from(["completed", "incomplete"]))
    i, o = draw(st.integers(0, 5000)), draw(st.integers(0, 5000))
    body = {"id": "resp_" + draw(st.text("abcXYZ123", min_size=1, max_size=10)), "object": "response",
            "created_at": draw(st.integers(0, 2**31)), "model": "m", "status": status, "output": output,
            "tools": [], "tool_choice": "auto", "parallel_tool_calls": True,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "usage": {"input_tokens": i, "output_tokens": o, "total_tokens": i + o,
                      "input_tokens_details": {"cached_tokens": draw(st.integers(0, 100)),
                                               "cache_write_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": draw(st.integers(0, 100))}}}
    return body


def with_summary(body: dict) -> dict:
    """``body`` as the default rules give it back: responses.reasoning_summary gives a
    reasoning item without a summary its text as the summary."""
    out = json.loads(json.dumps(body))
    # and the rest of the Open Responses ResponseResource, as the request implies it
    out = {**response_defaults(StreamContext(RequestInfo("responses"))), **out}
    out["completed_at"] = out["created_at"] if out["status"] == "completed" else None
    for item in out["output"]:
        text = "".join(c["text"] for c in item.get("content") or ())
        if item.get("type") == "reasoning" and not item.get("summary") and text:
            item["summary"] = [{"type": "summary_text", "text": text}]
    return out


@SETTINGS
@given(responses_bodies())
def test_responses_body_to_stream_to_body_keeps_the_answer(body):
    with fixed_ids():
        sse = to_stream(json.dumps(body).encode(), "responses")
        check_responses_stream(events(sse), body)
        back, status = to_json([sse], "responses")
    Response.model_validate(back)
    assert status == 200
    assert back["status"] == body["status"] and back["id"] == body["id"]
    assert texts_of(back["output"]) == texts_of(body["output"])
    assert fcalls_of(back["output"]) == fcalls_of(body["output"])
    assert back["usage"] == body["usage"]
    assert back == with_summary(body)       # here, even the whole body


@st.composite
def responses_streams(draw) -> list[bytes]:
    """Responses streams as llama-server sends them (no output_index, content_index,
    sequence_number; a bare response.created) or fully indexed, deltas cut anywhere, the
    terminal event with its output or with none."""
    body = draw(responses_bodies())
    indexed = draw(st.booleans())
    evs: list[dict] = [{"type": "response.created", "response": {"id": body["id"], "object": "response",
                                                                 "status": "in_progress"}},
                       {"type": "response.in_progress",
                        "response": {"id": body["id"], "status": "in_progress"}}]
    for n, item in enumerate(body["output"]):
        at = {"item_id": item["id"], **({"output_index": n} if indexed else {})}
        added = {**item, "status": "in_progress"}
        if item["type"] == "function_call":
            added["arguments"] = ""
            seq = [{"type": "response.function_call_arguments.delta", **at, "delta": p}
                   for p in pieces(draw, item["arguments"])]
        else:
            added["content"] = []
            (part,) = item["content"]
            kind_ = "output_text" if item["type"] == "message" else "reasoning_text"
            ci = {"content_index": 0} if indexed else {}
            seq = [{"type": "response.content_part.added", **at, **ci, "part": {**part, "text": ""}}]
            seq += [{"type": f"response.{kind_}.delta", **at, **ci, "delta": p}
                    for p in pieces(draw, part["text"])]
            seq += [{"type": f"response.{kind_}.done", **at, **ci, "text": part["text"]},
                    {"type": "response.content_part.done", **at, **ci, "part": part}]
        where = {"output_index": n} if indexed else {}
        evs += [{"type": "response.output_item.added", **where, "item": added}, *seq,
                {"type": "response.output_item.done", **where, "item": item}]
    final = {**body, "output": body["output"] if draw(st.booleans()) else []}
    evs.append({"type": TERMINAL[body["status"]], "response": final})
    if indexed:
        for k, e in enumerate(evs):
            e["sequence_number"] = k
    return [f"event: {e['type']}\ndata: {json.dumps(e, ensure_ascii=False)}\n\n".encode() for e in evs]


@SETTINGS
@given(responses_streams())
def test_responses_stream_to_body_to_stream_to_body_is_stable(reads):
    with fixed_ids():
        first, status = to_json(reads, "responses")
        again, _ = to_json([to_stream(json.dumps(first).encode(), "responses")], "responses")
    assert status == 200
    Response.model_validate(first)
    assert again == first


@SETTINGS
@given(responses_bodies().filter(lambda b: b["status"] == "completed"))
def test_openai_python_responses_client_reads_the_synthesised_stream(body):
    # (its get_final_response wants response.completed: an incomplete answer raises there)
    with fixed_ids():
        sse = to_stream(json.dumps(body).encode(), "responses")
    got = sdk_final_response(sse)
    assert got.id == body["id"] and got.status == body["status"]
    assert [i.model_dump(exclude_none=True) for i in got.output] == \
        [i.model_dump(exclude_none=True) for i in Response.model_validate(with_summary(body)).output]
