"""Anthropic Messages streams for tests/test_anthropic.py: the shapes Anthropic documents
(streaming guide: text, thinking with its signature, tool_use with input_json_delta, ping,
a mid-stream error, the max_tokens stop) and llama-server b11434's own /v1/messages captures
(tests/fixtures/anthropic/, recorded from the tiny test model)."""

from __future__ import annotations

from pathlib import Path

from .upstreams import sse

FIXTURES = Path(__file__).parent / "fixtures" / "anthropic"


def ev(obj: dict) -> bytes:
    """An Anthropic SSE event: ``event:`` named after its type, as Anthropic sends them."""
    return sse(obj, obj["type"])


def message_start(usage=None) -> bytes:
    return ev({"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "content": [],
        "model": "claude-sonnet-4-5", "stop_reason": None, "stop_sequence": None,
        "usage": usage or {"input_tokens": 25, "cache_read_input_tokens": 0,
                           "cache_creation_input_tokens": 0, "output_tokens": 1}}})


def block_start(index: int, block: dict) -> bytes:
    return ev({"type": "content_block_start", "index": index, "content_block": block})


def delta(index: int, d: dict) -> bytes:
    return ev({"type": "content_block_delta", "index": index, "delta": d})


def block_stop(index: int) -> bytes:
    return ev({"type": "content_block_stop", "index": index})


def message_delta(reason: str, usage=None) -> bytes:
    return ev({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
               "usage": usage or {"output_tokens": 15}})


PING = ev({"type": "ping"})
STOP = ev({"type": "message_stop"})
OVERLOADED = ev({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})


def text_stream(reason: str = "end_turn") -> list[bytes]:
    """Anthropic's basic streaming example: one text block, a ping after it starts."""
    return [message_start(), block_start(0, {"type": "text", "text": ""}), PING,
            delta(0, {"type": "text_delta", "text": "Hello"}),
            delta(0, {"type": "text_delta", "text": "!"}), block_stop(0),
            message_delta(reason), STOP]


def thinking_tool_stream() -> list[bytes]:
    """Extended thinking, then text, then a tool call whose input arrives split mid-token
    (Anthropic's tool-use streaming example splits ``{"location": "San Francisco, CA"}``)."""
    return [
        message_start({"input_tokens": 472, "cache_read_input_tokens": 100,
                       "cache_creation_input_tokens": 20, "output_tokens": 2}),
        block_start(0, {"type": "thinking", "thinking": ""}),
        delta(0, {"type": "thinking_delta", "thinking": "The user wants"}),
        delta(0, {"type": "thinking_delta", "thinking": " the weather."}),
        delta(0, {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        delta(1, {"type": "text_delta", "text": "Let me check."}),
        block_stop(1),
        PING,
        block_start(2, {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather",
                        "input": {}}),
        delta(2, {"type": "input_json_delta", "partial_json": ""}),
        delta(2, {"type": "input_json_delta", "partial_json": "{\"locat"}),
        delta(2, {"type": "input_json_delta", "partial_json": "ion\": \"San Fra"}),
        delta(2, {"type": "input_json_delta", "partial_json": "ncisco, CA\"}"}),
        block_stop(2),
        message_delta("tool_use", {"output_tokens": 89}),
        STOP,
    ]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()
