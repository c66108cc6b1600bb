"""Real clients get the shape they asked for, whatever the backend gives: the AI SDK
(current and 3.0.41) and openai-python stream from a backend that only answers JSON, and
get one body from a backend that only streams (issue #11, JSON <-> SSE)."""

import json

import openai
import pytest

from sse_fixup.config import Config
from sse_fixup.proxy import create_app

from .captures import FakeLlama
from .helpers import PROVIDERS, SDKS, TOOL_CHAT, TOOL_RESP, run_sdk


@pytest.fixture(params=[False, True], ids=["json-only-backend", "stream-only-backend"])
async def shaped(request, aiohttp_server):
    fake = FakeLlama(streams=request.param)
    up = await aiohttp_server(fake.app)
    proxy = await aiohttp_server(create_app(Config(upstream=str(up.make_url("")).rstrip("/"))))
    return {"proxy": str(proxy.make_url("/v1")), "fake": fake, "streams": request.param}


@pytest.mark.node
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("sdk", SDKS)
async def test_aisdk_gets_its_shape_from_any_backend(shaped, sdk, provider):
    # the call the backend cannot answer in kind: stream from a JSON-only one, generate from a streaming one
    call = "generate" if shaped["streams"] else "stream"
    r = await run_sdk(shaped["proxy"], sdk=sdk, provider=provider, call=call, tools=True)
    assert r["errors"] == [], r
    assert r["finishReason"] == "tool-calls", r
    (tc,) = r["toolCalls"]
    assert tc["toolName"] == "get_weather" and isinstance(tc["input"]["city"], str)
    sent = shaped["fake"].requests[-1][3]
    assert bool(sent.get("stream")) is (call == "stream")       # asked as the client asked
    r = await run_sdk(shaped["proxy"], sdk=sdk, provider=provider, call=call, tools=False)
    assert r["errors"] == [] and r["finishReason"] in ("stop", "length") and r["text"], r


async def test_openai_python_gets_its_shape_from_any_backend(shaped):
    client = openai.AsyncOpenAI(base_url=shaped["proxy"], api_key="none", max_retries=0)
    ask = {"model": "tiny", "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
           "tools": [TOOL_CHAT], "tool_choice": "required"}
    if shaped["streams"]:
        done = await client.chat.completions.create(**ask)
        resp = await client.responses.create(model="tiny", input="What is the weather in Paris?",
                                             tools=[TOOL_RESP], tool_choice="required")
    else:
        async with client.chat.completions.stream(**ask) as stream:
            async for _ in stream:
                pass
            done = await stream.get_final_completion()
        async with client.responses.stream(model="tiny", input="What is the weather in Paris?",
                                           tools=[TOOL_RESP], tool_choice="required") as stream:
            async for _ in stream:
                pass
            resp = await stream.get_final_response()
    assert done.choices[0].finish_reason == "tool_calls"
    call = done.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and isinstance(json.loads(call.function.arguments)["city"], str)
    calls = [o for o in resp.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    assert resp.status == "completed" and resp.usage.total_tokens > 0
