"""Request rules (issue 14, part 5): the YAML operations on request bodies, list-item
selection in ``where``, and the built-ins for the request-side defects."""

from __future__ import annotations

import json

import pytest

from sse_fixup.config import parse as parse_config
from sse_fixup.routes import Router
from sse_fixup.schema import ConfigError

from .helpers import CHAT, RESP, TOOL_CHAT, TOOL_RESP, start
from .upstreams import Scripted, chat_events, resp_events

HOSTED = [{"type": "web_search"}, TOOL_RESP, {"type": "file_search", "vector_store_ids": ["v"]}]


def upstream_body(cfg_text: str, body: dict, endpoint: str = "responses") -> dict | bytes:
    route = Router(parse_config(cfg_text)).route("/v1/x", body.get("model"))
    data = json.dumps(body).encode()
    out = route.request_body(data, body, endpoint)
    return out if out is data else json.loads(out)


def test_built_in_drops_hosted_tools_llama_server_refuses():
    """R17: Codex sends web_search; llama-server: 'type' of tool must be 'function'."""
    got = upstream_body("request_rules: [responses.drop_hosted_tools]\n", {**RESP, "tools": HOSTED})
    assert got == {**RESP, "tools": [TOOL_RESP]}


def test_a_yaml_rule_selects_list_items_with_where():
    cfg = """
request_rules:
  - name: no-hosted
    match: {endpoint: responses, model: "m*", where: {"tools[*].type": {not_in: [function, custom]}}}
    delete: "tools[*]"
  - name: strict-off
    match: {where: {"tools[*].type": {equals: function}}}
    set: {"tools[*].strict": false}
    default: {tool_choice: auto}
"""
    got = upstream_body(cfg, {**RESP, "tools": HOSTED})
    assert got == {**RESP, "tools": [{**TOOL_RESP, "strict": False}], "tool_choice": "auto"}
    # the model glob: another model keeps its hosted tools (the second rule still applies)
    other = upstream_body(cfg, {**RESP, "model": "gpt", "tools": HOSTED})
    assert [t["type"] for t in other["tools"]] == ["web_search", "function", "file_search"]
    assert other["tools"][1]["strict"] is False


def test_a_rule_with_no_item_picked_does_not_run():
    cfg = """
request_rules:
  - match: {where: {"tools[*].type": {equals: custom}}}
    set: {marked: true}
"""
    body = {**RESP, "tools": [TOOL_RESP]}
    assert upstream_body(cfg, body) == json.dumps(body).encode()       # byte for byte


def test_body_conditions_and_rename_copy():
    cfg = """
request_rules:
  - match: {endpoint: chat, where: {max_completion_tokens: exists, max_tokens: missing}}
    rename: {max_completion_tokens: max_tokens}
  - match: {endpoint: chat, where: {user: exists}}
    copy: {metadata_user: user}
"""
    got = upstream_body(cfg, {**CHAT, "max_completion_tokens": 9, "user": "u"}, "chat")
    assert got == {**CHAT, "max_tokens": 9, "user": "u", "metadata_user": "u"}
    # the endpoint must match: a responses request with the same fields is untouched
    body = {**RESP, "max_completion_tokens": 9}
    assert upstream_body(cfg, body) == json.dumps(body).encode()


def test_built_ins_for_stream_options_and_tool_arguments():
    cfg = "request_rules: [chat.stream_options_with_stream, chat.tool_args_string, chat.drop_hosted_tools]\n"
    history = [{"role": "user", "content": "hi"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"city": "Paris"}}}]}]
    body = {"model": "m", "stream": False, "stream_options": {"include_usage": True}, "messages": history,
            "tools": [TOOL_CHAT, {"type": "web_search_preview"}]}
    got = upstream_body(cfg, body, "chat")
    assert "stream_options" not in got and got["tools"] == [TOOL_CHAT]
    assert got["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"city":"Paris"}'
    streaming = {**CHAT, "stream_options": {"include_usage": True}}
    assert upstream_body(cfg, streaming, "chat") == json.dumps(streaming).encode()


def test_request_rules_are_per_route():
    cfg = """
routes:
  - match: {model: "codex*"}
    request_rules: [responses.drop_hosted_tools, responses.default_text_format]
"""
    got = upstream_body(cfg, {**RESP, "model": "codex-mini", "tools": HOSTED})
    assert got["tools"] == [TOOL_RESP] and got["text"] == {"format": {"type": "text"}}
    body = {**RESP, "tools": HOSTED}
    assert upstream_body(cfg, body) == json.dumps(body).encode()


@pytest.mark.parametrize("text,message", [
    ("request_rules: [responses.drop_hosted_tool]\n", "did you mean 'responses.drop_hosted_tools'"),
    ("request_rules: [{match: {endpoint: chat}}]\n", "has no action"),
    ("request_rules: [{match: {where: {a: {bigger: 1}}}, delete: a}]\n", "condition must be"),
    ("request_rules: [{match: {where: {a: {in: 1}}}, delete: a}]\n", "in must be a list"),
    ("request_rules: [{match: {where: {'a[*].x': exists, 'b[*].y': exists}}, delete: a}]\n", "one list"),
    ("request_rules: [responses.drop_hosted_tools, responses.drop_hosted_tools]\n", "listed twice"),
])
def test_bad_request_rules_name_the_place(text, message):
    with pytest.raises(ConfigError, match=message) as exc:
        parse_config(text, "cfg.yaml")
    assert str(exc.value).startswith("cfg.yaml:1: request_rules[")


async def test_through_the_proxy(aiohttp_server, aiohttp_client):
    up = Scripted(resp_events(1) + ["eof"])
    client = await start(aiohttp_server, aiohttp_client, up, request_rules=["responses.drop_hosted_tools"])
    await (await client.post("/v1/responses", json={**RESP, "tools": HOSTED})).read()
    assert json.loads(up.received[0][3])["tools"] == [TOOL_RESP]
    up2 = Scripted([*chat_events(1), "eof"])
    client = await start(aiohttp_server, aiohttp_client, up2, request_rules=["responses.drop_hosted_tools"])
    raw = json.dumps({**CHAT, "tools": [{"type": "web_search"}]}).encode()
    await (await client.post("/v1/chat/completions", data=raw,
                             headers={"Content-Type": "application/json"})).read()
    assert up2.received[0][3] == raw                  # a responses rule: a chat request untouched
