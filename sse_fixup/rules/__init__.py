"""Patch rules.  ``BUILTIN`` maps each built-in rule's YAML name to its class."""

from . import bodies, chat, realtime, reasoning, responses, spec, terminal
from .base import RequestInfo, Rule, StreamContext

BUILTIN: dict[str, type[Rule]] = {
    cls.name: cls for cls in (*reasoning.STREAM_RULES, *responses.STREAM_RULES, *spec.STREAM_RULES, *chat.STREAM_RULES,
                              *terminal.STREAM_RULES, *bodies.BODY_RULES, *spec.BODY_RULES, *reasoning.BODY_RULES,
                              *realtime.RULES)
}

__all__ = ["BUILTIN", "RequestInfo", "Rule", "StreamContext"]
