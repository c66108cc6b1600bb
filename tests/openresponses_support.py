"""The Open Responses schema, as pydantic types, for the tests.

``tests/fixtures/openresponses/openresponses_types.py`` is ``openresponses-types`` 2.4.0
(mozilla-ai, Apache-2.0, LICENSE beside it), generated from the Open Responses OpenAPI
document ``public/openapi/openapi.json`` of openresponses/openresponses (spec version
2026-04-24, sha256 693f2609…; that file's newest commit in the index: 3452c0125645c81acc7690ebb612b6cb1000e19f).
It is vendored, not installed: the validator under test must not need it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PATH = Path(__file__).parent / "fixtures" / "openresponses" / "openresponses_types.py"


def types():
    name = "openresponses_types_vendored"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PATH)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod          # pydantic resolves the generated forward references here
        spec.loader.exec_module(mod)
    return sys.modules[name]


EVENT_CLASSES = {
    "response.created": "ResponseCreatedStreamingEvent", "response.queued": "ResponseQueuedStreamingEvent",
    "response.in_progress": "ResponseInProgressStreamingEvent",
    "response.completed": "ResponseCompletedStreamingEvent", "response.failed": "ResponseFailedStreamingEvent",
    "response.incomplete": "ResponseIncompleteStreamingEvent",
    "response.output_item.added": "ResponseOutputItemAddedStreamingEvent",
    "response.output_item.done": "ResponseOutputItemDoneStreamingEvent",
    "response.content_part.added": "ResponseContentPartAddedStreamingEvent",
    "response.content_part.done": "ResponseContentPartDoneStreamingEvent",
    "response.output_text.delta": "ResponseOutputTextDeltaStreamingEvent",
    "response.output_text.done": "ResponseOutputTextDoneStreamingEvent",
    "response.refusal.delta": "ResponseRefusalDeltaStreamingEvent",
    "response.refusal.done": "ResponseRefusalDoneStreamingEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaStreamingEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneStreamingEvent",
    "response.reasoning_summary_part.added": "ResponseReasoningSummaryPartAddedStreamingEvent",
    "response.reasoning_summary_part.done": "ResponseReasoningSummaryPartDoneStreamingEvent",
    "response.reasoning_summary_text.delta": "ResponseReasoningSummaryDeltaStreamingEvent",
    "response.reasoning_summary_text.done": "ResponseReasoningSummaryDoneStreamingEvent",
    "response.output_text.annotation.added": "ResponseOutputTextAnnotationAddedStreamingEvent",
    "error": "ErrorStreamingEvent",
}
# llama-server's raw chain of thought: the Open Responses schema names these
# response.reasoning.delta/.done; openai-python and the AI SDK use reasoning_text.*
NOT_IN_SCHEMA = frozenset({"response.reasoning_text.delta", "response.reasoning_text.done"})


def check_event(obj: dict) -> None:
    """Raise unless ``obj`` validates against its Open Responses event schema."""
    typ = obj["type"]
    if typ in NOT_IN_SCHEMA:
        return
    getattr(types(), EVENT_CLASSES[typ]).model_validate(obj)


def check_body(obj: dict) -> None:
    types().ResponseResource.model_validate(obj)
