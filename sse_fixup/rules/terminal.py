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
    types = TERMINAL | {"error"}
    fixes = "R7, R8"

    def new_state(self):
        return {"terminal": False, "error": False}

    def apply(self, obj: dict, ctx: StreamContext):
        st = self.state(ctx)
        if obj.get("type") == "error":
            st["error"] = True
        elif obj.get("type") in TERMINAL:
            st["terminal"] = True
        return False

    def finish(self, ctx: StreamContext):
        st = self.state(ctx)
        if st["terminal"]:
            return []
        fault = ctx.fault or INCOMPLETE
        skeleton = ctx.state.get("responses.response_skeleton") or {}
        response = {"id": skeleton.get("id") or mint_id("resp_"), **response_defaults(ctx),
                    "status": "failed", "output": [], "usage": None, "incomplete_details": None,
                    "error": {"code": fault.code, "message": f"sse-fixup: {fault.message}"}}
        failed = {"type": "response.failed", "response": response}
        return [failed] if st["error"] else [error_fields(fault), failed]


class ChatTerminal(Rule):
    """A stream cut off before any finish_reason ends in an error chunk (then chat.done's [DONE])."""

    name = "chat.terminal"
    endpoint = "chat"
    fixes = "E5, E8"

    def new_state(self):
        return {"finished": False, "error": False}

    def wants(self, ev, ctx):
        data = ev.data
        return b"finish_reason" in data and b'"finish_reason":null' not in data \
            or b'"error"' in data

    def region_ok(self, region, ctx):
        return not region.has(b'"error"') \
            and region.count(b"finish_reason") == region.count(b'"finish_reason":null')

    def apply(self, obj: dict, ctx: StreamContext):
        st = self.state(ctx)
        if obj.get("error"):
            st["error"] = True
        for choice in choices_of(obj):
            if isinstance(choice, dict) and choice.get("finish_reason"):
                st["finished"] = True
        return False

    def finish(self, ctx: StreamContext):
        st = self.state(ctx)
        # a stream that has its finish_reason is complete even if [DONE] never came
        if ctx.done_seen or st["finished"] or st["error"]:
            return []
        err = error_fields(ctx.fault or INCOMPLETE)["error"]
        return [{"error": err}]


STREAM_RULES = [ResponsesTerminal, ChatTerminal]
