"""The real openai Python SDK (its stream helpers) through the proxy."""

import json

import openai
import pytest

from .helpers import TOOL_CHAT, TOOL_RESP



def client(url):
    return openai.AsyncOpenAI(base_url=url, api_key="sk-none", max_retries=0)


async def test_responses_stream_tool_call(urls):
    async with client(urls["proxy"]).responses.stream(
            model="tiny", input="What is the weather in Paris?", tools=[TOOL_RESP],
            tool_choice="required") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    calls = [o for o in final.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert isinstance(json.loads(calls[0].arguments)["city"], str)


async def test_responses_stream_text(urls):
    async with client(urls["proxy"]).responses.stream(model="tiny", input="Say hello") as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert final.output_text == "".join(deltas) and final.output_text


async def test_responses_stream_tool_round_trip(urls):
    async with client(urls["proxy"]).responses.stream(
            model="tiny", tools=[TOOL_RESP], input=[
                {"role": "user", "content": "What is the weather in Paris?"},
                {"type": "function_call", "call_id": "call_abc", "name": "get_weather",
                 "arguments": '{"city":"Paris"}'},
                {"type": "function_call_output", "call_id": "call_abc", "output": '{"temp_c":21}'}]) as stream:
        final = await stream.get_final_response()
    assert final.status == "completed" and final.output_text


async def test_chat_stream_tool_call(urls):
    async with client(urls["proxy"]).chat.completions.stream(
            model="tiny", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            tools=[TOOL_CHAT], tool_choice="required") as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and call.id
    assert isinstance(json.loads(call.function.arguments)["city"], str)


async def test_chat_stream_text_with_usage(urls):
    async with client(urls["proxy"]).chat.completions.stream(
            model="tiny", messages=[{"role": "user", "content": "Say hello"}],
            stream_options={"include_usage": True}) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    assert final.choices[0].message.content and final.usage.completion_tokens > 0


async def test_non_stream_bodies(urls):
    c = client(urls["proxy"])
    resp = await c.responses.create(model="tiny", input="What is the weather?", tools=[TOOL_RESP])
    assert resp.output[0].type == "function_call" and resp.output[0].id
    chat = await c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "w?"}],
                                           tools=[TOOL_CHAT])
    assert chat.choices[0].message.tool_calls[0].type == "function"


async def test_responses_text_stream_fails_without_the_proxy(urls):
    # llama-server sends no content_index: openai-python's accumulator cannot index the part
    with pytest.raises(TypeError):
        async with client(urls["direct"]).responses.stream(model="tiny", input="Say hello") as stream:
            async for _ in stream:
                pass
