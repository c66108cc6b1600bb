"""Named lists of built-in rules, selectable in YAML under ``presets:``.

The order inside a preset is the order rules run in: identity fixes first (ids), then
positions (output_index, content_index), then shape, and ``sequence_number`` last so
that every event, synthesized ones included, is numbered.
"""

from __future__ import annotations

from .rules import realtime

PRESETS: dict[str, tuple[str, list[str]]] = {
    "responses": (
        "Make /v1/responses streams valid for the AI SDK (current and 3.0.41) and openai-python",
        ["responses.reasoning_summary", "responses.response_skeleton", "responses.model_name", "responses.error_event", "responses.function_call_items",
         "responses.output_index", "responses.content_index", "responses.text_parts",
         "responses.usage", "responses.terminal", "responses.sequence_number"],
    ),
    "chat": (
        "Make /v1/chat/completions streams valid for openai.chat, openai-compatible and openai-python",
        ["chat.envelope", "chat.choice_index", "chat.tool_call_deltas", "chat.finish_reason",
         "chat.terminal", "chat.done"],
    ),
    "json": (
        "Make non-stream JSON bodies of both endpoints valid for the same clients",
        ["responses.body_reasoning_summary", "responses.body", "responses.body_model_name", "chat.body"],
    ),
    "realtime": (
        "Make Realtime API server events (WebSocket) valid for LiveKit's plugin and openai-python",
        [cls.name for cls in realtime.RULES],
    ),
}
PRESETS["default"] = (
    "responses + chat + json + realtime: what the AI SDK, openai-python and LiveKit need",
    [name for preset in ("responses", "chat", "json", "realtime") for name in PRESETS[preset][1]],
)
DEFAULT_PRESETS = ["default"]
