"""``previous_response_id`` → a self-contained request (the Responses API's rules).

Local backends keep no conversation: llama-server b11434 answers ``400 llama.cpp does not
support 'previous_response_id'``, so a client that chains turns (LiveKit's Responses LLM,
the OpenAI Agents SDK, openai-python) fails on its second turn.  The store kept, for each
response, the input it answered (already expanded: the whole conversation before it) and
its output; a continuation gets ``stored input + stored output + its own input``.

``instructions`` do not carry over (the API: "the instructions from a previous response
will not be carried over"): only the request's own go upstream, so they are never stored
as input items.
"""

from __future__ import annotations


def input_items(value) -> list:
    """A request's ``input`` as a list of items: a string is one user message, and a
    message without ``type`` (the API's "easy input message", which LiveKit sends for
    assistant turns) gets the ``"type": "message"`` the API implies - llama-server b11434
    refuses an assistant message without it ("Cannot determine type of 'item'")."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list):
        return [value]       # not the API's shape: the backend says what is wrong with it
    return [{"type": "message", **item} if isinstance(item, dict) and "type" not in item
            and "role" in item else item for item in value]


def expanded(body: dict, record: dict) -> dict:
    """``body`` with the conversation of ``record`` (the response it continues) prepended
    to its input, and ``previous_response_id`` gone."""
    out = {k: v for k, v in body.items() if k != "previous_response_id"}
    out["input"] = [*record["input"], *record["output"], *input_items(body.get("input"))]
    return out


def record(rid: str, items: list, response: dict, streamed: list) -> dict:
    """What is kept for one response: the input it answered, its output items (those of
    ``response.output``, or the ``output_item.done`` items when a backend left it empty)
    and the response object as the client got it (for GET /v1/responses/{id})."""
    output = response.get("output")
    if not isinstance(output, list) or (not output and streamed):
        output = list(streamed)
        response = {**response, "output": output}
    return {"id": rid, "input": items, "output": [o for o in output if isinstance(o, dict)],
            "response": response}
