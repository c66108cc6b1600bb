"""Reasoning rules (sse_fixup/rules/reasoning.py): events in, the exact events out; the
llama-server reasoning captures through each rule and the default presets against
openai-python's types and the real clients; <think> splitting under every chunking; each
rule's touch declaration against the chain that parses every event."""

from __future__ import annotations

import asyncio
import json
import shutil

import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from sse_fixup.chain import BodyChain, Chain
from sse_fixup.presets import PRESETS
from sse_fixup.rules import BUILTIN
from sse_fixup.rules.base import RequestInfo, StreamContext
from sse_fixup.rules.reasoning import (
    BODY_RULES, STREAM_RULES, DropChatReasoning, DropChatReasoningBody, DropResponsesReasoning,
    DropResponsesReasoningBody, Reasoning, ReasoningBody, ReasoningContent, ReasoningContentBody,
    ReasoningSummary, ReasoningSummaryBody, ThinkSplitter, ThinkTags, ThinkTagsBody, ThinkTagsOpened,
    ThinkTagsOpenedBody)
from sse_fixup.sse import Decoder
from sse_fixup.transform import SSEWriter, Transform

from .captures import load
from .helpers import NODE_DIR, fixed_ids, parse

RESP_EVENT = TypeAdapter(ResponseStreamEvent)


# -- driving a chain ------------------------------------------------------------------------

def encode(events, endpoint: str) -> bytes:
    """SSE for ``events`` (dicts, or raw data bytes); Responses events named by their type."""
    out = []
    for e in events:
        head = b"event: %s\n" % e["type"].encode() if endpoint == "responses" and isinstance(e, dict) \
            and "type" in e else b""
        out.append(head + b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n")
    return b"".join(out)


def stream(rules, raw: bytes, endpoint: str, request=None, reads=None, parse_all=False) -> bytes:
    """``raw`` through ``Chain(endpoint, rules)``, arriving in ``reads`` (default: one read)."""
    ctx = StreamContext(RequestInfo(endpoint, "/v1/x", request or {}))
    chain = Chain(endpoint, list(rules), parse_all=parse_all)
    t = Transform(Decoder(), [chain.open(ctx), SSEWriter(named=endpoint == "responses")], ctx)
    return b"".join(t.feed(c) for c in (reads if reads is not None else [raw])) + t.close()


def run(rules, events, endpoint="chat", request=None):
    return parse(stream(rules, encode(events, endpoint), endpoint, request))


def body(rules, obj, endpoint="chat"):
    ctx = StreamContext(RequestInfo(endpoint, "/v1/x", {}))
    BodyChain(endpoint, list(rules)).apply(obj, ctx)
    return obj


def preset(endpoint: str) -> list:
    """The endpoint's preset without the rules of this module (the tests put them first)."""
    from sse_fixup.rules import reasoning
    return [BUILTIN[n] for n in PRESETS[endpoint][1] if BUILTIN[n] not in reasoning.STREAM_RULES]


def chunk(delta, finish=None, **extra):
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def deltas(out) -> list:
    """Each chunk's choice 0: (delta, finish_reason)."""
    return [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) if isinstance(c, dict) and c.get("choices")
            else c for c in out]


RS = {"id": "rs_1", "type": "reasoning", "summary": [], "content": []}
MSG = {"id": "msg_1", "type": "message", "role": "assistant", "content": []}


def added(item, **kw):
    return {"type": "response.output_item.added", "item": dict(item), **kw}


def done(item, **kw):
    return {"type": "response.output_item.done", "item": dict(item), **kw}


def rdelta(text, item="rs_1", **kw):
    return {"type": "response.reasoning_text.delta", "item_id": item, "delta": text, **kw}


def summary_events(text, index=0, item="rs_1", deltas_=None, **kw):
    """What responses.reasoning_summary adds for one part (``deltas_``: the text deltas)."""
    part = {"type": "summary_text", "text": ""}
    return ([{"type": "response.reasoning_summary_part.added", "item_id": item, **kw, "summary_index": index,
              "part": part}]
            + [{"type": "response.reasoning_summary_text.delta", "item_id": item, **kw, "summary_index": index,
                "delta": d} for d in (deltas_ if deltas_ is not None else [text])]
            + closing(text, index, item, **kw))


def closing(text, index=0, item="rs_1", **kw):
    return [{"type": "response.reasoning_summary_text.done", "item_id": item, **kw, "summary_index": index,
             "text": text},
            {"type": "response.reasoning_summary_part.done", "item_id": item, **kw, "summary_index": index,
             "part": {"type": "summary_text", "text": text}}]


# -- responses.reasoning_summary ----------------------------------------------------------------

def test_summary_events_accompany_reasoning_text_and_done_item_gets_summary():
    # llama-server: no reasoning_text.done, the reasoning item closes after the message opened
    rs_done = {**RS, "content": [{"type": "reasoning_text", "text": "ab"}]}
    out = run([ReasoningSummary], [added(RS), rdelta("a"), rdelta("b"), added(MSG), done(rs_done)], "responses")
    part_added, text_delta, text_done, part_done = summary_events("ab", deltas_=["a"])[:2] + closing("ab")
    assert out == [
        added(RS),
        rdelta("a"), part_added, text_delta,
        rdelta("b"), {"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "summary_index": 0,
                      "delta": "b"},
        added(MSG),
        text_done, part_done,
        done({**rs_done, "summary": [{"type": "summary_text", "text": "ab"}]}),
    ]


def test_summary_closes_at_reasoning_text_done_and_copies_output_index():
    rs_done = {**RS, "content": [{"type": "reasoning_text", "text": "x"}]}
    done_ev = {"type": "response.reasoning_text.done", "item_id": "rs_1", "text": "x", "output_index": 0}
    out = run([ReasoningSummary], [added(RS, output_index=0), rdelta("x", output_index=0), done_ev,
                                   done(rs_done, output_index=0)], "responses")
    assert out == [added(RS, output_index=0), rdelta("x", output_index=0),
                   *summary_events("x", output_index=0)[:2], done_ev, *closing("x", output_index=0),
                   done({**rs_done, "summary": [{"type": "summary_text", "text": "x"}]}, output_index=0)]


def test_text_after_a_closed_part_opens_the_next_summary_index():
    done_ev = {"type": "response.reasoning_text.done", "item_id": "rs_1", "text": "a"}
    out = run([ReasoningSummary], [added(RS), rdelta("a"), done_ev, rdelta("b"), done(RS)], "responses")
    assert out == [added(RS), rdelta("a"), *summary_events("a")[:2], done_ev, *closing("a"),
                   rdelta("b"), *summary_events("b", index=1)[:2], *closing("b", index=1),
                   done({**RS, "summary": [{"type": "summary_text", "text": "a"},
                                           {"type": "summary_text", "text": "b"}]})]


def test_done_item_without_deltas_gets_its_text_as_one_summary():
    rs_done = {**RS, "content": [{"type": "reasoning_text", "text": "whole"}]}
    out = run([ReasoningSummary], [added(RS), done(rs_done)], "responses")
    assert out == [added(RS), *summary_events("whole"),
                   done({**rs_done, "summary": [{"type": "summary_text", "text": "whole"}]})]


def test_empty_reasoning_item_gets_no_summary_events():
    out = run([ReasoningSummary], [added(RS), done(RS)], "responses")
    assert out == [added(RS), done(RS)]


def test_upstream_summaries_are_left_alone():
    events = [added(RS), *summary_events("s"), rdelta("r"),
              done({**RS, "summary": [{"type": "summary_text", "text": "s"}]})]
    assert run([ReasoningSummary], events, "responses") == events


def test_reasoning_text_of_an_item_never_added_gets_no_summary_events():
    # the AI SDK throws on summary events of a reasoning item it has not seen added
    events = [rdelta("r", item="rs_9"), {"type": "response.completed", "response": {"output": []}}]
    assert run([ReasoningSummary], events, "responses") == events


def test_terminal_event_closes_open_parts_and_fills_output_summaries():
    rs_final = {**RS, "content": [{"type": "reasoning_text", "text": "ab"}]}
    completed = {"type": "response.completed", "response": {"id": "r", "output": [rs_final, MSG]}}
    out = run([ReasoningSummary], [added(RS), rdelta("ab"), completed], "responses")
    assert out == [added(RS), rdelta("ab"), *summary_events("ab")[:2], *closing("ab"),
                   {"type": "response.completed", "response": {"id": "r", "output": [
                       {**rs_final, "summary": [{"type": "summary_text", "text": "ab"}]}, MSG]}}]


def test_other_items_pass_unchanged():
    events = [added(MSG), {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "hi"}, done(MSG)]
    assert run([ReasoningSummary], events, "responses") == events


def test_responses_body_reasoning_summary():
    obj = {"output": [{**RS, "content": [{"type": "reasoning_text", "text": "why"}]}, MSG]}
    assert body([ReasoningSummaryBody], obj, "responses")["output"][0]["summary"] == \
        [{"type": "summary_text", "text": "why"}]


# -- responses.drop_reasoning ---------------------------------------------------------------

def test_drop_reasoning_without_upstream_indexes():
    text = {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "hi"}
    created = {"type": "response.created", "response": {"id": "r", "output": []}}
    completed = {"type": "response.completed", "response": {"id": "r", "output": [RS, MSG]}}
    out = run([DropResponsesReasoning], [created, added(RS), rdelta("r"), added(MSG), text, done(RS),
                                         *summary_events("r"), done(MSG), completed], "responses")
    assert out == [created, added(MSG), text, done(MSG),
                   {"type": "response.completed", "response": {"id": "r", "output": [MSG]}}]


def test_drop_reasoning_renumbers_upstream_output_indexes():
    # OpenAI/vLLM number their items: reasoning 0, message 1, function call 2, web search 3
    fc = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f", "arguments": ""}
    ws = {"id": "ws_1", "type": "web_search_call", "status": "in_progress"}
    events = [
        added(RS, output_index=0),
        {"type": "response.content_part.added", "item_id": "rs_1", "output_index": 0, "content_index": 0,
         "part": {"type": "reasoning_text", "text": ""}},
        rdelta("r", output_index=0, content_index=0),
        done(RS, output_index=0),
        added(MSG, output_index=1),
        {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 1, "content_index": 0,
         "delta": "hi"},
        done(MSG, output_index=1),
        added(fc, output_index=2),
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 2, "delta": "{}"},
        done(fc, output_index=2),
        {"type": "response.web_search_call.in_progress", "item_id": "ws_1", "output_index": 3},
        added(ws, output_index=3),
    ]
    out = run([DropResponsesReasoning], events, "responses")
    assert out == [
        added(MSG, output_index=0),
        {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
         "delta": "hi"},
        done(MSG, output_index=0),
        added(fc, output_index=1),
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 1, "delta": "{}"},
        done(fc, output_index=1),
        {"type": "response.web_search_call.in_progress", "item_id": "ws_1", "output_index": 2},
        added(ws, output_index=2),
    ]


def test_drop_reasoning_then_default_preset_numbers_items_from_zero(fixed_clock):
    cap = load("r_resp_stream_reasoning")
    with fixed_ids():
        out = parse(stream([DropResponsesReasoning, *preset("responses")], cap.body, "responses", cap.request))
    assert not any("reasoning" in e["type"] or e.get("item", {}).get("type") == "reasoning" for e in out)
    assert [e["output_index"] for e in out if e["type"].startswith("response.output_item")] == [0, 0]
    assert [i["type"] for i in out[-1]["response"]["output"]] == ["message"]


def test_responses_body_drop_reasoning():
    obj = {"output": [RS, MSG]}
    assert body([DropResponsesReasoningBody], obj, "responses") == {"output": [MSG]}


# -- chat.reasoning_content / chat.reasoning / chat.drop_reasoning ----------------------------

def test_reasoning_becomes_reasoning_content():
    out = run([ReasoningContent], [chunk({"reasoning": "r"}), chunk({"content": "c"}),
                                   chunk({"reasoning": None, "reasoning_content": "both"}),
                                   chunk({"reasoning": "x", "reasoning_content": None})])
    assert [d for d, _ in deltas(out)] == [{"reasoning_content": "r"}, {"content": "c"},
                                           {"reasoning_content": "both"}, {"reasoning_content": "x"}]


def test_reasoning_content_becomes_reasoning():
    out = run([Reasoning], [chunk({"role": "assistant", "reasoning_content": "r"}), chunk({"reasoning_content": None}),
                            chunk({"reasoning_content": "dup", "reasoning": "dup"})])
    assert [d for d, _ in deltas(out)] == [{"role": "assistant", "reasoning": "r"}, {"reasoning": None},
                                           {"reasoning": "dup"}]


def test_drop_chat_reasoning():
    out = run([DropChatReasoning], [chunk({"reasoning_content": "r", "content": None}), chunk({"reasoning": "r"}),
                                    chunk({"content": "c"}, "stop")])
    assert deltas(out) == [({"content": None}, None), ({}, None), ({"content": "c"}, "stop")]


def test_chat_body_rules():
    def msg():
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "<think>a</think>b",
                                                     "reasoning": "r"}}]}
    assert body([ReasoningContentBody], msg())["choices"][0]["message"] == \
        {"role": "assistant", "content": "<think>a</think>b", "reasoning_content": "r"}
    assert body([ReasoningBody], {"choices": [{"message": {"reasoning_content": "r"}}]}) == \
        {"choices": [{"message": {"reasoning": "r"}}]}
    assert body([DropChatReasoningBody], msg())["choices"][0]["message"] == \
        {"role": "assistant", "content": "<think>a</think>b"}
    assert body([ThinkTagsBody], msg())["choices"][0]["message"] == \
        {"role": "assistant", "content": "b", "reasoning": "r", "reasoning_content": "a"}
    opened = {"choices": [{"message": {"content": "plan</think>answer"}}]}
    assert body([ThinkTagsOpenedBody], opened)["choices"][0]["message"] == \
        {"content": "answer", "reasoning_content": "plan"}


def test_non_stream_captures_through_the_body_rules_meet_openai_types():
    resp = json.loads(load("r_resp_reasoning_nonstream").body)
    reasoning = resp["output"][0]["content"][0]["text"]
    out = body([ReasoningSummaryBody, BUILTIN["responses.body"]], resp, "responses")
    Response.model_validate(out)
    assert out["output"][0]["summary"] == [{"type": "summary_text", "text": reasoning}]
    chat = json.loads(load("r_chat_reasoning_nonstream").body)
    msg = chat["choices"][0]["message"]
    want = dict(msg)
    msg["content"] = "<think>" + msg.pop("reasoning_content") + "</think>" + msg["content"]
    out = body([ThinkTagsBody, BUILTIN["chat.body"]], chat)
    ChatCompletion.model_validate(out)
    assert out["choices"][0]["message"] == want


# -- chat.think_tags ------------------------------------------------------------------------

def texts(out) -> tuple[str, str]:
    """(content, reasoning_content) of a chat stream, concatenated."""
    content, reasoning = [], []
    for c in out:
        for ch in c.get("choices") or () if isinstance(c, dict) else ():
            d = ch.get("delta") or {}
            content.append(d.get("content") or "")
            reasoning.append(d.get("reasoning_content") or "")
    return "".join(content), "".join(reasoning)


def test_tag_split_across_chunks():
    out = run([ThinkTags], [chunk({"content": "<thi"}), chunk({"content": "nk>plan"}), chunk({"content": "</th"}),
                            chunk({"content": "ink>ok"}), chunk({}, "stop")])
    assert deltas(out) == [({}, None), ({"reasoning_content": "plan"}, None), ({}, None), ({"content": "ok"}, None),
                           ({}, "stop")]


def test_text_before_and_after_and_several_blocks_in_one_chunk_keep_their_order():
    out = run([ThinkTags], [chunk({"role": "assistant", "content": "a<think>b</think>c<think>d"}),
                            chunk({"content": "</think>e"}, "stop")])
    assert deltas(out) == [({"role": "assistant", "content": "a"}, None), ({"reasoning_content": "b"}, None),
                           ({"content": "c"}, None), ({"reasoning_content": "d"}, None), ({"content": "e"}, "stop")]
    assert all(c["id"] == "c1" and c["created"] == 1 for c in out)


def test_held_tail_is_flushed_into_the_finish_chunk():
    out = run([ThinkTags], [chunk({"content": "a <"}), chunk({}, "stop")])
    assert deltas(out) == [({"content": "a "}, None), ({"content": "<"}, "stop")]
    out = run([ThinkTags], [chunk({"content": "<think>x</thi"}), chunk({}, "length")])
    assert deltas(out) == [({"reasoning_content": "x"}, None), ({"reasoning_content": "</thi"}, "length")]


def test_held_tail_is_flushed_before_done_and_before_the_usage_chunk():
    out = run([ThinkTags], [chunk({"content": "1 <"}), b"[DONE]"])
    assert deltas(out) == [({"content": "1 "}, None), ({"content": "<"}, None), "[DONE]"]
    assert out[1]["id"] == "c1" and out[1]["model"] == "m"
    usage = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
             "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    out = run([ThinkTags], [chunk({"content": "1 </"}), usage])
    assert deltas(out)[:2] == [({"content": "1 "}, None), ({"content": "</"}, None)] and out[2] == usage


def test_lone_close_tag_is_removed_and_opened_variant_reads_the_start_as_reasoning():
    events = [chunk({"content": "plan"}), chunk({"content": "</think>"}), chunk({"content": "answer"}),
              chunk({}, "stop")]
    # content already sent cannot be taken back: chat.think_tags drops the lone tag only
    assert texts(run([ThinkTags], events)) == ("plananswer", "")
    assert texts(run([ThinkTagsOpened], events)) == ("answer", "plan")
    # the opened variant also takes a repeated <think> at the start
    assert texts(run([ThinkTagsOpened], [chunk({"content": "<think>p</think>a"})])) == ("a", "p")


def test_no_tags_no_change():
    events = [chunk({"role": "assistant", "content": None}), chunk({"content": "a < b"}), chunk({"content": "x <"}),
              chunk({"content": "b"}), chunk({}, "stop")]
    out = run([ThinkTags], events)
    # only a "<" at the end of a delta waits for the next one
    assert deltas(out) == [({"role": "assistant", "content": None}, None), ({"content": "a < b"}, None),
                           ({"content": "x "}, None), ({"content": "<b"}, None), ({}, "stop")]
    assert out[1] == events[1]


SAMPLE = "Hi <think>plan é😀 <b></think> answer <th <think>more</think></think>done<"
EXPECTED = ("Hi  answer <th done<", "plan é😀 <b>more")


def pieces(text: str, cuts) -> list[str]:
    cuts = sorted(set(cuts))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]


def think_stream(parts, finish=True) -> bytes:
    return encode([chunk({"content": p}) for p in parts] + ([chunk({}, "stop")] if finish else []), "chat")


def test_every_split_point_of_the_sample():
    assert texts(run([ThinkTags], [chunk({"content": SAMPLE})])) == EXPECTED
    for i in range(len(SAMPLE) + 1):
        for j in range(i, len(SAMPLE) + 1, 5):
            out = parse(stream([ThinkTags], think_stream(pieces(SAMPLE, [i, j])), "chat"))
            assert texts(out) == EXPECTED, (i, j)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(cuts=st.lists(st.integers(0, len(SAMPLE)), max_size=25), finish=st.booleans(),
       byte_cuts=st.lists(st.integers(0, 4000), max_size=10))
def test_think_tags_text_is_the_same_for_every_chunking(cuts, finish, byte_cuts):
    """Content and reasoning do not depend on where the deltas or the reads were cut, and no
    more than the start of a tag (7 characters) is ever held back."""
    raw = think_stream(pieces(SAMPLE, cuts), finish)
    byte_cuts = sorted({c % (len(raw) + 1) for c in byte_cuts})
    reads = [raw[a:b] for a, b in zip([0, *byte_cuts], [*byte_cuts, len(raw)])]
    assert texts(parse(stream([ThinkTags], raw, "chat", reads=reads))) == EXPECTED
    # held back: per delta, what came in minus what went out (without the tags)
    ctx = StreamContext(RequestInfo("chat", "/v1/x", {}))
    t = Transform(Decoder(), [Chain("chat", [ThinkTags]).open(ctx), SSEWriter(named=False)], ctx)
    sent = ""
    fed = ""
    for p in pieces(SAMPLE, cuts):
        fed += p
        sent += "".join(texts(parse(t.feed(encode([chunk({"content": p})], "chat")))))
        visible = fed.replace("<think>", "").replace("</think>", "")
        assert len(visible) - len(sent) <= 7, (fed, sent)


@settings(max_examples=300, deadline=None)
@given(text=st.lists(st.sampled_from(["<think>", "</think>", "<", "</", "<th", "ink>", "a", "é", ">", "😀"]),
                     max_size=20).map("".join),
       cuts=st.lists(st.integers(0, 80), max_size=10), opened=st.booleans())
def test_splitter_matches_splitting_the_whole_text(text, cuts, opened):
    whole = ThinkSplitter(opened)
    expect = whole.feed(text) + whole.flush()
    sp = ThinkSplitter(opened)
    got = []
    for p in pieces(text, [c % (len(text) + 1) for c in cuts]):
        got += sp.feed(p)
        assert len(sp.held) < len("</think>")
    got += sp.flush()
    join = lambda segs, kind: "".join(t for k, t in segs if k == kind)  # noqa: E731
    assert (join(got, "content"), join(got, "reasoning")) == (join(expect, "content"), join(expect, "reasoning"))
    # the tags, and only the tags, are gone
    assert len(join(got, "content")) + len(join(got, "reasoning")) == \
        len(text) - 7 * text.count("<think>") - 8 * text.count("</think>")


# -- the llama-server captures through each rule and the default presets -------------------------

def capture_events(rule, name):
    cap = load(name)
    with fixed_ids():
        out = stream([rule, *preset(cap.endpoint)], cap.body, cap.endpoint, cap.request, reads=cap.chunks)
    return parse(out)


def check_responses(evs):
    """openai-python's types, and what the AI SDK needs of summary events (aisdk-schema §3.2)."""
    index = {}
    open_parts = set()
    for seq, e in enumerate(evs):
        RESP_EVENT.validate_python(e)
        assert e["sequence_number"] == seq
        typ = e["type"]
        if typ == "response.output_item.added":
            assert e["output_index"] == len(index)
            index[e["item"]["id"]] = e["output_index"]
        elif typ == "response.output_item.done":
            assert index[e["item"]["id"]] == e["output_index"]
            assert not any(p[0] == e["item"]["id"] for p in open_parts)
        elif "item_id" in e:
            assert index[e["item_id"]] == e["output_index"]
        if typ.startswith("response.reasoning_summary"):
            assert isinstance(e["item_id"], str) and isinstance(e["summary_index"], int)
            key = (e["item_id"], e["summary_index"])
            if typ.endswith("part.added"):
                open_parts.add(key)
            elif typ.endswith("part.done"):
                open_parts.remove(key)
            else:
                assert key in open_parts
    assert not open_parts
    Response.model_validate(evs[-1]["response"])


@pytest.mark.parametrize("name", ["r_resp_stream_reasoning", "r_resp_stream_reasoning_only_length"])
def test_capture_with_reasoning_summary_meets_openai_types(name):
    evs = capture_events(ReasoningSummary, name)
    check_responses(evs)
    reasoning = "".join(e["delta"] for e in evs if e["type"] == "response.reasoning_text.delta")
    summary = "".join(e["delta"] for e in evs if e["type"] == "response.reasoning_summary_text.delta")
    assert reasoning == summary and reasoning.startswith("\nходят_sync depr")
    rs_done = next(e for e in evs if e["type"] == "response.output_item.done" and e["item"]["type"] == "reasoning")
    assert rs_done["item"]["summary"] == [{"type": "summary_text", "text": reasoning}]
    assert evs[-1]["response"]["output"][0]["summary"] == [{"type": "summary_text", "text": reasoning}]
    # the summary part opens right after the first reasoning delta and closes right before the item
    types = [e["type"] for e in evs]
    first = types.index("response.reasoning_text.delta")
    assert types[first + 1:first + 3] == ["response.reasoning_summary_part.added",
                                          "response.reasoning_summary_text.delta"]
    end = evs.index(rs_done)
    assert types[end - 2:end] == ["response.reasoning_summary_text.done", "response.reasoning_summary_part.done"]


@pytest.mark.parametrize("name", ["r_resp_stream_reasoning", "r_resp_stream_reasoning_only_length"])
def test_capture_without_reasoning_meets_openai_types(name):
    evs = capture_events(DropResponsesReasoning, name)
    check_responses(evs)
    assert not any("reasoning" in e["type"] for e in evs)
    assert all(i["type"] != "reasoning" for i in evs[-1]["response"]["output"])


def check_chat(out):
    assert out[-1] == "[DONE]"
    for c in out[:-1]:
        ChatCompletionChunk.model_validate(c)
    return texts(out)


CHAT_CAPTURE = "r_chat_stream_reasoning"


def capture_reasoning_and_content():
    evs = parse(load(CHAT_CAPTURE).body)
    return ("".join(c["choices"][0]["delta"].get("content") or "" for c in evs[:-1]),
            "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in evs[:-1]))


def test_chat_capture_through_each_rule_meets_openai_types():
    content, reasoning = capture_reasoning_and_content()
    assert reasoning and content
    for rule in (ReasoningContent, ThinkTags, ThinkTagsOpened):
        assert check_chat(capture_events(rule, CHAT_CAPTURE)) == (content, reasoning), rule.name
    out = capture_events(Reasoning, CHAT_CAPTURE)
    check_chat(out)
    assert "".join(c["choices"][0]["delta"].get("reasoning") or "" for c in out[:-1] if c["choices"]) == reasoning
    assert not any("reasoning_content" in c["choices"][0]["delta"] for c in out[:-1] if c["choices"])
    out = capture_events(DropChatReasoning, CHAT_CAPTURE)
    assert check_chat(out) == (content, "")


def folded_capture(opened: bool) -> bytes:
    """The chat capture as a backend without a reasoning parser sends it: the reasoning
    deltas inline in content, between <think> and </think> (each tag its own token, as
    Qwen3 and DeepSeek-R1 emit them); ``opened``: the template had sent <think>."""
    out = []
    evs = parse(load(CHAT_CAPTURE).body)
    state = "before"
    for c in evs[:-1]:
        d = c["choices"][0]["delta"]
        if "reasoning_content" in d:
            d["content"] = d.pop("reasoning_content")
            if state == "before":
                if not opened:
                    out.append({**c, "choices": [{**c["choices"][0], "delta": {"content": "<think>"}}]})
                state = "inside"
        elif state == "inside" and isinstance(d.get("content"), str):
            out.append({**c, "choices": [{**c["choices"][0], "delta": {"content": "</think>"}}]})
            state = "after"
        out.append(c)
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in out) + b"data: [DONE]\n\n"


@pytest.mark.parametrize("rule, opened", [(ThinkTags, False), (ThinkTagsOpened, True), (ThinkTagsOpened, False)])
def test_inline_think_capture_comes_out_as_llama_server_separates_it(rule, opened):
    raw = folded_capture(opened)
    cap = load(CHAT_CAPTURE)
    with fixed_ids():
        out = parse(stream([rule, *preset("chat")], raw, "chat", cap.request))
    assert check_chat(out) == capture_reasoning_and_content()


# -- the real clients -------------------------------------------------------------------------

async def serve(aiohttp_server, body: bytes) -> str:
    async def answer(request):
        return web.Response(body=body, content_type="text/event-stream")
    app = web.Application()
    app.router.add_post("/v1/responses", answer)
    app.router.add_post("/v1/chat/completions", answer)
    server = await aiohttp_server(app)
    return str(server.make_url("/v1"))


def fixed(rules, name, raw=None) -> bytes:
    cap = load(name)
    with fixed_ids():
        return stream([*rules, *preset(cap.endpoint)], raw or cap.body, cap.endpoint, cap.request)


async def test_openai_python_reads_the_summary(aiohttp_server):
    import openai
    reasoning = "\nходят_sync depr decency assay"
    url = await serve(aiohttp_server, fixed([ReasoningSummary], "r_resp_stream_reasoning"))
    client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0)
    summary = []
    async with client.responses.stream(model="tiny", input="Say hello") as s:
        async for ev in s:
            if ev.type == "response.reasoning_summary_text.delta":
                summary.append(ev.delta)
        final = await s.get_final_response()
    assert "".join(summary) == reasoning
    assert final.output[0].summary[0].text == reasoning and final.output_text.startswith(" queerbf")


async def test_openai_python_reads_split_think_tags(aiohttp_server):
    import openai
    url = await serve(aiohttp_server, fixed([ThinkTags], CHAT_CAPTURE, folded_capture(False)))
    client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0)
    async with client.chat.completions.stream(model="tiny", messages=[{"role": "user", "content": "hi"}]) as s:
        async for _ in s:
            pass
        final = s.current_completion_snapshot     # (finish_reason length: no final completion)
    content, reasoning = capture_reasoning_and_content()
    msg = final.choices[0].message
    assert msg.content == content and msg.model_extra["reasoning_content"] == reasoning


SDK_SCRIPT = r"""
const spec = JSON.parse(process.argv[1]);
const legacy = spec.sdk === 'legacy';
const ai = await import(legacy ? 'ai-legacy' : 'ai');
const { createOpenAI } = await import(legacy ? 'ai-sdk-openai-legacy' : '@ai-sdk/openai');
const { createOpenAICompatible } = await import(
  legacy ? 'ai-sdk-openai-compatible-legacy' : '@ai-sdk/openai-compatible');
const model = spec.provider === 'compatible'
  ? createOpenAICompatible({ name: 'llama', baseURL: spec.baseURL, apiKey: 'none' }).chatModel('tiny')
  : createOpenAI({ baseURL: spec.baseURL, apiKey: 'none' }).responses('tiny');
const out = { errors: [] };
const fmt = (e) => typeof e === 'string' ? e : (e?.message ?? JSON.stringify(e));
try {
  const r = ai.streamText({ model, prompt: 'Say hello', maxRetries: 0,
                            onError: ({ error }) => out.errors.push(fmt(error)) });
  for await (const part of r.fullStream) if (part.type === 'error') out.errors.push(fmt(part.error));
  out.finishReason = await r.finishReason;
  out.text = await r.text;
  out.reasoningText = (await r.reasoningText) ?? '';
} catch (e) { out.errors.push(`thrown: ${e?.name}: ${e?.message}`); }
console.log(JSON.stringify(out));
"""


async def ai_sdk(url: str, sdk: str, provider: str) -> dict:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "ai").exists():
        pytest.fail("Node.js and the AI SDK are needed: run the README's test command")
    proc = await asyncio.create_subprocess_exec(
        node, "--input-type=module", "-e", SDK_SCRIPT, json.dumps({"baseURL": url, "sdk": sdk, "provider": provider}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=NODE_DIR)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


@pytest.mark.node
@pytest.mark.parametrize("sdk", ["current", "legacy"])
async def test_ai_sdk_shows_llama_server_reasoning(aiohttp_server, sdk):
    reasoning = "\nходят_sync depr decency assay"
    before = await ai_sdk(await serve(aiohttp_server, fixed([], "r_resp_stream_reasoning")), sdk, "responses")
    assert before["reasoningText"] == "" and before["text"]          # what the issue is about
    after = await ai_sdk(await serve(aiohttp_server, fixed([ReasoningSummary], "r_resp_stream_reasoning")),
                         sdk, "responses")
    assert after["errors"] == [] and after["finishReason"] == before["finishReason"] == "stop"
    assert after["reasoningText"] == reasoning and after["text"] == before["text"]
    dropped = await ai_sdk(await serve(aiohttp_server, fixed([DropResponsesReasoning], "r_resp_stream_reasoning")),
                           sdk, "responses")
    assert dropped["errors"] == [] and dropped["reasoningText"] == "" and dropped["text"] == before["text"]


@pytest.mark.node
@pytest.mark.parametrize("sdk", ["current", "legacy"])
async def test_ai_sdk_compatible_shows_split_think_tags(aiohttp_server, sdk):
    content, reasoning = capture_reasoning_and_content()
    raw = fixed([ThinkTags], CHAT_CAPTURE, folded_capture(False))
    got = await ai_sdk(await serve(aiohttp_server, raw), sdk, "compatible")
    assert got["errors"] == [] and (got["text"], got["reasoningText"]) == (content, reasoning)


# -- each rule's declaration against the chain that parses every event ------------------------

TEXT = st.lists(st.sampled_from(["a", "é", "<think>", "</think>", "<th", "ink>", "</", "<", '"', "\\", "\n",
                                 '"content":', "reasoning"]), max_size=4).map("".join)


@st.composite
def chat_event(draw) -> bytes:
    kind = draw(st.sampled_from(["chunk"] * 6 + ["usage", "error", "non-json", "done"]))
    if kind == "non-json":
        return b"not json"
    if kind == "done":
        return b"[DONE]"
    if kind == "error":
        obj = {"error": {"message": draw(TEXT)}}
    else:
        choices = []
        for i in range(0 if kind == "usage" else draw(st.integers(0, 2))):
            delta = {}
            for key in draw(st.lists(st.sampled_from(["content", "reasoning", "reasoning_content", "role"]),
                                     max_size=3, unique=True)):
                delta[key] = "assistant" if key == "role" else draw(st.one_of(st.none(), TEXT))
            choice = {"delta": delta, "finish_reason": draw(st.sampled_from([None, None, "stop", ""]))}
            if draw(st.booleans()):
                choice["index"] = i
            choices.append(choice)
        obj = {"id": draw(st.sampled_from(["x", "y"])), "object": "chat.completion.chunk", "created": 1,
               "model": "m", "choices": choices}
        if kind == "usage":
            obj["usage"] = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        elif draw(st.booleans()):
            obj["usage"] = None
    return json.dumps(obj).encode() if draw(st.booleans()) else orjson.dumps(obj)


ITEMS = {"rs_1": "reasoning", "rs_2": "reasoning", "msg_1": "message", "fc_1": "function_call"}


@st.composite
def resp_event(draw) -> dict:
    typ = draw(st.sampled_from([
        "response.created", "response.output_item.added", "response.output_item.added",
        "response.output_item.done", "response.reasoning_text.delta", "response.reasoning_text.delta",
        "response.reasoning_text.done", "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta", "response.content_part.added", "response.output_text.delta",
        "response.web_search_call.in_progress", "response.completed", "response.completed", "error"]))
    item_id = draw(st.sampled_from(["rs_1", "rs_1", "rs_1", "rs_2", "msg_1", "fc_1"]))
    obj: dict = {"type": typ}
    if typ in ("response.created", "response.completed"):
        output = [{"id": i, "type": ITEMS[i], "summary": [],
                   "content": [{"type": "reasoning_text", "text": draw(TEXT)}]}
                  for i in draw(st.lists(st.sampled_from(sorted(ITEMS)), max_size=2, unique=True))]
        obj["response"] = {"id": "r", "output": output}
    elif typ.startswith("response.output_item"):
        item = {"id": item_id, "type": ITEMS[item_id]}
        if ITEMS[item_id] == "reasoning":
            item["summary"] = draw(st.sampled_from([[], [{"type": "summary_text", "text": "s"}]]))
            item["content"] = [{"type": "reasoning_text", "text": draw(TEXT)}] if draw(st.booleans()) else []
        obj["item"] = item
    elif typ == "error":
        obj.update(code="x", message=draw(TEXT))
    else:
        obj["item_id"] = item_id
        obj["delta" if typ.endswith("delta") else "text"] = draw(TEXT)
        if typ.startswith("response.reasoning_summary"):
            obj["summary_index"] = 0
    if draw(st.booleans()):
        obj["output_index"] = draw(st.integers(0, 3))
    return obj


@st.composite
def any_stream(draw, endpoint: str) -> bytes:
    nl = draw(st.sampled_from([b"\n", b"\r\n"]))
    pieces = []
    for _ in range(draw(st.integers(1, 14))):
        if draw(st.integers(0, 9)) == 0:
            pieces.append(b": comment" + nl + nl)
            continue
        if endpoint == "chat":
            pieces.append(b"data: " + draw(chat_event()) + nl + nl)
        else:
            obj = draw(resp_event())
            head = b"event: " + obj["type"].encode() + nl if draw(st.integers(0, 4)) else b""
            data = json.dumps(obj).encode() if draw(st.booleans()) else orjson.dumps(obj)
            pieces.append(head + b"data: " + data + nl + nl)
    return b"".join(pieces)


def test_every_rule_is_exported_once():
    names = [r.name for r in STREAM_RULES + BODY_RULES]
    assert len(names) == len(set(names)) and not set(names) & set(BUILTIN) - set(names)
    assert all(r.mode == "stream" for r in STREAM_RULES) and all(r.mode == "body" for r in BODY_RULES)
    assert all(r.__doc__ and r.fixes for r in STREAM_RULES + BODY_RULES)


@pytest.mark.parametrize("endpoint", ["chat", "responses"])
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_each_rule_alone_fast_path_equals_parsing_every_event(endpoint, data):
    raw = data.draw(any_stream(endpoint))
    cuts = sorted({c % (len(raw) + 1) for c in data.draw(st.lists(st.integers(0, 5000), max_size=8))})
    reads = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]
    for rule in STREAM_RULES:
        if rule.endpoint != endpoint:
            continue
        with fixed_ids():
            fast = stream([rule], raw, endpoint, reads=reads)
        with fixed_ids():
            slow = stream([rule], raw, endpoint, reads=[raw], parse_all=True)
        assert fast == slow, rule.name
