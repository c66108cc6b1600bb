"""The strict validator (sse_fixup/validate): what it finds, and that it agrees with the clients.

Specifications: a stream in, the findings (position, field, defect id, rule) out; every
defect class found in the llama-server captures with its catalogue id and gone after
the default presets; and the validator cross-checked against openai-python's own pydantic
types, event by event, over every capture and every patched golden output.
"""

import json
import logging

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter, ValidationError

from sse_fixup.rules.base import RequestInfo, StreamContext
from sse_fixup.rules.responses import spec_defaults
from sse_fixup.sse import Decoder, Event
from sse_fixup.validate import LiveCheck, StreamValidator, check_body, check_event, check_stream
from sse_fixup.validate.catalogue import OPENAI_PY, SPEC
from sse_fixup.validate.live import FirstOfKind

from . import openresponses_support as ors
from .captures import all_names, load
from .helpers import transform

NAMES = [n for n in all_names() if not n.startswith("g_")]     # g_*: /health, /models, /props
RESP_EVENT = TypeAdapter(ResponseStreamEvent)


def sse(*objs) -> bytes:
    out = b""
    for obj in objs:
        if obj == "[DONE]":
            out += b"data: [DONE]\n\n"
        else:
            out += (f"event: {obj['type']}\n" if "type" in obj else "").encode() + \
                b"data: " + json.dumps(obj).encode() + b"\n\n"
    return out


def ids(findings) -> list:
    return [(f.position, f.field, f.defect, f.rule) for f in findings]


def patched(name: str) -> bytes:
    cap = load(name)
    return transform(cap.chunks, cap.endpoint, cap.request, mode="stream" if cap.is_sse else "body")


# -- clean streams: nothing to find --------------------------------------------------------

RESPONSE = {**spec_defaults(RequestInfo("responses", "", {"model": "m"}), 1),   # every Open Responses field
            "id": "resp_1", "status": "in_progress", "output": [], "usage": None}
MSG = {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
PART = {"type": "output_text", "text": "", "annotations": []}


def text_stream(**over):
    """A minimal valid Responses text stream (openai-python's view), with overrides by position."""
    done_msg = {**MSG, "status": "completed", "content": [{**PART, "text": "hi"}]}
    usage = {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2,
             "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
             "output_tokens_details": {"reasoning_tokens": 0}}
    evs = [
        {"type": "response.created", "sequence_number": 0, "response": RESPONSE},
        {"type": "response.output_item.added", "sequence_number": 1, "output_index": 0, "item": MSG},
        {"type": "response.content_part.added", "sequence_number": 2, "item_id": "msg_1", "output_index": 0,
         "content_index": 0, "part": PART},
        {"type": "response.output_text.delta", "sequence_number": 3, "item_id": "msg_1", "output_index": 0,
         "content_index": 0, "delta": "hi", "logprobs": []},
        {"type": "response.output_item.done", "sequence_number": 4, "output_index": 0, "item": done_msg},
        {"type": "response.completed", "sequence_number": 5,
         "response": {**RESPONSE, "status": "completed", "completed_at": 2, "output": [done_msg], "usage": usage}},
    ]
    for pos, change in over.items():
        i = int(pos[1:])
        evs[i] = change(json.loads(json.dumps(evs[i])))
    return evs


def openai_findings(findings):
    return [f for f in findings if OPENAI_PY in f.clients]


def test_a_valid_text_stream_has_no_findings():
    assert check_stream(sse(*text_stream()), "responses") == []
    for obj in text_stream():
        ors.check_event(obj)                 # the Open Responses schema agrees


# -- Responses: one defect each, with its id and rule ----------------------------------------

def drop(key):
    def change(obj):
        obj.pop(key)
        return obj
    return change


def put(key, value):
    def change(obj):
        obj[key] = value
        return obj
    return change


@pytest.mark.parametrize("over, expected", [
    ({"e1": drop("output_index")}, (1, "output_index", "R1", "responses.output_index")),
    ({"e3": drop("logprobs")}, (3, "logprobs", "R14", "responses.text_parts")),
    ({"e2": drop("content_index")}, (2, "content_index", "R5", "responses.content_index")),
    ({"e4": put("sequence_number", 2)}, (4, "sequence_number", "R13", "responses.sequence_number")),
    ({"e2": put("content_index", 1)}, (2, "content_index", "R6", "responses.content_index")),
    ({"e3": put("output_index", 1)}, (3, "output_index", "R1", "responses.output_index")),
    ({"e1": put("output_index", 3)}, (1, "output_index", "R18", "responses.output_index")),
    ({"e3": put("item_id", "msg_x")}, (3, "item_id", "R11", "")),
    ({"e0": put("response", {"id": "resp_1", "object": "response", "status": "in_progress"})},
     (0, "response.created_at", "R1", "responses.response_skeleton")),
    ({"e5": lambda o: {**o, "response": {k: v for k, v in o["response"].items() if k != "tools"}}},
     (5, "response.tools", "R10", "responses.response_skeleton")),
    ({"e5": lambda o: {**o, "response": {**o["response"], "usage": {"input_tokens": 1, "output_tokens": 1}}}},
     (5, "response.usage.total_tokens", "R12", "responses.usage")),
])
def test_each_responses_defect_is_named_with_its_id_and_rule(over, expected):
    found = ids(check_stream(sse(*text_stream(**over)), "responses"))
    assert expected in found, found


def test_a_stream_without_its_terminal_event():
    found = check_stream(sse(*text_stream()[:-1]), "responses")
    assert (None, "type", "R7", "responses.terminal") in ids(found)
    assert found[0].describe().startswith("stream: type the stream ended without response.completed")


def test_events_after_the_terminal_and_a_second_terminal():
    evs = text_stream()
    found = ids(check_stream(sse(*evs, {**evs[-1], "sequence_number": 6}), "responses"))
    assert (6, "type", "R7", "") in found


def test_an_item_closed_twice_and_one_never_closed():
    evs = text_stream()
    twice = ids(check_stream(sse(*evs[:5], {**evs[4], "sequence_number": 5},
                                 {**evs[5], "sequence_number": 6}), "responses"))
    assert (5, "item.id", "R11", "") in twice
    never = ids(check_stream(sse(*evs[:4], evs[5]), "responses"))
    assert (4, "response", "R11", "") in never


def test_first_event_must_be_response_created():
    found = ids(check_stream(sse(*text_stream()[1:]), "responses"))
    assert (0, "type", "R11", "") in found


def test_llama_server_bare_error_block_and_numeric_codes():
    bare = check_event({"error": {"code": 500, "message": "boom"}}, "responses")
    assert [(p[0], p[2], p[4]) for p in bare] == [("type", "llama#13", "responses.error_event")]
    flat = check_event({"type": "error", "sequence_number": 1, "code": 500, "message": "boom"}, "responses")
    assert ("code", "R2") in [(p[0], p[2]) for p in flat]
    assert ("error", "R16") in [(p[0], p[2]) for p in flat]        # the AI SDK reads the nested object


def test_function_call_done_with_empty_arguments_loses_the_call_in_the_aisdk():
    fc = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f", "arguments": ""}
    evs = [{"type": "response.created", "sequence_number": 0, "response": RESPONSE},
           {"type": "response.output_item.added", "sequence_number": 1, "output_index": 0, "item": fc},
           {"type": "response.function_call_arguments.delta", "sequence_number": 2, "item_id": "fc_1",
            "output_index": 0, "delta": "{}"},
           {"type": "response.output_item.done", "sequence_number": 3, "output_index": 0,
            "item": {**fc, "status": "completed"}}]
    found = ids(check_stream(sse(*evs), "responses"))
    assert (3, "item.arguments", "R11", "responses.function_call_items") in found
    assert (3, "type", "llama#6", "responses.function_call_items") in found   # no arguments.done


def test_one_model_on_every_lifecycle_event():
    evs = text_stream(e5=lambda o: {**o, "response": {**o["response"], "model": "models/x.gguf"}})
    found = ids(check_stream(sse(*evs), "responses"))
    assert (5, "response.model", "llama#12", "responses.model_name") in found


# -- chat -------------------------------------------------------------------------------------

def chunk(delta=None, finish=None, **top):
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}], **top}


def call(index=0, id=None, name=None, args=None):
    fn = {k: v for k, v in (("name", name), ("arguments", args)) if v is not ...}
    out = {"index": index, "function": {k: v for k, v in fn.items() if v is not None}}
    if id is not None:
        out["id"] = id
        out["type"] = "function"
    return out


CLEAN_TOOL = [chunk({"role": "assistant", "content": None}),
              chunk({"tool_calls": [call(0, "call_1", "f", "")]}),
              chunk({"tool_calls": [call(0, args='{"a":1}')]}),
              chunk({}, "tool_calls"), "[DONE]"]


def test_a_valid_tool_call_stream_has_no_findings():
    assert check_stream(sse(*CLEAN_TOOL), "chat") == []


@pytest.mark.parametrize("stream, expected", [
    ([chunk({"tool_calls": [{"function": {"arguments": "{}"}}]}), chunk({}, "tool_calls"), "[DONE]"],
     (0, "choices[0].delta.tool_calls[0].index", "C1", "chat.tool_call_deltas")),
    ([chunk({"tool_calls": [call(0, args="{}")]}), chunk({}, "tool_calls"), "[DONE]"],
     (0, "choices[0].delta.tool_calls[0].id", "C5", "chat.tool_call_deltas")),
    ([CLEAN_TOOL[1], chunk({"tool_calls": [call(0, "call_2", "g", "{}")]}), chunk({}, "tool_calls"), "[DONE]"],
     (1, "choices[0].delta.tool_calls[0].index", "C2", "chat.tool_call_deltas")),
    ([CLEAN_TOOL[1], chunk({"tool_calls": [{"index": 0, "function": {"name": None, "arguments": "{}"}}]}),
      chunk({}, "tool_calls"), "[DONE]"],
     (1, "choices[0].delta.tool_calls[0].function.name", "C10", "chat.tool_call_deltas")),
    ([CLEAN_TOOL[1], chunk({"tool_calls": [{"index": 0, "function": {"name": "", "arguments": "{}"}}]}),
      chunk({}, "tool_calls"), "[DONE]"],
     (1, "choices[0].delta.tool_calls[0].function.name", "C9", "chat.tool_call_deltas")),
    ([CLEAN_TOOL[1], chunk({}, "stop"), "[DONE]"], (1, "choices[0].finish_reason", "E4", "chat.finish_reason")),
    ([chunk({"content": "hi"}), chunk({}, "stop")], (None, "data", "E7", "chat.done")),
    ([chunk({"content": "hi"}), "[DONE]"], (None, "finish_reason", "E5", "chat.finish_reason")),
    ([chunk({"content": "hi"}), {**chunk({}, "stop"), "created": 2}, "[DONE]"], (1, "created", "E13", "chat.envelope")),
    ([{k: v for k, v in chunk({"content": "hi"}).items() if k != "id"}, chunk({}, "stop"), "[DONE]"],
     (0, "id", "E13", "chat.envelope")),
    ([chunk({"content": "hi", "tool_calls": []}), chunk({}, "stop"), "[DONE]"],
     (0, "choices[0].delta.tool_calls", "C14", "chat.tool_call_deltas")),
    ([chunk({"content": "hi"}), chunk({}, ""), "[DONE]"], (1, "choices[0].finish_reason", "E2", "chat.finish_reason")),
    ([chunk({"content": "hi"}), chunk({}, "stop"), "[DONE]", chunk({"content": "late"})], (3, "data", "E7", "chat.done")),
])
def test_each_chat_defect_is_named_with_its_id_and_rule(stream, expected):
    found = ids(check_stream(sse(*stream), "chat"))
    assert expected in found, found


# -- the captures: known defects before, none after ---------------------------------------------

KNOWN = {   # the defect classes each kind of llama-server b11434 capture shows (reference notes)
    "c_resp_stream_text": {"R1", "R3", "R4", "R5", "R10", "R13", "R14", "R15", "OR"},
    "d_resp_stream_tool_required": {"R1", "R3", "R4", "R10", "R13", "R15", "llama#6", "OR"},
    "e_c_resp_text": {"R3", "R4", "R10", "OR"},
    "b_chat_stream_tool_required": {"E13"},
}


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_the_captures_show_their_known_defects(name):
    cap = load(name)
    found = check_stream(cap.body, cap.endpoint) if cap.is_sse else check_body(cap.body, cap.endpoint)
    assert {f.defect for f in found} == KNOWN[name]
    assert all(f.rule for f in found)          # each one has a built-in fix


@pytest.mark.parametrize("name", ["c_resp_stream_text", "e_c_resp_text"])
def test_given_the_request_the_backends_model_name_is_a_defect(name):
    cap = load(name)
    check = check_stream if cap.is_sse else check_body
    [f] = [f for f in check(cap.body, "responses", cap.request) if f.defect == "llama#12"]
    assert f.problem == "'models/tiny-qwen25-toolcall.gguf', not the requested 'tiny'"
    assert f.rule in ("responses.model_name", "responses.body_model_name")


@pytest.mark.parametrize("name", [n for n in NAMES if not n.startswith("f_err")])
def test_every_capture_is_clean_after_the_default_presets(name, fixed_clock):
    cap = load(name)
    out = patched(name)
    found = check_stream(out, cap.endpoint, cap.request) if cap.is_sse else check_body(out, cap.endpoint, cap.request)
    assert [f.describe() for f in found] == []


# -- the cross-check: the validator agrees with openai-python's own types --------------------------

def openai_accepts(obj, endpoint: str, body: bool) -> bool:
    try:
        if body:
            (Response if endpoint == "responses" else ChatCompletion).model_validate(obj)
        elif endpoint == "responses":
            RESP_EVENT.validate_python(obj)
        else:
            ChatCompletionChunk.model_validate(obj)
    except ValidationError:
        return False
    return True


def agreement(data: bytes, endpoint: str, sse_stream: bool):
    """Per event: (position, the validator says openai-python breaks, openai-python rejects)."""
    if not sse_stream:
        obj = json.loads(data)
        mine = [f for f in check_body(obj, endpoint) if OPENAI_PY in f.clients]
        return [(0, bool(mine), not openai_accepts(obj, endpoint, True))]
    d = Decoder()
    objs = [e.json for e in d.feed(data) + d.close() if e.json is not None]
    return [(i, any(OPENAI_PY in p[3] for p in check_event(o, endpoint)), not openai_accepts(o, endpoint, False))
            for i, o in enumerate(objs)]


SYNTHETIC = [sse(*text_stream(e1=drop("output_index"), e3=drop("logprobs"), e0=put("sequence_number", "0"))),
             sse(*text_stream(e0=put("response", {"id": "r", "status": "in_progress"}))),
             sse({"type": "error", "code": 500, "message": "x", "sequence_number": 1}),
             sse(*CLEAN_TOOL), sse(chunk({"tool_calls": [{"function": {"arguments": "{}"}}]})),
             sse(chunk({"role": "robot"})), sse({**chunk({}), "choices": [{"delta": {}}]})]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("which", ["as captured", "after the default presets"])
def test_validator_and_openai_python_agree_on_every_event(name, which, fixed_clock):
    cap = load(name)
    data = cap.body if which == "as captured" else patched(name)
    if not cap.is_sse and cap.status >= 400 or data.strip()[:1] != b"{" and not cap.is_sse:
        pytest.skip("an HTTP error body, not a response")
    rows = agreement(data, cap.endpoint, cap.is_sse)
    assert rows and [r for r in rows if r[1] != r[2]] == []


@pytest.mark.parametrize("i", range(len(SYNTHETIC)))
def test_validator_and_openai_python_agree_on_synthetic_defects(i):
    endpoint = "responses" if b"event:" in SYNTHETIC[i] else "chat"
    rows = agreement(SYNTHETIC[i], endpoint, True)
    assert [r for r in rows if r[1] != r[2]] == []
    assert any(r[2] for r in rows) or i == 3      # each but the clean one is rejected


# -- the Open Responses schema (issue 16 item 0) -----------------------------------------------------

@pytest.mark.parametrize("name", [n for n in NAMES if load(n).endpoint == "responses" and not n.startswith("f_err")])
def test_patched_responses_validate_against_the_open_responses_schema(name, fixed_clock):
    cap = load(name)
    out = patched(name)
    if cap.is_sse:
        d = Decoder()
        objs = [e.json for e in d.feed(out) + d.close() if e.json is not None]
        for obj in objs:
            ors.check_event(obj)
        models = {o["response"]["model"] for o in objs if "response" in o}
        assert models == {cap.request["model"]}          # one model, the requested one
        done = objs[-1]["response"]
        assert isinstance(done["completed_at"], int) and done["completed_at"] >= done["created_at"]
    else:
        ors.check_body(json.loads(out))
    found = check_stream(out, "responses") if cap.is_sse else check_body(out, "responses")
    assert [f for f in found if SPEC in f.clients] == []


def test_the_raw_captures_fail_the_open_responses_schema():
    """The vendored schema can fail: llama-server's own created event does."""
    obj = next(e.json for e in Decoder().feed(load("c_resp_stream_text").body) if e.json is not None)
    with pytest.raises(ValidationError):
        ors.check_event(obj)


# -- live conformance ------------------------------------------------------------------------------------

def events_of(data: bytes):
    d = Decoder()
    return d.feed(data) + d.close()


def test_live_check_passes_the_very_list_and_reports_at_the_end():
    got = []
    ctx = StreamContext(RequestInfo("responses", "/v1/responses", {"model": "m"}))
    stage = LiveCheck("responses", ctx, got.append)
    evs = events_of(sse(*text_stream(e3=drop("logprobs"))))
    for ev in evs:
        batch = [ev]
        assert stage.push(batch) is batch
        assert not ev.changed
    assert got == []                         # nothing before the end
    assert stage.end() == []
    [pairs] = got
    assert [(f.position, f.field, f.defect) for f, _ in pairs] == [(3, "logprobs", "R14")]
    assert b'"response.output_text.delta"' in pairs[0][1]     # the event, for the log line


def test_live_check_on_a_clean_stream_reports_nothing():
    got = []
    stage = LiveCheck("chat", None, got.append)
    stage.push(events_of(sse(*CLEAN_TOOL)))
    stage.end()
    assert got == []


def test_live_check_of_a_body():
    got = []
    stage = LiveCheck("responses", None, got.append, mode="body")
    body = json.dumps({**RESPONSE, "status": "completed", "output": None}).encode()
    stage.push([Event(body, None, body)])
    stage.end()
    assert ("output", "R15") in [(f.field, f.defect) for f, _ in got[0]]


def test_first_of_each_kind_per_hour_is_logged(caplog):
    clock = [0.0]
    log = FirstOfKind(clock=lambda: clock[0])
    found = check_stream(sse(*text_stream(e3=drop("logprobs"), e2=drop("content_index"))), "responses")
    pairs = [(f, b"{...}") for f in found]
    with caplog.at_level(logging.WARNING, "sse_fixup.validate"):
        first = log(pairs, "default")
        again = log(pairs, "default")
        other = log(pairs, "route-2")
        clock[0] = 3601
        later = log(pairs, "default")
    assert sorted(f.defect for f in first) == ["R14", "R5"]
    assert again == [] and len(other) == 2 and len(later) == 2
    assert len(caplog.records) == 6
    assert "R14" in caplog.text and "event: {...}" in caplog.text


def test_streaming_validator_takes_events_one_at_a_time():
    v = StreamValidator("chat")
    for ev in events_of(sse(*CLEAN_TOOL)):
        v.add(ev)
    assert v.end() == []


# -- live conformance through a proxy -------------------------------------------------------------------

async def test_live_conformance_counts_what_the_rules_leave(aiohttp_server, aiohttp_client, tmp_path, caplog):
    from sse_fixup.config import load as load_config
    from sse_fixup.proxy import create_app

    from .helpers import metric
    from .upstreams import Scripted

    upstream = await aiohttp_server(Scripted(load("c_resp_stream_text").chunks).app)
    path = tmp_path / "c.yaml"
    # rules that do not fix what this stream lacks: sequence_number, logprobs stay missing
    path.write_text(f"upstream: {str(upstream.make_url('')).rstrip('/')}\n"
                    "disable: [responses.sequence_number, responses.text_parts]\nvalidate: {sample: 1.0}\n")
    client = await aiohttp_client(create_app(load_config(str(path))))
    with caplog.at_level(logging.WARNING, "sse_fixup.validate"):
        for _ in range(2):
            resp = await client.post("/v1/responses", json={"model": "tiny", "input": "hi", "stream": True})
            body = await resp.read()
            assert b"response.completed" in body
    text = await metric(client, "sse_fixup_conformance_violations_total")
    counts = {line.split("defect=\"")[1].split("\"")[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines()}
    n = len([e for e in events_of(load("c_resp_stream_text").body) if e.data])
    assert counts["R13"] == 2 * n and counts["R14"] > 0       # every event, both streams
    assert "R5" not in counts                                 # content_index: fixed by the rules
    logged = [r.getMessage() for r in caplog.records if "conformance" in r.getMessage()]
    assert sum("[R13]" in m for m in logged) == 1             # the first of its kind this hour, once
    assert any('"type":"response.created"' in m for m in logged)
