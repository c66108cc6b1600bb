"""Rules one by one: a few events in, the exact events out."""

import json

from sse_fixup.chain import Chain
from sse_fixup.config import parse
from sse_fixup.rules import BUILTIN
from sse_fixup.rules.base import RequestInfo, Rule, StreamContext
from sse_fixup.sse import Decoder
from sse_fixup.transform import SSEWriter, Transform

from .helpers import transform


def run(rule_names, events, endpoint="chat", body=None, extra=()):
    chain = Chain(endpoint, [BUILTIN[n] for n in rule_names] + list(extra))
    raw = b"".join(
        (b"event: %s\n" % e["type"].encode() if endpoint == "responses" and "type" in e else b"")
        + b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n"
        for e in events)
    ctx = StreamContext(RequestInfo(endpoint, "/v1/x", body or {}))
    t = Transform(Decoder(), [chain.open(ctx), SSEWriter(named=endpoint == "responses")], ctx)
    out = t.feed(raw) + t.close()
    return [json.loads(line[6:]) if line[6:7] == b"{" else line[6:].decode()
            for line in out.split(b"\n") if line.startswith(b"data: ")]


def chunk(delta, finish=None, **extra):
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def tc(**kw):
    return {"tool_calls": [kw]}


def test_tool_call_deltas_canonical_first_and_continuation():
    # SGLang/vLLM repeat id and name on every delta (C8/C9); null name on continuations (C10)
    out = run(["chat.tool_call_deltas"], [
        chunk(tc(index=0, id="a", type="function", function={"name": "f", "arguments": "{"})),
        chunk(tc(index=0, id="a", type="function", function={"name": None, "arguments": "}"})),
    ])
    assert out[0]["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": "{"}}]
    assert out[1]["choices"][0]["delta"]["tool_calls"] == [{"index": 0, "function": {"arguments": "}"}}]


def test_tool_call_deltas_missing_index_id_and_function(fixed_clock):
    # Ollama <=0.4.6 (C1): no index; vLLM (C5): no id on the first delta; no function object
    out = run(["chat.tool_call_deltas"], [
        chunk(tc(function={"name": "f", "arguments": {"x": 1}})),
        chunk(tc(index=0)),
    ])
    first = out[0]["choices"][0]["delta"]["tool_calls"][0]
    assert first == {"function": {"name": "f", "arguments": '{"x":1}'}, "index": 0,
                     "id": "call_000000000000000000000001", "type": "function"}
    assert out[1]["choices"][0]["delta"]["tool_calls"] == [{"index": 0, "function": {}}]


def test_parallel_calls_reusing_index_zero_are_reindexed():
    # Ollama 0.20 / llama.cpp b7622 (C2/C3): a second call with a new id at index 0
    out = run(["chat.tool_call_deltas"], [
        chunk(tc(index=0, id="a", function={"name": "f", "arguments": "{}"})),
        chunk(tc(index=0, id="b", function={"name": "g", "arguments": "{}"})),
    ])
    assert out[1]["choices"][0]["delta"]["tool_calls"][0]["index"] == 1


def test_finish_reason_stop_with_tool_calls_becomes_tool_calls():
    out = run(["chat.finish_reason"], [
        chunk(tc(index=0, id="a", function={"name": "f", "arguments": "{}"})),
        chunk({}, "stop"), b"[DONE]"])
    assert out[1]["choices"][0]["finish_reason"] == "tool_calls"
    assert out[-1] == "[DONE]"


CHAT_END = ["chat.envelope", "chat.finish_reason", "chat.terminal", "chat.done"]


def test_done_without_finish_reason_gets_a_finish_chunk():
    out = run(CHAT_END, [chunk({"content": "hi"}), b"[DONE]"])
    assert out[1]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert out[1]["id"] == "c1" and out[2] == "[DONE]" and len(out) == 3


def test_finish_reason_without_done_gets_done_only():
    out = run(CHAT_END, [chunk({"content": "hi"}), chunk({}, "stop")])
    assert out[2:] == ["[DONE]"]


def test_stream_cut_before_finish_reason_ends_in_error_chunk_and_done():
    out = run(CHAT_END, [chunk({"content": "hi"})])
    assert out[1] == {"error": {"type": "server_error", "code": "upstream_incomplete", "param": None,
                                "message": "sse-fixup: the upstream ended the stream without its "
                                           "terminal event"}}
    assert out[2:] == ["[DONE]"]


def test_upstream_error_chunk_is_not_doubled():
    out = run(CHAT_END, [chunk({"content": "hi"}), {"error": {"message": "boom"}}])
    assert out[1:] == [{"error": {"message": "boom"}}, "[DONE]"]


RESP_END = ["responses.response_skeleton", "responses.error_event", "responses.terminal",
            "responses.sequence_number"]


def test_responses_stream_without_completed_ends_in_error_and_failed(fixed_clock):
    out = run(RESP_END, [{"type": "response.created", "response": {"id": "resp_1"}},
                         {"type": "response.output_text.delta", "delta": "hi"}], "responses",
              body={"model": "m"})
    err, failed = out[2:]
    assert err["type"] == "error" and err["code"] == "upstream_incomplete"
    assert err["error"]["code"] == "upstream_incomplete" and err["sequence_number"] == 2
    assert failed["type"] == "response.failed" and failed["sequence_number"] == 3
    resp = failed["response"]
    assert (resp["id"], resp["status"], resp["model"]) == ("resp_1", "failed", "m")
    assert resp["error"]["code"] == "upstream_incomplete"


def test_responses_upstream_error_gets_failed_but_no_second_error(fixed_clock):
    out = run(RESP_END, [{"type": "response.created", "response": {}},
                         {"error": {"code": 500, "message": "boom"}}], "responses")
    assert [e["type"] for e in out] == ["response.created", "error", "response.failed"]
    assert out[1]["message"] == "boom"


def test_responses_completed_stream_gets_nothing_added():
    events = [{"type": "response.created", "response": {}},
              {"type": "response.completed", "response": {}}]
    assert [e["type"] for e in run(RESP_END, events, "responses")] == \
        ["response.created", "response.completed"]


def test_envelope_pins_created_and_id():
    out = run(["chat.envelope"], [chunk({"content": "a"}), {**chunk({"content": "b"}), "created": 2, "id": "c2"}])
    assert [(c["id"], c["created"]) for c in out] == [("c1", 1), ("c1", 1)]


def test_choice_index_defaulted():
    c = chunk({"content": "a"})
    del c["choices"][0]["index"]
    assert run(["chat.choice_index"], [c])[0]["choices"][0]["index"] == 0


def test_responses_error_block_becomes_valid_error_event():
    out = run(["responses.error_event", "responses.sequence_number"],
              [{"error": {"code": 500, "message": "boom", "type": "server_error"}}], "responses")
    assert out == [{"type": "error", "code": "500", "message": "boom", "param": None,
                    "error": {"type": "server_error", "code": "500", "message": "boom", "param": None},
                    "sequence_number": 0}]


def test_sequence_number_steps_past_upstream_values():
    out = run(["responses.sequence_number"], [
        {"type": "a"}, {"type": "b", "sequence_number": 7}, {"type": "c"}, {"type": "d", "sequence_number": 3}],
        "responses")
    assert [e["sequence_number"] for e in out] == [0, 7, 8, 9]


def test_content_index_resets_per_item():
    # vLLM #45742 (R6): a message after a reasoning item must start at content_index 0
    out = run(["responses.content_index"], [
        {"type": "response.content_part.added", "item_id": "r", "part": {}},
        {"type": "response.content_part.added", "item_id": "r", "part": {}},
        {"type": "response.content_part.added", "item_id": "m", "part": {}},
        {"type": "response.output_text.delta", "item_id": "m", "delta": "x"},
    ], "responses")
    assert [e["content_index"] for e in out] == [0, 1, 0, 0]


def test_function_call_without_id_gets_one_and_deltas_follow(fixed_clock):
    # llama.cpp March 2026 (R1b): only call_id on the item
    out = run(["responses.function_call_items", "responses.output_index"], [
        {"type": "response.output_item.added",
         "item": {"type": "function_call", "call_id": "call_x", "name": "f", "arguments": ""}},
        {"type": "response.function_call_arguments.delta", "delta": "{}"},
        {"type": "response.output_item.done",
         "item": {"type": "function_call", "call_id": "call_x", "name": "f", "arguments": ""}},
    ], "responses")
    assert out[0]["item"]["id"] == "fc_x" and out[0]["output_index"] == 0
    assert out[1]["item_id"] == "fc_x" and out[1]["output_index"] == 0
    assert out[2] == {"type": "response.function_call_arguments.done", "item_id": "fc_x",
                      "name": "f", "arguments": "{}", "output_index": 0}
    assert out[3]["item"] == {"type": "function_call", "call_id": "call_x", "name": "f",
                              "arguments": "{}", "id": "fc_x", "status": "completed"}


class Boom(Rule):
    name = "test.boom"
    endpoint = "chat"

    def apply(self, obj, ctx):
        obj["half"] = True
        raise ValueError("bad rule")


def test_failing_rule_passes_event_unchanged_and_is_logged_once(caplog):
    raw = [chunk({"content": "a"}), chunk({"content": "b"})]
    data = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in raw)
    ctx = StreamContext(RequestInfo("chat"))
    t = Transform(Decoder(), [Chain("chat", [Boom]).open(ctx), SSEWriter(named=False)], ctx)
    out = t.feed(data) + t.close()
    assert out == data
    assert ctx.failures == {"test.boom": "ValueError: bad rule"}
    assert len([r for r in caplog.records if "test.boom" in r.getMessage()]) == 1


def test_non_json_and_comments_pass_unchanged():
    data = b": hello\n\ndata: not json\n\ndata: {\"choices\":[}\n\n\x00\xff garbage\n\ndata: [DONE]\n\n"
    assert transform([data], "chat") == data


def test_declarative_rule_actions():
    cfg = parse("""
rules:
  - name: meta
    match: {endpoint: responses, event: "response.created", where: {response.model: missing}}
    default: {response.model: $request.model, response.created_at: $now}
    set: {response.x_proxy: true}
  - name: ids
    match: {endpoint: responses, event: "response.output_item.*", where: {item.type: {equals: function_call}}}
    copy: {item.id: item.call_id}
    counter: {output_index: items}
  - name: tidy
    match: {endpoint: chat}
    rename: {"choices[*].finishReason": "choices[*].finish_reason"}
    delete: [timings]
    from_request: {model: model}
""", "t.yaml")
    cfg.presets = []
    data = (b'event: response.created\ndata: {"type":"response.created","response":{"id":"r"}}\n\n'
            b'event: response.output_item.added\ndata: {"type":"response.output_item.added","item":{"type":"function_call","call_id":"c"}}\n\n'
            b'event: response.output_item.added\ndata: {"type":"response.output_item.added","item":{"type":"message","id":"m"}}\n\n')
    out = [json.loads(l[6:]) for l in transform([data], "responses", {"model": "qwen"}, cfg=cfg).split(b"\n")
           if l.startswith(b"data")]
    assert out[0]["response"]["model"] == "qwen" and out[0]["response"]["x_proxy"] is True
    assert isinstance(out[0]["response"]["created_at"], int)
    assert out[1]["item"]["id"] == "c" and out[1]["output_index"] == 0
    assert "output_index" not in out[2]
    data = b'data: {"choices":[{"finishReason":"stop"}],"timings":{}}\n\n'
    out = json.loads(transform([data], "chat", {"model": "q"}, cfg=cfg).split(b"\n")[0][6:])
    assert out == {"choices": [{"finish_reason": "stop"}], "model": "q"}


def test_request_info_keeps_what_rules_read_not_the_conversation():
    body = {"model": "m", "tools": [{"type": "function"}], "tool_choice": "required",
            "messages": [{"role": "user", "content": "x" * 10000}], "input": "y", "instructions": "z"}
    info = RequestInfo("chat", "/v1/chat/completions", body)
    assert (info.model, info.tools, info.get("tool_choice")) == ("m", body["tools"], "required")
    assert info.get("messages") is None and info.get("input") is None and info.get("instructions") is None
