"""Golden tests: each llama-server capture in, the exact patched stream out.

The expected files in tests/golden/ were produced by the default presets with a fixed
clock and fixed minted ids, then read by hand; ``SSE_FIXUP_REGEN=1`` rewrites them
after an intended change (review the diff).  Independently of the golden bytes, every
patched stream is validated against openai-python's own pydantic event types.
"""

import json
import os

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from sse_fixup.sse import Decoder

from .captures import all_names, load
from .helpers import GOLDEN, transform

REGEN = os.environ.get("SSE_FIXUP_REGEN") == "1"


def patch(name: str) -> bytes:
    cap = load(name)
    return transform(cap.chunks, cap.endpoint, cap.request, mode="stream" if cap.is_sse else "body")


def events(data: bytes):
    d = Decoder()
    return [e for e in d.feed(data) + d.close() if e.data is not None]


@pytest.mark.parametrize("name", all_names())
def test_capture_gives_exact_golden_output(name, fixed_clock):
    out = patch(name)
    path = GOLDEN / f"{name}.out"
    if REGEN:
        path.write_bytes(out)
    assert out == path.read_bytes()


RESP_EVENT = TypeAdapter(ResponseStreamEvent)


@pytest.mark.parametrize("name", [n for n in all_names() if load(n).is_sse and load(n).endpoint == "responses"])
def test_patched_responses_stream_meets_openai_types(name, fixed_clock):
    evs = events(patch(name))
    seqs = []
    item_index = {}
    for ev in evs:
        obj = json.loads(ev.data)
        RESP_EVENT.validate_python(obj)            # every required field, right types
        assert ev.event == obj["type"]
        seqs.append(obj["sequence_number"])
        if obj["type"] == "response.output_item.added":
            assert obj["output_index"] == len(item_index)    # the item's position
            item_index[obj["item"]["id"]] = obj["output_index"]
        elif "item" in obj:
            assert item_index[obj["item"]["id"]] == obj["output_index"]
        elif "item_id" in obj:
            assert item_index[obj["item_id"]] == obj["output_index"]
    assert seqs == list(range(len(seqs)))
    assert json.loads(evs[0].data)["type"] == "response.created"


@pytest.mark.parametrize("name", [n for n in all_names() if load(n).is_sse and load(n).endpoint == "chat"])
def test_patched_chat_stream_meets_openai_types(name, fixed_clock):
    evs = events(patch(name))
    chunks = [json.loads(e.data) for e in evs if e.data != b"[DONE]"]
    assert evs[-1].data == b"[DONE]"
    ok = [c for c in chunks if "choices" in c]
    for c in ok:
        ChatCompletionChunk.model_validate(c)
    assert len({(c["id"], c["created"]) for c in ok}) <= 1
    seen_ids = {}
    for c in ok:
        for ch in c["choices"]:
            for tc in (ch.get("delta") or {}).get("tool_calls") or ():
                if tc["index"] not in seen_ids:
                    seen_ids[tc["index"]] = tc["id"]
                    assert tc["type"] == "function" and tc["function"]["name"]
                else:
                    assert "id" not in tc and "name" not in tc["function"]
            if seen_ids and ch.get("finish_reason"):
                assert ch["finish_reason"] in ("tool_calls", "length")


@pytest.mark.parametrize("name", [n for n in all_names() if not load(n).is_sse and load(n).status == 200
                                  and load(n).name.startswith(("e_", "r_"))])
def test_patched_bodies_meet_openai_types(name, fixed_clock):
    obj = json.loads(patch(name))
    if load(name).endpoint == "responses":
        Response.model_validate(obj)
        assert isinstance(obj["created_at"], int)
        for item in obj["output"]:
            assert item["id"]
    else:
        ChatCompletion.model_validate(obj)
        for ch in obj["choices"]:
            for tc in ch["message"].get("tool_calls") or ():
                assert tc["type"] == "function"
