"""Terminal events: every stream ends in its own dialect, even when the upstream does not.

Clients hang, loop or retry when a stream stops without its terminal event (Codex
"stream closed before response.completed", OpenCode loops, SDKs waiting forever;
stream-defects R7, R8, E5-E8).  At the end of the upstream stream - a clean EOF
without the terminal event, or one cut short (``ctx.fault``: reset, timeout, oversized
event, proxy shutdown) - these rules close it with an error the client can see.
Leave them out with ``disable: [responses.terminal]`` / ``[chat.terminal]``.
"""

from __future__ import annotations

from .base import Fault, Rule, StreamContext, choices_of, mint_id
from .responses import TERMINAL, response_defaults
from .touch import Lacks, NullOnly, Touch

INCOMPLETE = Fault("upstream_incomplete", "the upstream ended the stream without its terminal event")


def error_fields(fault: Fault) -> dict:
    """An error event both AI SDK lines (nested) and openai-python (flat) accept."""
    return {"type": "error", "code": fault.code, "message": f"sse-fixup: {fault.message}",
            "param": None,
            "error": {"type": "server_error", "code": fault.code,
                      "message": f"sse-fixup: {fault.message}", "param": None}}


class ResponsesTerminal(Rule):
    """A stream without response.completed/incomplete/failed ends in error + response.failed."""

    name = "responses.terminal"
    endpoint = "responses"
    touches = (Touch(TERMINAL | {"error"}),)
    fixes = "R7, R8"

    def __init__(self):
        self.terminal = False
        self.error = False

    def apply(self, obj: dict, ctx: StreamContext):
        if obj.get("type") == "error":
            self.error = True
        elif obj.get("type") in TERMINAL:
            self.terminal = True
        return False

    def finish(self, ctx: StreamContext):
        if self.terminal:
            return []
        fault = ctx.fault or INCOMPLETE
        response = {"id": ctx.response_id or mint_id("resp_"), **response_defaults(ctx),
                    "status": "failed", "output": [], "usage": None, "incomplete_details": None,
                    "error": {"code": fault.code, "message": f"sse-fixup: {fault.message}"}}
        failed = {"type": "response.failed", "response": response}
        return [failed] if self.error else [error_fields(fault), failed]


class ChatTerminal(Rule):
    """A stream cut off with no evidence of completion ends in an error chunk (then chat.done's [DONE])."""

    name = "chat.terminal"
    endpoint = "chat"
    # evidence of completion: a finish_reason, a usage chunk (sent after generation), [DONE]
    touches = (Touch(None, NullOnly("finish_reason", "usage"), Lacks(b'"error":')),)
    fixes = "E5, E8"

    def __init__(self):
        self.complete = False

    def apply(self, obj: dict, ctx: StreamContext):
        if obj.get("error") or obj.get("choices") == [] and isinstance(obj.get("usage"), dict):
            self.complete = True
        for choice in choices_of(obj):
            if isinstance(choice, dict) and choice.get("finish_reason"):
                ctx.finished = True
        return False

    def finish(self, ctx: StreamContext):
        if ctx.done_seen or ctx.finished or self.complete:
            return []
        err = error_fields(ctx.fault or INCOMPLETE)["error"]
        return [{"error": err}]


STREAM_RULES = [ResponsesTerminal, ChatTerminal]
