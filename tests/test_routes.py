"""Routes: which backend a request goes to, what is rewritten on the way, and the answer
in the shape the client asked for whatever shape the backend gave."""

import asyncio
import json

import aiohttp
import pytest

from sse_fixup.config import ConfigError, parse
from sse_fixup.proxy import create_app

from .captures import FakeLlama
from .helpers import parse as parse_sse
from .upstreams import Scripted, chat_events

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


async def serve(aiohttp_server, fake) -> str:
    server = await aiohttp_server(fake.app)
    return str(server.make_url("")).rstrip("/")


async def proxy_for(aiohttp_client, yaml: str):
    return await aiohttp_client(create_app(parse(yaml, "routes.yaml")))


def test_a_route_takes_the_top_level_keys_it_leaves_out():
    cfg = parse("""
upstream: http://a:1
presets: [chat]
disable: [chat.done]
routes:
  - match: {model: "qwen*"}
    upstream: http://b:2
    presets: [default]
  - match: {path: "/voice/*"}
    drop_reasoning: true
""", "r.yaml")
    qwen, voice, default = cfg.effective_routes()
    assert (qwen.upstream, qwen.presets, qwen.disable) == ("http://b:2", ["default"], ["chat.done"])
    assert (voice.upstream, voice.presets, voice.drop_reasoning) == ("http://a:1", ["chat"], True)
    assert (default.upstream, default.match.model, default.drop_reasoning) == ("http://a:1", None, False)


@pytest.mark.parametrize("yaml, message", [
    ("routes:\n  - upstream: http://b:2\n", "r.yaml:2: routes[0].match: is required"),
    ("routes:\n  - match: {model: q}\n    upstrem: http://b\n", "r.yaml:3: routes[0].upstrem: unknown key; did you mean 'upstream'?"),
    ("routes:\n  - match: {modle: q}\n", "r.yaml:2: routes[0].match.modle: unknown key"),
    ("routes:\n  - match: {}\n    upstream_stream: sometimes\n", "r.yaml:3: routes[0].upstream_stream: must be one of"),
    ("routes:\n  - match: {}\n    upstream: ftp://x\n", "routes[0].upstream: must be an http"),
])
def test_route_errors_name_file_line_and_key(yaml, message):
    with pytest.raises(ConfigError) as err:
        parse(yaml, "r.yaml")
    assert message in str(err.value)


async def test_first_matching_route_takes_the_request(aiohttp_server, aiohttp_client):
    a, b, c = Scripted(chat_events(1) + ["eof"]), Scripted(chat_events(1) + ["eof"]), Scripted(chat_events(1) + ["eof"])
    ua, ub, uc = [str((await aiohttp_server(x.app)).make_url("")).rstrip("/") for x in (a, b, c)]
    client = await proxy_for(aiohttp_client, f"""
upstream: {uc}
routes:
  - match: {{model: "qwen*"}}
    upstream: {ua}
    model: Qwen2.5-7B-Instruct-Q4_K_M.gguf
  - match: {{path: "/voice/*"}}
    upstream: {ub}
""")
    for path, model in [("/v1/chat/completions", "qwen-7b"), ("/voice/v1/chat/completions", "llama"),
                        ("/voice/v1/chat/completions", "qwen2"), ("/v1/chat/completions", "llama")]:
        resp = await client.post(path, json={**CHAT, "model": model})
        assert resp.status == 200
        assert parse_sse(await resp.read())[-1] == "[DONE]"
    assert [json.loads(r[3])["model"] for r in a.received] == ["Qwen2.5-7B-Instruct-Q4_K_M.gguf"] * 2
    assert [r[1] for r in b.received] == ["/voice/v1/chat/completions"]
    assert [json.loads(r[3])["model"] for r in c.received] == ["llama"]


async def test_models_of_every_upstream_are_listed_once(aiohttp_server, aiohttp_client):
    one = await serve(aiohttp_server, FakeLlama(models=["qwen", "shared"]))
    two = await serve(aiohttp_server, FakeLlama(models=["llama", "shared"]))
    client = await proxy_for(aiohttp_client, f"upstream: {one}\nroutes:\n  - match: {{model: llama}}\n    upstream: {two}\n")
    body = await (await client.get("/v1/models")).json()
    assert [m["id"] for m in body["data"]] == ["llama", "shared", "qwen"]
    # one backend only: its own answer, byte for byte
    single = await proxy_for(aiohttp_client, f"upstream: {one}\n")
    assert [m["id"] for m in (await (await single.get("/v1/models")).json())["data"]] == ["qwen", "shared"]


@pytest.mark.parametrize("setting, client_stream, upstream_stream", [
    ("always", False, True), ("never", True, False), ("as_requested", True, True), ("as_requested", False, False)])
async def test_upstream_stream_decides_what_the_backend_is_asked(aiohttp_server, aiohttp_client,
                                                                setting, client_stream, upstream_stream):
    fake = FakeLlama()
    client = await proxy_for(aiohttp_client, f"upstream: {await serve(aiohttp_server, fake)}\n"
                                             f"upstream_stream: {setting}\n")
    resp = await client.post("/v1/chat/completions", json={**CHAT, "stream": client_stream,
                                                           "stream_options": {"include_usage": True}})
    assert resp.status == 200
    assert fake.requests[-1][3]["stream"] is upstream_stream
    # a request the route does not change goes as it came; "never" drops stream_options
    # (some backends refuse it without stream)
    assert ("stream_options" in fake.requests[-1][3]) is (setting != "never")
    if client_stream:
        assert resp.content_type == "text/event-stream" and parse_sse(await resp.read())[-1] == "[DONE]"
    else:
        assert resp.content_type == "application/json"
        assert (await resp.json())["object"] == "chat.completion"


async def test_include_usage_asks_the_backend_and_hides_the_chunk_from_clients_that_did_not(
        aiohttp_server, aiohttp_client):
    fake = FakeLlama()
    client = await proxy_for(aiohttp_client, f"upstream: {await serve(aiohttp_server, fake)}\n"
                                             "include_usage: true\n")
    plain = parse_sse(await (await client.post("/v1/chat/completions", json=CHAT)).read())
    assert fake.requests[-1][3]["stream_options"] == {"include_usage": True}
    assert not any(isinstance(c, dict) and c.get("usage") for c in plain)
    assert any(c.get("finish_reason") for c in plain[-2]["choices"])
    asked = parse_sse(await (await client.post("/v1/chat/completions", json={
        **CHAT, "stream_options": {"include_usage": True}})).read())
    assert asked[-2]["choices"] == [] and asked[-2]["usage"]["prompt_tokens_details"]["cached_tokens"] >= 0


async def test_a_stream_with_conversions_still_streams(aiohttp_server, aiohttp_client):
    """The first chunk leaves before the upstream has finished (route options on)."""
    up = Scripted(chat_events(2) + ["hold"])
    client = await proxy_for(aiohttp_client, f"upstream: {await serve(aiohttp_server, up)}\n"
                                             "include_usage: true\nthink_tags: split\n"
                                             "reasoning_field: reasoning_content\n")
    async with client.post("/v1/chat/completions", json=CHAT) as resp:
        first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 2)
        assert parse_sse(first)[0]["choices"][0]["delta"]["content"] == "t0"


@pytest.mark.parametrize("response_model", ["requested", "upstream", "qwen-fixed"])
def test_response_model_says_which_name_every_event_and_body_carries(response_model):
    from sse_fixup.config import Config

    from .captures import load
    from .helpers import parse, transform
    cap = load("d_resp_stream_tool_required")
    upstream_names = {e["response"]["model"] for e in parse(cap.body) if isinstance(e, dict) and "response" in e
                      and "model" in e["response"]}
    out = transform(cap.chunks, "responses", {"model": "tiny", "stream": True},
                    cfg=Config(response_model=response_model))
    names = {e["response"]["model"] for e in parse(out) if isinstance(e, dict) and "response" in e}
    if response_model == "requested":
        assert names == {"tiny"}
    elif response_model == "upstream":
        assert names - {"tiny"} == upstream_names - {"tiny"} and len(upstream_names - {"tiny"}) == 1
    else:
        assert names == {"qwen-fixed"}
    body = load("e_d_resp_tool_required")
    got = transform([body.body], "responses", {"model": "tiny"}, cfg=Config(response_model=response_model),
                    mode="body")
    import json
    model = json.loads(got)["model"]
    assert model == {"requested": "tiny", "qwen-fixed": "qwen-fixed"}.get(response_model, json.loads(body.body)["model"])
