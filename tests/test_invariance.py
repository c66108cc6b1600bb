"""The output of a stream does not depend on how the upstream split its reads, and the
fast path (events passed unparsed on their rules' byte evidence) gives exactly what the
slow path (every event parsed and run through its rules) gives.

For every llama-server capture and for generated streams (compact and spaced JSON,
LF and CRLF, multi-byte UTF-8, comments, non-JSON lines, with and without [DONE]), with
the default presets and with YAML rules: one read, one event per read, one byte per
read and random cuts all give the same bytes, and the same as the parse-everything chain.
"""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sse_fixup.config import parse as parse_config

from .captures import load, sse_names
from .helpers import GOLDEN, fixed_ids, parse, transform

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

YAML_RULES = parse_config("""
rules:
  - name: reasoning-name
    match: {endpoint: chat, where: {"choices[*].delta.reasoning": exists}}
    rename: {"choices[*].delta.reasoning": "choices[*].delta.reasoning_content"}
  - name: tag-created
    match: {endpoint: responses, event: "response.created"}
    set: {response.x_tag: 1}
  - name: count-items
    match: {endpoint: responses, event: "response.output_item.*",
            where: {item.type: {equals: function_call}}}
    counter: {x_call: calls}
    stage: after
  - name: stop-only
    match: {endpoint: chat, where: {"choices[*].finish_reason": {equals: stop}}}
    set: {x_stopped: true}
""", "invariance.yaml")


def run(chunks, endpoint, request=None, cfg=None, parse_all=False) -> bytes:
    with fixed_ids():
        return transform(chunks, endpoint, request, cfg=cfg, parse_all=parse_all)


def per_event(body: bytes) -> list[bytes]:
    """One read per event (on LF or CRLF blank lines)."""
    out, pos = [], 0
    while pos < len(body):
        ends = [i for i in (body.find(b"\n\n", pos), body.find(b"\r\n\r\n", pos)) if i >= 0]
        if not ends:
            out.append(body[pos:])
            break
        end = min(ends)
        end += 4 if body.startswith(b"\r\n\r\n", end) else 2
        out.append(body[pos:end])
        pos = end
    return out


def cut(body: bytes, cuts) -> list[bytes]:
    cuts = sorted(set(c % (len(body) + 1) for c in cuts))
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]


def same_everywhere(body: bytes, endpoint: str, request=None, cfg=None, cuts=()) -> bytes:
    whole = run([body], endpoint, request, cfg)
    assert run(per_event(body), endpoint, request, cfg) == whole
    assert run(cut(body, cuts), endpoint, request, cfg) == whole
    if len(body) < 6000:
        assert run([body[i:i + 1] for i in range(len(body))], endpoint, request, cfg) == whole
    assert run(cut(body, cuts), endpoint, request, cfg, parse_all=True) == whole
    return whole


# -- the captures -----------------------------------------------------------------------

@pytest.mark.parametrize("name", sse_names())
def test_capture_output_is_the_same_for_every_chunking(name):
    cap = load(name)
    golden = (GOLDEN / f"{name}.out").read_bytes()
    assert run(cap.chunks, cap.endpoint, cap.request) == golden
    assert same_everywhere(cap.body, cap.endpoint, cap.request, cuts=range(7, len(cap.body), 97)) == golden


@SETTINGS
@given(data=st.data())
@pytest.mark.parametrize("name", sse_names())
def test_capture_under_random_cuts_and_yaml_rules(name, data):
    cap = load(name)
    cuts = data.draw(st.lists(st.integers(0, len(cap.body)), max_size=30))
    same_everywhere(cap.body, cap.endpoint, cap.request, cfg=YAML_RULES, cuts=cuts)


# -- generated streams ------------------------------------------------------------------

TEXT = st.text(st.sampled_from("ab \"\\\n\r{}:é€😀index"), max_size=6)


def encode_json(obj, spaced: bool) -> bytes:
    return json.dumps(obj).encode() if spaced else orjson.dumps(obj)


@st.composite
def chat_chunk(draw):
    choices = []
    for i in range(draw(st.integers(0, 2))):
        choice = {}
        if draw(st.booleans()):
            choice["index"] = i
        delta = draw(st.sampled_from(["content", "role", "tool", "reasoning", "empty"]))
        if delta == "content":
            choice["delta"] = {"content": draw(TEXT)}
        elif delta == "role":
            choice["delta"] = {"role": "assistant", "content": None}
        elif delta == "reasoning":
            choice["delta"] = {"reasoning": draw(TEXT)}
        elif delta == "tool":
            call = {"function": {"arguments": draw(TEXT)}}
            if draw(st.booleans()):
                call["index"] = draw(st.integers(0, 1))
            if draw(st.booleans()):
                call["id"] = draw(st.sampled_from(["c1", "c2", "", None]))
                call["function"]["name"] = draw(st.sampled_from(["f", "", None]))
                call["type"] = "function"
            choice["delta"] = {"tool_calls": draw(st.sampled_from([[call], []]))}
        else:
            choice["delta"] = {}
        finish = draw(st.sampled_from(["absent", None, None, "stop", "", "length"]))
        if finish != "absent":
            choice["finish_reason"] = finish
        choices.append(choice)
    kind = draw(st.sampled_from(["chunk"] * 6 + ["usage", "error", "bare"]))
    if kind == "error":
        return {"error": {"message": draw(TEXT), "code": 500}}
    obj = {"choices": choices if kind != "usage" else [],
           "created": draw(st.sampled_from([1, 1, 2])), "id": draw(st.sampled_from(["x", "x", "y"])),
           "model": "m", "object": "chat.completion.chunk"}
    if kind == "bare":
        del obj["created"], obj["object"]
    if kind == "usage":
        obj["usage"] = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    elif draw(st.booleans()):
        obj["usage"] = None
    return obj


RESP_TYPES = ["response.created", "response.in_progress", "response.output_item.added",
              "response.content_part.added", "response.output_text.delta",
              "response.output_text.done", "response.content_part.done",
              "response.function_call_arguments.delta", "response.output_item.done",
              "response.reasoning_text.delta", "response.completed", "error"]


@st.composite
def resp_event(draw):
    typ = draw(st.sampled_from(RESP_TYPES))
    obj = {"type": typ}
    item_id = draw(st.sampled_from(["msg_1", "fc_1", "rs_1"]))
    if typ in ("response.created", "response.in_progress", "response.completed"):
        obj["response"] = {"id": "resp_1", "status": "completed" if typ.endswith("completed") else "in_progress"}
    elif typ.startswith("response.output_item"):
        kind = {"msg_1": "message", "fc_1": "function_call", "rs_1": "reasoning"}[item_id]
        item = {"type": kind, "id": item_id}
        if kind == "function_call":
            item.update(call_id="call_1", name="f", arguments=draw(TEXT))
            if draw(st.booleans()):
                del item["id"]
        elif kind == "message":
            item["content"] = [{"type": "output_text", "text": draw(TEXT)}] if draw(st.booleans()) else []
        obj["item"] = item
    elif typ == "error":
        obj.update(code="x", message=draw(TEXT))
    else:
        obj["item_id"] = item_id
        obj["delta" if typ.endswith("delta") else "text"] = draw(TEXT)
    for key in ("output_index", "sequence_number", "content_index"):
        if draw(st.booleans()):
            obj[key] = draw(st.integers(0, 3))
    return obj


@st.composite
def stream(draw, endpoint: str):
    crlf = draw(st.booleans())
    spaced = draw(st.booleans())
    nl = b"\r\n" if crlf else b"\n"
    pieces = []
    for _ in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from(["event"] * 8 + ["comment", "non-json", "blank", "odd"]))
        if kind == "odd":                 # lone CRs, id:/retry: lines, an event: line hidden behind a CR
            pieces.append(draw(st.sampled_from([
                b"data: a\rdata: b", b'data: {"type":"error","code":"x"}\revent: error',
                b"id: 7" + nl + b'data: {"choices":[]}', b"retry: 10", b"data:" + nl + b"data: [DONE]"])) + nl + nl)
        elif kind == "comment":
            pieces.append(b": keep" + nl + nl)
        elif kind == "non-json":
            pieces.append(b"data: not json " + draw(TEXT).encode() .replace(b"\r", b"").replace(b"\n", b"")
                          + nl + nl)
        elif kind == "blank":
            pieces.append(nl)
        else:
            obj = draw(chat_chunk() if endpoint == "chat" else resp_event())
            head = b""
            if endpoint == "responses" and draw(st.integers(0, 4)):
                head = b"event: " + obj["type"].encode() + nl
            sep = draw(st.sampled_from([b"data: ", b"data:"]))
            pieces.append(head + sep + encode_json(obj, spaced) + nl + nl)
    if endpoint == "chat" and draw(st.booleans()):
        pieces.append(b"data: [DONE]" + nl + nl)
    if draw(st.integers(0, 5)) == 0:
        pieces[-1] = pieces[-1].rstrip(b"\r\n")          # an unterminated tail
    return b"".join(pieces)


REQUESTS = st.sampled_from([None, {"model": "m"}, {"model": "m", "tools": [{"type": "function", "name": "f"}]}])


@SETTINGS
@given(body=stream("chat"), cuts=st.lists(st.integers(0, 5000), max_size=12), request=REQUESTS,
       yaml=st.booleans())
def test_generated_chat_stream_same_for_every_chunking(body, cuts, request, yaml):
    same_everywhere(body, "chat", request, YAML_RULES if yaml else None, cuts)


@SETTINGS
@given(body=stream("responses"), cuts=st.lists(st.integers(0, 5000), max_size=12), request=REQUESTS,
       yaml=st.booleans())
def test_generated_responses_stream_same_for_every_chunking(body, cuts, request, yaml):
    same_everywhere(body, "responses", request, YAML_RULES if yaml else None, cuts)


# -- the reproductions of issue #10 -----------------------------------------------------

def chunk(choices, **extra) -> bytes:
    obj = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
           "choices": choices, **extra}
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def test_choice_without_index_gets_one_whatever_the_reads():
    role = chunk([{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}])
    two = chunk([{"index": 0, "delta": {"content": "a"}, "finish_reason": None},
                 {"index": 1, "delta": {"content": "b"}, "finish_reason": None}])
    bare = chunk([{"delta": {"content": "c"}, "finish_reason": None}])
    together = run([role, two + bare], "chat", {"model": "m"})
    apart = run([role, two, bare], "chat", {"model": "m"})
    assert together == apart
    assert parse(together)[2]["choices"] == [{"delta": {"content": "c"}, "finish_reason": None, "index": 0}]


def test_usage_chunk_is_evidence_of_a_complete_stream():
    """No finish_reason anywhere, a usage chunk, then EOF without [DONE]: the stream is
    complete - the finish_reason goes in before the usage chunk, no error is added."""
    body = (chunk([{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}])
            + chunk([{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                            "function": {"name": "f", "arguments": "{}"}}]},
                      "finish_reason": None}])
            + chunk([], usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}))
    out = parse(run(per_event(body), "chat", {"model": "m"}))
    assert [c["choices"] for c in out[2:3]] == [[{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]]
    assert out[3]["usage"]["total_tokens"] == 7 and out[4] == "[DONE]"
    assert not any(isinstance(c, dict) and "error" in c for c in out)
    # without the usage chunk there is no evidence of completion: the cut is reported
    cut_out = parse(run(per_event(body)[:2], "chat", {"model": "m"}))
    assert cut_out[-2]["error"]["code"] == "upstream_incomplete" and cut_out[-1] == "[DONE]"


# -- each rule's declaration on its own -------------------------------------------------

def run_alone(rule, body: bytes, cuts, request, parse_all: bool) -> bytes:
    """``body`` through a chain of ``rule`` alone: a declaration that claims too much is
    not masked by another rule that happens to parse the same event."""
    from sse_fixup.chain import Chain
    from sse_fixup.rules.base import RequestInfo, StreamContext
    from sse_fixup.sse import Decoder
    from sse_fixup.transform import SSEWriter, Transform

    with fixed_ids():
        ctx = StreamContext(RequestInfo(rule.endpoint, "/v1/x", request))
        chain = Chain(rule.endpoint, [rule], parse_all=parse_all)
        t = Transform(Decoder(), [chain.open(ctx), SSEWriter(named=rule.endpoint == "responses")], ctx)
        return b"".join(t.feed(c) for c in cut(body, cuts)) + t.close()


def _stream_rules(endpoint):
    from sse_fixup.rules import BUILTIN
    from sse_fixup.rules.declarative import DeclarativeRule
    rules = [cls for cls in BUILTIN.values() if cls.endpoint == endpoint and cls.mode == "stream"]
    return rules + [DeclarativeRule(s) for s in YAML_RULES.rules if s.endpoint == endpoint]


@pytest.mark.parametrize("endpoint", ["chat", "responses"])
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_each_rule_alone_fast_path_equals_parsing_every_event(endpoint, data):
    body = data.draw(stream(endpoint))
    cuts = data.draw(st.lists(st.integers(0, 5000), max_size=8))
    request = data.draw(REQUESTS)
    for rule in _stream_rules(endpoint):
        fast = run_alone(rule, body, cuts, request, parse_all=False)
        assert fast == run_alone(rule, body, cuts, request, parse_all=True), rule.name
