"""Assembled answers (issue 14, part 4): each answer's record reaches the configured sinks,
and a sink that hangs or fails never delays or breaks a stream."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp import web

from sse_fixup.config import Config, parse as parse_config
from sse_fixup.config import Answers as AnswersKeys

from .helpers import CHAT, RESP, metric, parse, start
from .upstreams import Scripted, chat_events, resp_events, sse

ENV = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "tiny"}


def chunk(delta=None, finish=None, **extra):
    return sse({**ENV, "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}], **extra})


TOOL_STREAM = [
    chunk({"role": "assistant", "reasoning_content": "Hmm."}),
    chunk({"content": "Let me "}), chunk({"content": "check."}),
    chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                           "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]}),
    chunk(finish="tool_calls"),
    sse({**ENV, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}),
    b"data: [DONE]\n\n", "eof"]


async def records(path, n=1, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            got = [json.loads(x) for x in path.read_text().splitlines()]
            if len(got) >= n:
                return got
        await asyncio.sleep(0.02)
    raise AssertionError(f"{n} records not written to {path}")


async def test_a_streamed_answer_is_assembled_into_the_jsonl_file(aiohttp_server, aiohttp_client, tmp_path):
    sink = tmp_path / "answers.jsonl"
    client = await start(aiohttp_server, aiohttp_client, Scripted(TOOL_STREAM),
                         answers=AnswersKeys(jsonl=str(sink)))
    body = {**CHAT, "stream_options": {"include_usage": True}}
    resp = await client.post("/v1/chat/completions", json=body, headers={"X-Request-Id": "r-42"})
    assert parse(await resp.read())[-1] == "[DONE]"
    (rec,) = await records(sink)
    timings = rec.pop("timings")
    assert isinstance(rec.pop("time"), int)
    assert rec == {
        "request_id": "r-42", "route": "default", "endpoint": "chat", "model": "m",
        "text": "Let me check.", "reasoning": "Hmm.",
        "tool_calls": [{"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}],
        "finish_reason": "tool_calls", "status": 200,
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        "fault": None, "truncated": False,
        "request": {"model": "m", "stream": True, "stream_options": {"include_usage": True}}}
    assert 0 <= timings["ttfb_ms"] <= timings["first_token_ms"] <= timings["duration_ms"]


async def test_a_json_body_and_a_responses_stream_are_assembled_too(aiohttp_server, aiohttp_client, tmp_path):
    sink = tmp_path / "a.jsonl"
    done = {"type": "response.completed", "response": {"id": "resp_x", "status": "completed"}}
    body = {"id": "c", "object": "chat.completion", "created": 1, "model": "tiny",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi."}}]}
    up = Scripted({"s": [*resp_events(2), sse(done, "response.completed"), "eof"],
                   "b": [json.dumps(body).encode(), "eof"]})
    client = await start(aiohttp_server, aiohttp_client, up, answers=AnswersKeys(jsonl=str(sink)))
    await (await client.post("/v1/responses", json={**RESP, "model": "s"})).read()
    up.content_type = "application/json"
    await (await client.post("/v1/chat/completions", json={**CHAT, "model": "b", "stream": False})).read()
    first, second = await records(sink, 2)
    assert (first["endpoint"], first["text"], first["finish_reason"]) == ("responses", "t0t1", "stop")
    assert (second["endpoint"], second["text"], second["finish_reason"]) == ("chat", "Hi.", "stop")


async def test_a_cut_stream_is_recorded_with_its_fault(aiohttp_server, aiohttp_client, tmp_path):
    sink = tmp_path / "a.jsonl"
    client = await start(aiohttp_server, aiohttp_client, Scripted([*chat_events(2), "reset"]),
                         answers=AnswersKeys(jsonl=str(sink)))
    await (await client.post("/v1/chat/completions", json=CHAT)).read()
    (rec,) = await records(sink)
    assert rec["text"] == "t0t1" and rec["fault"]["code"] == "upstream_disconnected"


async def test_the_assembly_is_capped_and_says_so(aiohttp_server, aiohttp_client, tmp_path):
    sink = tmp_path / "a.jsonl"
    big = [chunk({"content": "x" * 700}) for _ in range(3)]
    client = await start(aiohttp_server, aiohttp_client, Scripted([*big, chunk(finish="stop"), "eof"]),
                         answers=AnswersKeys(jsonl=str(sink), max_answer_bytes=1024))
    out = await (await client.post("/v1/chat/completions", json=CHAT)).read()
    assert out.count(b"x" * 700) == 3                 # the client gets everything
    (rec,) = await records(sink)
    assert rec["text"] == "x" * 700 and rec["truncated"] is True


async def test_the_conversation_only_with_include_request(aiohttp_server, aiohttp_client, tmp_path):
    sink = tmp_path / "a.jsonl"
    client = await start(aiohttp_server, aiohttp_client, Scripted([*chat_events(1), chunk(finish="stop"), "eof"]),
                         answers=AnswersKeys(jsonl=str(sink), include_request=True))
    await (await client.post("/v1/chat/completions", json=CHAT)).read()
    (rec,) = await records(sink)
    assert rec["request"]["messages"] == CHAT["messages"]


def test_the_jsonl_file_rotates_by_size(tmp_path):
    from sse_fixup.answers import JSONLSink
    path = tmp_path / "a.jsonl"
    sink = JSONLSink(None, 1, str(path), max_bytes=1024, keep=2)
    for i in range(12):
        sink._append(json.dumps({"i": i, "pad": "x" * 200}).encode() + b"\n")
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["a.jsonl", "a.jsonl.1", "a.jsonl.2"]
    assert all(p.stat().st_size <= 1024 for p in tmp_path.iterdir())
    assert json.loads(path.read_text().splitlines()[-1])["i"] == 11


class Receiver:
    """A POST sink target: answers ok, fails with 500, or hangs."""

    def __init__(self, mode: str):
        self.mode = mode
        self.got: list[dict] = []
        self.hits = 0
        self.app = web.Application()
        self.app.router.add_post("/answers", self.handle)

    async def handle(self, request):
        self.hits += 1
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "fail":
            return web.Response(status=500)
        self.got.append(await request.json())
        return web.Response(status=204)


async def _with_sink(aiohttp_server, aiohttp_client, mode, **keys):
    rx = Receiver(mode)
    url = str((await aiohttp_server(rx.app)).make_url("/answers"))
    steps = [*chat_events(3), chunk(finish="stop"), b"data: [DONE]\n\n", "eof"]
    client = await start(aiohttp_server, aiohttp_client, Scripted(steps),
                         answers=AnswersKeys(post=url, **keys))
    return rx, client


async def test_post_sink_gets_each_answer(aiohttp_server, aiohttp_client):
    rx, client = await _with_sink(aiohttp_server, aiohttp_client, "ok")
    await (await client.post("/v1/chat/completions", json=CHAT)).read()
    for _ in range(100):
        if rx.got:
            break
        await asyncio.sleep(0.02)
    assert rx.got[0]["text"] == "t0t1t2" and rx.got[0]["finish_reason"] == "stop"


@pytest.mark.parametrize("mode", ["hang", "fail"])
async def test_a_hanging_or_failing_sink_leaves_streams_untouched_and_on_time(
        aiohttp_server, aiohttp_client, mode):
    plain = await start(aiohttp_server, aiohttp_client,
                        Scripted([*chat_events(3), chunk(finish="stop"), b"data: [DONE]\n\n", "eof"]))
    want = await (await plain.post("/v1/chat/completions", json=CHAT)).read()
    rx, client = await _with_sink(aiohttp_server, aiohttp_client, mode, post_timeout=30,
                                  post_retries=2, queue_size=1)
    for _ in range(4):
        t0 = time.monotonic()
        resp = await client.post("/v1/chat/completions", json=CHAT)
        got = await resp.read()
        assert time.monotonic() - t0 < 0.5
        assert resp.status == 200 and parse(got) == parse(want)
    want_reason = 'reason="queue_full"' if mode == "hang" else 'reason="failed"'   # retries: 0.5 s + 1 s
    for _ in range(100):
        dropped = await metric(client, "sse_fixup_answers_dropped_total")
        if want_reason in dropped:
            break
        await asyncio.sleep(0.05)
    assert 'reason="queue_full",sink="post"' in dropped, dropped
    if mode == "fail":
        assert rx.hits >= 3 and 'reason="failed",sink="post"' in dropped, (rx.hits, dropped)


def test_answers_keys_are_validated():
    cfg = parse_config("answers: {jsonl: /tmp/x.jsonl, post: 'http://h:1/a', queue_size: 10}\n")
    assert (cfg.answers.jsonl, cfg.answers.post, cfg.answers.queue_size) == ("/tmp/x.jsonl", "http://h:1/a", 10)
    from sse_fixup.schema import ConfigError
    with pytest.raises(ConfigError, match="answers.post"):
        parse_config("answers: {post: ftp://x}\n")
    assert not Config().answers.jsonl and not Config().answers.post
