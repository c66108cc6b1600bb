"""The real LiveKit Agents OpenAI LLM plugin (``livekit-plugins-openai`` from PyPI) through the proxy.

The plugin is driven directly, as a voice agent's LLM node does it, with no LiveKit room or
server: ``livekit.plugins.openai.LLM(base_url=<proxy>/v1)``, a ``ChatContext``, ``llm.chat()``
and the stream of ``ChatChunk``s. It always posts ``stream: true`` with
``stream_options.include_usage`` to ``{base_url}/chat/completions``, so the fake llama-server
answers with its ``f_chat_stream*_include_usage`` captures, whose usage chunk carries
``prompt_tokens_details.cached_tokens``; the plugin reports that as
``CompletionUsage.prompt_cached_tokens`` (on the usage ``ChatChunk`` and in the
``metrics_collected`` event's ``LLMMetrics``).

Without the proxy the plugin silently drops a tool call from a stream that never says
``finish_reason`` (it emits calls only on ``tool_calls``/``stop``); through it the call arrives.
"""

from __future__ import annotations

import json

import pytest

from .captures import FakeLlama, load, pick
from .helpers import parse
from .upstreams import Scripted, chat_ending_in_usage, sse

TEXT_CAPTURE = "f_chat_stream_include_usage"
TOOL_CAPTURE = "f_chat_stream_tool_required_include_usage"


def _livekit():
    try:
        from livekit.agents import llm
        from livekit.agents.types import APIConnectOptions
        from livekit.plugins import openai
    except ImportError as e:
        pytest.fail(f"livekit-plugins-openai is needed ({e}): run the README's test command "
                    "(bash tests/run.sh installs the test extras)", pytrace=False)
    return llm, APIConnectOptions, openai


async def livekit_chat(base_url: str, *, tools: bool = False, timeout: float = 10.0) -> dict:
    """One ``LLM.chat()`` turn of the real LiveKit plugin against ``base_url`` (…/v1).

    Returns the text deltas joined, the completed tool calls as (name, arguments JSON), the
    usage the plugin parsed (CompletionUsage as a dict, or None), its LLMMetrics (dict or
    None) and the errors: the exception the stream raised and its causes, outermost first.
    No retries (the plugin's default is 3, 2 s apart), so a failure shows at once."""
    llm, APIConnectOptions, lk_openai = _livekit()

    @llm.function_tool
    async def get_weather(city: str) -> str:
        """Get the weather

        Args:
            city: the city
        """
        return "sunny"

    out: dict = {"text": "", "tool_calls": [], "usage": None, "metrics": None, "errors": []}
    metrics: list = []
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content="What is the weather in Paris?" if tools else "Say hello")
    async with lk_openai.LLM(model="tiny", base_url=base_url, api_key="none") as model:
        model.on("metrics_collected", metrics.append)
        try:
            async with model.chat(chat_ctx=ctx, tools=[get_weather] if tools else None,
                                  conn_options=APIConnectOptions(max_retry=0, timeout=timeout)
                                  ) as stream:
                async for chunk in stream:
                    if chunk.delta is not None:
                        out["text"] += chunk.delta.content or ""
                        out["tool_calls"] += [(c.name, c.arguments) for c in chunk.delta.tool_calls]
                    if chunk.usage is not None:
                        out["usage"] = chunk.usage.model_dump()
        except Exception as e:        # noqa: BLE001 - the caller asserts on it
            while e is not None:
                out["errors"].append(f"{type(e).__module__}.{type(e).__name__}: {e}")
                e = e.__cause__
    # the metrics task ends inside the stream's aclose(); it reports nothing for a failed attempt
    if metrics:
        out["metrics"] = metrics[-1].model_dump()
    return out


def _expected(name: str) -> dict:
    """What a client should get from a chat capture: text, tool-call arguments, usage."""
    events = [e for e in parse(load(name).body) if isinstance(e, dict)]
    deltas = [c.get("delta") or {} for e in events for c in e.get("choices") or []]
    return {
        "text": "".join(d.get("content") or "" for d in deltas),
        "arguments": "".join(t["function"].get("arguments") or ""
                             for d in deltas for t in d.get("tool_calls") or []),
        "usage": [e["usage"] for e in events if e.get("usage")][-1],
    }


def _assert_usage(r: dict, usage: dict) -> None:
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    assert cached > 0                                     # or the test would prove nothing
    want = {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"], "prompt_cached_tokens": cached}
    assert r["usage"] is not None, r
    assert {k: r["usage"][k] for k in want} == want
    assert r["metrics"] is not None, r
    assert {k: r["metrics"][k] for k in want} == want


async def test_text_reply_through_proxy(urls):
    r = await livekit_chat(urls["proxy"])
    want = _expected(TEXT_CAPTURE)
    assert r["errors"] == []
    assert r["text"] == want["text"] and r["text"].strip()
    assert r["tool_calls"] == []


async def test_tool_call_through_proxy(urls):
    r = await livekit_chat(urls["proxy"], tools=True)
    want = _expected(TOOL_CAPTURE)
    assert r["errors"] == []
    assert r["tool_calls"] == [("get_weather", want["arguments"])]
    assert isinstance(json.loads(r["tool_calls"][0][1])["city"], str)
    assert r["text"] == ""


@pytest.mark.parametrize("tools", [False, True])
async def test_usage_with_cached_tokens_through_proxy(urls, tools):
    r = await livekit_chat(urls["proxy"], tools=tools)
    assert r["errors"] == []
    _assert_usage(r, _expected(TOOL_CAPTURE if tools else TEXT_CAPTURE)["usage"])


async def test_what_the_plugin_sends(aiohttp_server):
    """The request body upstream (through the proxy): the fake picks the include_usage captures."""
    from sse_fixup.config import Config
    from sse_fixup.proxy import create_app
    fake = FakeLlama()
    up = await aiohttp_server(fake.app)
    proxy = await aiohttp_server(create_app(Config(upstream=str(up.make_url("")).rstrip("/"))))
    r = await livekit_chat(str(proxy.make_url("/v1")), tools=True)
    assert r["errors"] == []
    ((method, path, headers, body),) = fake.requests
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert headers["Authorization"] == "Bearer none"
    assert headers["User-Agent"].startswith("LiveKit Agents/")
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "tiny"
    assert body["messages"] == [{"role": "user", "content": "What is the weather in Paris?"}]
    (tool,) = body["tools"]
    assert tool["type"] == "function" and tool["function"]["name"] == "get_weather"
    assert tool["function"]["parameters"]["properties"]["city"]["type"] == "string"
    assert "tool_choice" not in body
    assert pick(path, body) == TOOL_CAPTURE


async def test_tool_call_without_finish_reason_is_lost_without_the_proxy(aiohttp_server):
    from sse_fixup.config import Config
    from sse_fixup.proxy import create_app
    up = await aiohttp_server(Scripted(chat_ending_in_usage()).app)
    upstream = str(up.make_url("")).rstrip("/")
    proxy = await aiohttp_server(create_app(Config(upstream=upstream)))
    # directly: no error, the text and usage arrive, and the tool call is silently gone
    r = await livekit_chat(upstream + "/v1", tools=True)
    assert r["errors"] == [] and r["text"] == "Let me check." and r["tool_calls"] == []
    # through the proxy (chat.finish_reason adds finish_reason tool_calls): the call arrives
    r = await livekit_chat(str(proxy.make_url("/v1")), tools=True)
    assert r["errors"] == [] and r["text"] == "Let me check."
    assert r["tool_calls"] == [("get_weather", '{"city": "Paris"}')]
    assert r["usage"]["prompt_cached_tokens"] == 4 and r["metrics"]["prompt_cached_tokens"] == 4


async def test_cut_stream_is_an_error_with_the_proxys_message(aiohttp_server):
    from sse_fixup.config import Config
    from sse_fixup.proxy import create_app
    env = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "tiny"}
    up = await aiohttp_server(Scripted([
        sse({**env, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]}),
        "reset"]).app)
    proxy = await aiohttp_server(create_app(Config(upstream=str(up.make_url("")).rstrip("/"))))
    r = await livekit_chat(str(proxy.make_url("/v1")))
    # LiveKit wraps every stream failure in its own APIConnectionError("Connection error.");
    # the proxy's terminal error chunk is the openai.APIError it was raised from
    assert r["errors"], r
    assert r["errors"][0].startswith("livekit.agents._exceptions.APIConnectionError"), r["errors"]
    assert any(e.startswith("openai.APIError: sse-fixup: the upstream closed the stream before it "
                            "was complete") for e in r["errors"]), r["errors"]
    assert r["text"] == "Hel" and r["usage"] is None and r["metrics"] is None


async def test_keepalive_comments_outlast_the_plugins_read_timeout(aiohttp_server):
    """The plugin reads with a timeout (APIConnectOptions.timeout, 10 s by default) that a
    slow prompt can exceed before the first token; the proxy's keepalive comments keep it
    reading when they come more often than that."""
    from sse_fixup.config import Config, Timeouts
    from sse_fixup.proxy import create_app
    env = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "tiny"}
    up = await aiohttp_server(Scripted([
        1.2,
        sse({**env, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"},
                                 "finish_reason": "stop"}]}),
        b"data: [DONE]\n\n", "eof"]).app)
    upstream = str(up.make_url("")).rstrip("/")
    proxy = await aiohttp_server(create_app(Config(
        upstream=upstream, timeouts=Timeouts(keepalive=0.1))))
    r = await livekit_chat(upstream + "/v1", timeout=0.4)
    assert r["text"] == "" and r["errors"], r
    assert r["errors"][0].startswith("livekit.agents._exceptions.APITimeoutError"), r["errors"]
    r = await livekit_chat(str(proxy.make_url("/v1")), timeout=0.4)
    assert r["errors"] == [] and r["text"] == "Hi"


@pytest.mark.parametrize("tools", [False, True])
async def test_plays_a_backend_that_only_answers_json(aiohttp_server, tools):
    """A custom-LLM server that answers one chat.completion body (issue #11): the plugin only
    plays chunks, so the proxy turns the body into the stream - text or tool call, and the
    usage chunk with cached tokens the plugin asked for."""
    from sse_fixup.config import Config
    from sse_fixup.proxy import create_app

    fake = FakeLlama(streams=False)
    up = await aiohttp_server(fake.app)
    proxy = await aiohttp_server(create_app(Config(upstream=str(up.make_url("")).rstrip("/"))))
    r = await livekit_chat(str(proxy.make_url("/v1")), tools=tools)
    body = json.loads(load("e_b_chat_tool_required" if tools else "e_a_chat_text").body)
    assert fake.requests[-1][3]["stream"] is True            # asked as the plugin asked
    assert r["errors"] == [], r
    message = body["choices"][0]["message"]
    if tools:
        call = message["tool_calls"][0]["function"]
        assert r["tool_calls"] == [(call["name"], call["arguments"])]
    else:
        assert r["text"] == message["content"] and r["text"].strip()
    _assert_usage(r, body["usage"])
