"""A real llama-server (llama.cpp b11434, built from the PyPI sdist) behind the proxy,
driven by the real AI SDK and openai-python.  First run builds llama-server (~7-9 min on
2 cores, cached in ~/.cache/sse-fixup); SSE_FIXUP_SKIP_LLAMA=1 skips this file."""

import json
import sys

import openai
import pytest

from sse_fixup.config import Config
from sse_fixup.proxy import create_app

from .helpers import PROVIDERS, SDKS, TOOL_CHAT, TOOL_RESP, run_sdk

pytestmark = pytest.mark.llama


@pytest.fixture
async def urls(llama, aiohttp_server):
    proxy = await aiohttp_server(create_app(Config(upstream=llama)))
    return {"proxy": str(proxy.make_url("/v1")), "direct": llama + "/v1"}


@pytest.mark.parametrize("call", ["stream", "generate"])
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("sdk", SDKS)
async def test_aisdk_tool_call_through_proxy(urls, sdk, provider, call):
    r = await run_sdk(urls["proxy"], sdk=sdk, provider=provider, call=call, tools=True)
    assert r["errors"] == [], r
    assert r["finishReason"] == "tool-calls", r
    assert r["toolCalls"], r      # the tiny model may chain parallel calls: each must be valid
    for tc in r["toolCalls"]:
        assert tc["toolName"] == "get_weather" and not tc["invalid"], r
        assert isinstance(tc["input"]["city"], str)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_aisdk_text_and_round_trip_through_proxy(urls, provider):
    r = await run_sdk(urls["proxy"], sdk="current", provider=provider, call="stream", tools=False)
    assert r["errors"] == [] and r["finishReason"] in ("stop", "length"), r
    r = await run_sdk(urls["proxy"], sdk="current", provider=provider, call="stream", tools=True,
                      roundtrip=True)
    assert r["errors"] == [] and r["finishReason"] in ("stop", "length"), r


async def test_responses_stream_direct_outcome_for_this_build(urls):
    """Records what the AI SDK sees without the proxy.  If this fails, llama-server's
    Responses stream has become valid for the AI SDK: update the docs, not the proxy."""
    cur = await run_sdk(urls["direct"], sdk="current", provider="responses", call="stream", tools=True)
    leg = await run_sdk(urls["direct"], sdk="legacy", provider="responses", call="stream", tools=True)
    print(f"\n[llama direct] current: {cur['finishReason']}, {len(cur['errors'])} errors; "
          f"legacy: {leg['finishReason']}, tool calls {len(leg['toolCalls'])}", file=sys.stderr)
    assert cur["finishReason"] == "error" and cur["errors"], \
        f"llama-server's Responses stream no longer fails the current AI SDK directly: {cur}"
    assert leg["finishReason"] == "stop" and leg["toolCalls"] == [], \
        f"llama-server's Responses stream no longer loses the tool call in AI SDK 3.0.41: {leg}"


async def test_openai_python_stream_helpers_through_proxy(urls):
    client = openai.AsyncOpenAI(base_url=urls["proxy"], api_key="none", max_retries=0)
    async with client.responses.stream(model="tiny", input="What is the weather in Paris?",
                                       tools=[TOOL_RESP], tool_choice="required") as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_response()
    calls = [o for o in final.output if o.type == "function_call"]
    assert calls
    for call in calls:
        assert call.name == "get_weather" and isinstance(json.loads(call.arguments)["city"], str)
    async with client.responses.stream(model="tiny", input="Say hello") as stream:
        async for _ in stream:
            pass
        assert (await stream.get_final_response()).status == "completed"
    async with client.chat.completions.stream(
            model="tiny", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            tools=[TOOL_CHAT], tool_choice="required") as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.choices[0].message.tool_calls[0].function.name == "get_weather"


async def test_plain_requests_right_after_streams_never_get_a_502(urls):
    """llama-server answers a stream with Keep-Alive and then closes the connection; the
    proxy's pool must not turn that into 502s for the requests that follow (issue #10:
    1-5 of 24 failed before)."""
    import aiohttp
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 8}
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(12):
            async with session.post(urls["proxy"] + "/chat/completions", json={**chat, "stream": True}) as r:
                assert r.status == 200
                await r.read()
            for _ in range(2):
                async with session.post(urls["proxy"] + "/chat/completions", json=chat) as r:
                    statuses.append((r.status, (await r.text())[:200]))
    assert [s for s, _ in statuses] == [200] * 24, statuses


async def test_aisdk_shows_llama_server_reasoning_through_the_responses_api(llama_reasoning, aiohttp_server):
    """llama-server streams reasoning as response.reasoning_text.*, which the AI SDK ignores;
    through the proxy it also gets the reasoning_summary events the SDK reads."""
    proxy = await aiohttp_server(create_app(Config(upstream=llama_reasoning)))
    without = await aiohttp_server(create_app(Config(upstream=llama_reasoning,
                                                     disable=["responses.reasoning_summary"])))
    plain = await run_sdk(str(without.make_url("/v1")), sdk="current", provider="responses", call="stream")
    for sdk in ("current", "legacy"):
        r = await run_sdk(str(proxy.make_url("/v1")), sdk=sdk, provider="responses", call="stream")
        assert r["errors"] == [], r
        assert r["reasoning"].strip(), r                 # the SDK shows the reasoning
        assert r["finishReason"] in ("stop", "length"), r
    # a valid stream without the summary events: the SDK shows no reasoning at all
    assert plain["errors"] == [] and not plain["reasoning"].strip(), plain
