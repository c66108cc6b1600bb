"""Who breaks on what, and which built-in rule fixes it.

Defect ids are those of the project's defect catalogue (the stream-defects research notes,
also cited by each rule's ``fixes``): R* Responses, C* chat tool-call deltas, E* chat
envelope and termination, ``llama#N`` the numbered findings of the llama-server b11434
notes, ``OR`` a field only the Open Responses schema requires.  A finding
names the clients it breaks (as strict clients enforce the wire format) and the rule of
the default presets that repairs it ("" when no built-in rule can).
"""

from __future__ import annotations

AISDK = "AI SDK"                    # @ai-sdk/openai current (3.0.141 schemas)
AISDK_LEGACY = "AI SDK 3.0.41"      # the line OpenCode / Cursor bundled (ai 6.0.116)
COMPAT = "AI SDK openai-compatible"
OPENAI_PY = "openai-python"         # its pydantic types (ResponseStreamEvent, ChatCompletionChunk)
CODEX = "Codex"
SPEC = "Open Responses"             # the openresponses.org OpenAPI schema and its ordering rules
CHAT_SPEC = "OpenAI chat spec"      # what OpenAI documents and sends (not enforced by the SDKs)

BOTH_AISDK = (AISDK, AISDK_LEGACY)

DEFECTS: dict[str, str] = {
    "R1": "Responses item events without output_index; function_call items without id; created without created_at/model",
    "R2": "error.code a number, error without sequence_number, completed without usage",
    "R3": "no sequence_number, bare created/in_progress response, no content_index",
    "R4": "usage without output_tokens_details / input_tokens_details / total_tokens",
    "R5": "output_index / content_index missing on item and part events",
    "R6": "content_index not reset per item",
    "R7": "stream ends without a terminal response.* event",
    "R10": "response.tools absent",
    "R11": "completed without id/object/model, deltas before output_item.added, items never closed",
    "R12": "usage without input_tokens / total_tokens (Codex)",
    "R13": "sequence_number missing or not increasing",
    "R14": "output_text.delta/done without logprobs",
    "R15": "response.output null",
    "R16": "error event shape (flat vs nested)",
    "R18": "events for items never announced; output_index reused",
    "C1": "tool-call delta without index",
    "C2": "one index for several tool calls",
    "C5": "first tool-call delta without id",
    "C8": "id / name repeated on continuation deltas (openai-python concatenates them)",
    "C9": "function.name \"\" on continuation deltas",
    "C10": "function.name null on continuation deltas",
    "C13": "function.arguments an object, not a string",
    "C14": "tool_calls: [] on plain answers",
    "E1": "delta.role null",
    "E2": "finish_reason \"\"",
    "E3": "choices[].index missing",
    "E4": "finish_reason stop although tool calls were sent",
    "E5": "no finish_reason in the whole stream",
    "E7": "no data: [DONE]",
    "E9": "usage chunk without choices",
    "E13": "chunk id / created not constant in one stream",
    "llama#6": "no response.function_call_arguments.done",
    "llama#10": "a cut-off answer reported as completed",
    "llama#12": "model differs between events (requested name, then the GGUF path)",
    "llama#13": "mid-stream error as a bare {\"error\": …} block with no type",
    "OR": "a field the Open Responses ResponseResource requires",
}
