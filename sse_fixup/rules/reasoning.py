"""Reasoning rules: where a backend puts the model's reasoning, and where a client looks.

- ``responses.reasoning_summary``: llama-server streams reasoning as
  ``response.reasoning_text.*`` on a reasoning item; the AI SDK reads only
  ``response.reasoning_summary_*`` (``aisdk-schema.md`` §3.2), so it shows nothing.
- ``chat.reasoning_content`` / ``chat.reasoning``: the two names of a chat delta's reasoning
  (T1, T2); a route picks at most one.
- ``chat.think_tags`` / ``chat.think_tags_opened``: inline ``<think>…</think>`` in ``content``
  (backends without a reasoning parser, T3, T5) split out into ``reasoning_content``.
- ``chat.drop_reasoning`` / ``responses.drop_reasoning``: no reasoning at all (voice clients
  read every word aloud, T4, T7).

Where they run (the lead engineer's preset order): before every built-in rule of their
endpoint, i.e. before ``responses.response_skeleton`` / ``chat.envelope``.  Among
themselves: ``responses.drop_reasoning`` before ``responses.reasoning_summary`` (dropped
items then get no summary); ``chat.think_tags`` before ``chat.reasoning`` and before
``chat.drop_reasoning`` (the reasoning it splits out is then renamed or dropped).
The ``BODY_RULES`` do the same for complete (non-stream) bodies.

``responses.drop_reasoning`` and ``responses.output_index``: the built-in output_index rule
trusts an ``output_index`` upstream gave and counts items itself where upstream gave none.
Where upstream numbered its items (OpenAI, vLLM: reasoning 0, message 1), dropping the
reasoning item would leave the message at 1 with nothing at 0, so this rule renumbers every
``output_index`` upstream gave (minus the dropped items before it).  Where upstream gave
none (llama-server), the dropped items never reach ``responses.output_index``, whose own
count then has no gap.
"""

from __future__ import annotations

import bisect
from typing import ClassVar

from .base import Rule, StreamContext, choices_of, mint_id
from .responses import ITEM_EVENTS, ITEM_SCOPED, LIFECYCLE_START, PART_EVENTS, TERMINAL, _id
from .touch import Lacks, NullOnly, Touch

REASONING_TEXT = frozenset({"response.reasoning_text.delta", "response.reasoning_text.done"})
SUMMARY_EVENTS = frozenset({
    "response.reasoning_summary_part.added", "response.reasoning_summary_part.done",
    "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
})
REASONING_KEYS = ("reasoning_content", "reasoning")


# -- Responses: reasoning summary -----------------------------------------------------------

def _content_text(item: dict) -> str:
    """The reasoning text of a reasoning item's ``content`` (``reasoning_text`` parts)."""
    content = item.get("content")
    return "".join(p["text"] for p in content if isinstance(p, dict) and p.get("type") == "reasoning_text"
                   and isinstance(p.get("text"), str)) if isinstance(content, list) else ""


class _Reasoning:
    """One reasoning item: its summary parts (text pieces of each) as sent so far."""

    __slots__ = ("parts", "open", "native")

    def __init__(self):
        self.parts: list[list[str]] = []
        self.open = False          # the last part has had no .done yet
        self.native = False        # upstream sends its own summary events: leave them be


class ReasoningSummary(Rule):
    """Reasoning items also stream as reasoning_summary_* events (the only reasoning the AI SDK reads)."""

    name = "responses.reasoning_summary"
    endpoint = "responses"
    # item events of other items lack "reasoning" (a reasoning item says "type":"reasoning");
    # the terminal events are parsed to close what is open and fill response.output
    touches = (Touch(ITEM_EVENTS, Lacks(b'"reasoning"')), Touch(REASONING_TEXT | SUMMARY_EVENTS),
               Touch(TERMINAL))
    fixes = "AI SDK checklist 8 (reasoning_text.* is not modeled: llama-server's reasoning is lost)"

    def __init__(self):
        self.items: dict[str, _Reasoning] = {}

    def apply(self, obj: dict, ctx: StreamContext):
        typ = obj.get("type")
        if typ in ITEM_EVENTS:
            return self._item_event(obj, typ == "response.output_item.done")
        if typ in TERMINAL:
            return self._terminal(obj)
        item_id = _id(obj.get("item_id"))
        st = self.items.get(item_id)
        if st is None:
            # never summary events for an item the AI SDK has not seen added: that is fatal there
            return None
        if typ in SUMMARY_EVENTS:
            if not st.parts:
                st.native = True
            return None
        if st.native:
            return None
        out = [obj]
        if typ == "response.reasoning_text.delta":
            delta = obj.get("delta")
            if not isinstance(delta, str):
                return None
            if not st.open:
                out.append(self._open(st, item_id, obj))
            st.parts[-1].append(delta)
            out.append(self._event("response.reasoning_summary_text.delta", item_id, obj, st, delta=delta))
        else:                                   # reasoning_text.done: the part ends here
            text = obj.get("text")
            if not st.parts and isinstance(text, str) and text:
                out += self._whole(st, item_id, obj, text)
            if st.open:
                out += self._close(st, item_id, obj)
        return out if len(out) > 1 else None

    def _item_event(self, obj: dict, done: bool):
        item = obj.get("item")
        if not isinstance(item, dict) or item.get("type") != "reasoning":
            return None
        item_id = _id(item.get("id"))
        if not done:
            if item_id is not None and item_id not in self.items:
                self.items[item_id] = _Reasoning()
            return None
        st = self.items.get(item_id)
        out: list = []
        if st is not None and not st.native:
            if not st.parts:                    # no text streamed: the done item's text, in one delta
                text = _content_text(item)
                if text:
                    out += self._whole(st, item_id, obj, text)
            if st.open:
                out += self._close(st, item_id, obj)
        filled = _fill_summary(item, st)
        if not out:
            return filled
        out.append(obj)                 # (the chain encodes it anew: it may have been filled)
        return out

    def _terminal(self, obj: dict):
        out = []
        for item_id, st in self.items.items():
            if st.open and not st.native:
                out += self._close(st, item_id, None)
        resp = obj.get("response")
        filled = False
        if isinstance(resp, dict) and isinstance(resp.get("output"), list):
            for item in resp["output"]:
                if isinstance(item, dict) and item.get("type") == "reasoning":
                    filled |= _fill_summary(item, self.items.get(_id(item.get("id"))))
        if not out:
            return filled
        out.append(obj)
        return out

    # -- the events -------------------------------------------------------------------

    @staticmethod
    def _event(typ: str, item_id: str, src: dict | None, st: _Reasoning, **fields) -> dict:
        ev = {"type": typ, "item_id": item_id}
        if src is not None and isinstance(src.get("output_index"), int):
            ev["output_index"] = src["output_index"]   # else responses.output_index gives it
        ev["summary_index"] = len(st.parts) - 1
        ev.update(fields)
        return ev

    def _open(self, st: _Reasoning, item_id: str, src: dict | None) -> dict:
        st.parts.append([])
        st.open = True
        return self._event("response.reasoning_summary_part.added", item_id, src, st,
                           part={"type": "summary_text", "text": ""})

    def _close(self, st: _Reasoning, item_id: str, src: dict | None) -> list:
        text = "".join(st.parts[-1])
        st.open = False
        return [self._event("response.reasoning_summary_text.done", item_id, src, st, text=text),
                self._event("response.reasoning_summary_part.done", item_id, src, st,
                            part={"type": "summary_text", "text": text})]

    def _whole(self, st: _Reasoning, item_id: str, src: dict | None, text: str) -> list:
        opened = self._open(st, item_id, src)
        st.parts[-1].append(text)
        return [opened, self._event("response.reasoning_summary_text.delta", item_id, src, st, delta=text)]


def _fill_summary(item: dict, st: _Reasoning | None) -> bool:
    """An empty ``summary`` of a reasoning item gets the text streamed for it (or its content)."""
    summary = item.get("summary")
    if summary is not None and (not isinstance(summary, list) or summary):
        return False
    if st is not None and st.native:
        return False
    if st is not None and st.parts:
        texts = ["".join(p) for p in st.parts]
    else:
        text = _content_text(item)
        texts = [text] if text else []
    if not texts:
        return False
    item["summary"] = [{"type": "summary_text", "text": t} for t in texts]
    return True


class ReasoningSummaryBody(Rule):
    """Non-stream Responses bodies: reasoning items with an empty summary get their reasoning text as summary."""

    name = "responses.body_reasoning_summary"
    endpoint = "responses"
    mode = "body"
    fixes = "AI SDK checklist 8 (generateText reads reasoning only from summary)"

    def apply(self, obj: dict, ctx: StreamContext):
        changed = False
        output = obj.get("output")
        for item in output if isinstance(output, list) else ():
            if isinstance(item, dict) and item.get("type") == "reasoning":
                changed |= _fill_summary(item, None)
        return changed


# -- Responses: drop reasoning --------------------------------------------------------------

class DropResponsesReasoning(Rule):
    """No reasoning items or reasoning events; upstream output_index values are renumbered without them."""

    name = "responses.drop_reasoning"
    endpoint = "responses"
    # item events and item-scoped events always (an event of a dropped item may carry no
    # other sign of it than its item_id); the lifecycle unless it has no reasoning item in
    # its output; any other event unless it has no output_index to renumber
    touches = (Touch(ITEM_EVENTS | ITEM_SCOPED | PART_EVENTS), Touch("response.reasoning*"),
               Touch(LIFECYCLE_START | TERMINAL, Lacks(b'"reasoning"')),
               Touch(None, Lacks(b'"output_index":')))
    fixes = "T4, T7 (voice clients read reasoning aloud)"

    def __init__(self):
        self.dropped: set = set()          # ids of the reasoning items dropped
        self.gaps: list[int] = []          # their upstream output_index values, sorted
        self.seen: dict = {}               # item key -> its upstream position
        self.next = 0                      # as responses.output_index counts upstream's items

    def apply(self, obj: dict, ctx: StreamContext):
        typ = obj.get("type")
        if isinstance(typ, str) and typ.startswith("response.reasoning"):
            return []
        if typ in ITEM_EVENTS:
            item = obj.get("item")
            if isinstance(item, dict):
                key = _id(item.get("id")) or _id(item.get("call_id"))
                pos = obj.get("output_index")
                if not isinstance(pos, int):
                    pos = self.seen.get(key, self.next if typ == "response.output_item.added" else None)
                if pos is not None and typ == "response.output_item.added":
                    self.next = max(self.next, pos + 1)
                    if key is not None:
                        self.seen[key] = pos
                if item.get("type") == "reasoning":
                    if key is not None:
                        self.dropped.add(key)
                    if pos is not None and typ == "response.output_item.added":
                        bisect.insort(self.gaps, pos)
                    return []
        elif typ in ITEM_SCOPED or typ in PART_EVENTS:
            if _id(obj.get("item_id")) in self.dropped:
                return []
        elif typ in LIFECYCLE_START or typ in TERMINAL:
            resp = obj.get("response")
            output = resp.get("output") if isinstance(resp, dict) else None
            if isinstance(output, list):
                kept = [i for i in output if not (isinstance(i, dict) and i.get("type") == "reasoning")]
                if len(kept) != len(output):
                    resp["output"] = kept
                    return True
            return None
        index = obj.get("output_index")
        if isinstance(index, int) and self.gaps:
            shift = bisect.bisect_left(self.gaps, index)
            if shift:
                obj["output_index"] = index - shift
                return True
        return None


class DropResponsesReasoningBody(Rule):
    """Non-stream Responses bodies: no reasoning items in output."""

    name = "responses.body_drop_reasoning"
    endpoint = "responses"
    mode = "body"
    fixes = "T4, T7"

    def apply(self, obj: dict, ctx: StreamContext):
        output = obj.get("output")
        if not isinstance(output, list):
            return False
        kept = [i for i in output if not (isinstance(i, dict) and i.get("type") == "reasoning")]
        if len(kept) == len(output):
            return False
        obj["output"] = kept
        return True


# -- chat: the reasoning field's name -------------------------------------------------------

def _rename(d, source: str, target: str) -> bool:
    """``d[source]`` becomes ``d[target]``; a non-null ``target`` already there wins."""
    if not isinstance(d, dict) or source not in d:
        return False
    value = d.pop(source)
    if d.get(target) is None and (value is not None or target not in d):
        d[target] = value
    return True


class _Rename(Rule):
    source: ClassVar[str] = ""
    target: ClassVar[str] = ""
    part: ClassVar[str] = "delta"          # "message" in bodies

    def apply(self, obj: dict, ctx: StreamContext):
        changed = False
        for choice in choices_of(obj):
            if isinstance(choice, dict):
                changed |= _rename(choice.get(self.part), self.source, self.target)
        return changed


class ReasoningContent(_Rename):
    """Chat deltas carry reasoning as reasoning_content (llama-server, DeepSeek), not reasoning (vLLM)."""

    name = "chat.reasoning_content"
    endpoint = "chat"
    source, target = "reasoning", "reasoning_content"
    touches = (Touch(None, Lacks(b'"reasoning":')),)
    fixes = "T1, T2 (vLLM >= PR #33402 sends only reasoning)"


class Reasoning(_Rename):
    """Chat deltas carry reasoning as reasoning (vLLM, Ollama, OpenRouter), not reasoning_content."""

    name = "chat.reasoning"
    endpoint = "chat"
    source, target = "reasoning_content", "reasoning"
    touches = (Touch(None, Lacks(b'"reasoning_content":')),)
    fixes = "T2 (clients that read only reasoning)"


class ReasoningContentBody(ReasoningContent):
    """Non-stream chat messages carry reasoning as reasoning_content, not reasoning."""

    name = "chat.body_reasoning_content"
    mode = "body"
    part = "message"


class ReasoningBody(Reasoning):
    """Non-stream chat messages carry reasoning as reasoning, not reasoning_content."""

    name = "chat.body_reasoning"
    mode = "body"
    part = "message"


# -- chat: drop reasoning -------------------------------------------------------------------

class DropChatReasoning(Rule):
    """Chat deltas carry no reasoning (reasoning_content, reasoning)."""

    name = "chat.drop_reasoning"
    endpoint = "chat"
    touches = (Touch(None, Lacks(b'"reasoning_content":', b'"reasoning":')),)
    fixes = "T4, T7 (voice clients read reasoning aloud)"
    part: ClassVar[str] = "delta"

    def apply(self, obj: dict, ctx: StreamContext):
        changed = False
        for choice in choices_of(obj):
            d = choice.get(self.part) if isinstance(choice, dict) else None
            if isinstance(d, dict):
                for key in REASONING_KEYS:
                    if key in d:
                        del d[key]
                        changed = True
        return changed


class DropChatReasoningBody(DropChatReasoning):
    """Non-stream chat messages carry no reasoning (reasoning_content, reasoning)."""

    name = "chat.body_drop_reasoning"
    mode = "body"
    part = "message"


# -- chat: inline <think> tags --------------------------------------------------------------

OPEN_TAG, CLOSE_TAG = "<think>", "</think>"


class ThinkSplitter:
    """Text in, ``(kind, text)`` segments out (kind ``content`` or ``reasoning``), tags removed.

    ``<think>`` starts reasoning, ``</think>`` ends it; a ``</think>`` outside reasoning and a
    ``<think>`` inside it are removed.  Only a tail that could be the start of a tag is held
    back (at most ``len("</think>") - 1`` characters) until the next text or ``flush``.
    """

    __slots__ = ("inside", "held")

    def __init__(self, inside: bool = False):
        self.inside = inside
        self.held = ""

    def feed(self, text: str) -> list[tuple[str, str]]:
        buf = self.held + text if self.held else text
        self.held = ""
        out: list[tuple[str, str]] = []
        pos, n = 0, len(buf)
        while pos < n:
            i = buf.find("<", pos)
            if i < 0:
                self._emit(out, buf[pos:])
                break
            if buf.startswith(OPEN_TAG, i) or buf.startswith(CLOSE_TAG, i):
                self._emit(out, buf[pos:i])
                close = buf.startswith(CLOSE_TAG, i)
                self.inside = not close
                pos = i + (len(CLOSE_TAG) if close else len(OPEN_TAG))
                continue
            rest = buf[i:]
            if OPEN_TAG.startswith(rest) or CLOSE_TAG.startswith(rest):
                self._emit(out, buf[pos:i])       # the end of the text may be a tag's start
                self.held = rest
                break
            self._emit(out, buf[pos:i + 1])
            pos = i + 1
        return out

    def flush(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        self._emit(out, self.held)
        self.held = ""
        return out

    def _emit(self, out: list, text: str) -> None:
        if not text:
            return
        kind = "reasoning" if self.inside else "content"
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + text)
        else:
            out.append((kind, text))


def _set_segments(delta: dict, segs: list, original: str | None) -> bool:
    """``delta``'s content replaced by at most one segment."""
    if original is not None and (segs == [("content", original)] or (not segs and original == "")):
        return False
    if not segs and original is None:
        return False
    delta.pop("content", None)
    for kind, text in segs:
        if kind == "content":
            delta["content"] = text
        else:
            before = delta.get("reasoning_content")
            delta["reasoning_content"] = (before if isinstance(before, str) else "") + text
    return True


class ThinkTags(Rule):
    """Inline <think>…</think> in chat content becomes reasoning_content, whatever the chunking."""

    name = "chat.think_tags"
    endpoint = "chat"
    # a chunk with no content key, no finish_reason and no usage has nothing to split or flush
    touches = (Touch(None, Lacks(b'"content":'), NullOnly("finish_reason", "usage")),)
    fixes = "T3, T5 (backends without a reasoning parser put <think> in content)"
    opened: ClassVar[bool] = False        # the chat template opened <think> already

    def __init__(self):
        self.splitters: dict[int, ThinkSplitter] = {}
        self.envelope: dict = {}          # id, created, model of the last chunk with content

    def apply(self, obj: dict, ctx: StreamContext):
        choices = obj.get("choices")
        if not isinstance(choices, list):
            return None
        if not choices:
            # the usage chunk comes after generation: what is held goes out before it
            flush = self._flush_chunk() if isinstance(obj.get("usage"), dict) else None
            return [flush, obj] if flush else None
        plans = []
        for pos, choice in enumerate(choices):
            if not isinstance(choice, dict):
                plans.append(None)
                continue
            index = choice.get("index") if isinstance(choice.get("index"), int) else pos
            delta = choice.get("delta")
            original = delta.get("content") if isinstance(delta, dict) else None
            if self.opened and index not in self.splitters and isinstance(delta, dict) \
                    and any(isinstance(delta.get(k), str) and delta[k] for k in REASONING_KEYS):
                # upstream separates reasoning itself: its content is no reasoning
                self.splitters[index] = ThinkSplitter(False)
            segs = None
            if isinstance(original, str):
                if not self.envelope:
                    self.envelope = {k: obj[k] for k in ("id", "created", "model") if k in obj}
                sp = self.splitters.get(index)
                if sp is None:
                    sp = self.splitters[index] = ThinkSplitter(self.opened)
                segs = sp.feed(original)
            else:
                original = None
            if choice.get("finish_reason") and index in self.splitters:
                rest = self.splitters[index].flush()
                if rest:
                    segs = _merge((segs or []) + rest)
            plans.append((choice, index, segs, original) if segs is not None else None)
        if all(p is None or len(p[2]) <= 1 for p in plans):
            changed = False
            for p in plans:
                if p is not None:
                    choice, _, segs, original = p
                    if not isinstance(choice.get("delta"), dict):
                        choice["delta"] = {}
                    changed |= _set_segments(choice["delta"], segs, original)
            return changed
        return self._pieces(obj, plans)

    def _pieces(self, obj: dict, plans: list) -> list[dict]:
        """One chunk per segment, in order (text, then reasoning, then text...)."""
        count = max(len(p[2]) for p in plans if p is not None)
        chunks = []
        for k in range(count):
            chunk = {key: value for key, value in obj.items() if key != "choices"}
            if k < count - 1 and chunk.get("usage") is not None:
                chunk["usage"] = None
            chunk["choices"] = []
            chunks.append(chunk)
        for pos, p in enumerate(plans):
            if p is None:
                chunks[0]["choices"].append(obj["choices"][pos])
                continue
            choice, index, segs, original = p
            if len(segs) <= 1:
                first = dict(choice)
                first["delta"] = dict(choice["delta"]) if isinstance(choice.get("delta"), dict) else {}
                _set_segments(first["delta"], segs, original)
                chunks[0]["choices"].append(first)
                continue
            reason = choice.get("finish_reason")
            for k, seg in enumerate(segs):
                if k == 0:
                    piece = dict(choice)
                    piece["delta"] = dict(choice["delta"]) if isinstance(choice.get("delta"), dict) else {}
                    _set_segments(piece["delta"], [seg], original)
                    if "finish_reason" in piece:
                        piece["finish_reason"] = None
                else:
                    piece = {"index": index, "delta": {}, "finish_reason": None}
                    _set_segments(piece["delta"], [seg], None)
                if k == len(segs) - 1 and reason is not None:
                    piece["finish_reason"] = reason
                chunks[k]["choices"].append(piece)
        return chunks

    def _flush_chunk(self) -> dict | None:
        pieces = []
        for index, sp in self.splitters.items():
            segs = sp.flush()
            if segs:
                delta: dict = {}
                _set_segments(delta, segs, None)
                pieces.append({"index": index, "delta": delta, "finish_reason": None})
        if not pieces:
            return None
        env = self.envelope
        return {"id": env.get("id") or mint_id("chatcmpl-"), "object": "chat.completion.chunk",
                "created": env.get("created", 0), "model": env.get("model", "unknown"), "choices": pieces}

    def finish(self, ctx: StreamContext):
        chunk = self._flush_chunk()
        if chunk is None:
            return []
        env = ctx.envelope
        if env is not None:
            chunk.update(id=env.id, created=env.created, model=env.model)
        elif not isinstance(chunk["created"], int) or not chunk["created"]:
            chunk["created"] = ctx.started
        return [chunk]


class ThinkTagsOpened(ThinkTags):
    """Chat content is reasoning until </think> (the chat template opened <think>), then <think> tags as usual."""

    name = "chat.think_tags_opened"
    opened = True
    # it also learns from reasoning deltas (a backend that separates reasoning itself)
    touches = (Touch(None, Lacks(b'"content":', b'"reasoning_content":', b'"reasoning":'),
                     NullOnly("finish_reason", "usage")),)
    fixes = "T3, T5 (templates that open <think> themselves: DeepSeek-R1, QwQ, Qwen3 thinking)"


def _merge(segs: list) -> list:
    out: list = []
    for kind, text in segs:
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + text)
        elif text:
            out.append((kind, text))
    return out


def split_think(text: str, opened: bool = False) -> tuple[str, str]:
    """A whole text as (content, reasoning)."""
    sp = ThinkSplitter(opened)
    segs = sp.feed(text) + sp.flush()
    return ("".join(t for k, t in segs if k == "content"), "".join(t for k, t in segs if k == "reasoning"))


class ThinkTagsBody(Rule):
    """Non-stream chat messages: inline <think>…</think> in content becomes reasoning_content."""

    name = "chat.body_think_tags"
    endpoint = "chat"
    mode = "body"
    fixes = "T3, T5"
    opened: ClassVar[bool] = False

    def apply(self, obj: dict, ctx: StreamContext):
        changed = False
        for choice in choices_of(obj):
            msg = choice.get("message") if isinstance(choice, dict) else None
            if not isinstance(msg, dict) or not isinstance(msg.get("content"), str):
                continue
            content, reasoning = split_think(msg["content"], self.opened)
            if content == msg["content"] and not reasoning:
                continue
            msg["content"] = content
            if reasoning:
                before = msg.get("reasoning_content")
                msg["reasoning_content"] = (before if isinstance(before, str) else "") + reasoning
            changed = True
        return changed


class ThinkTagsOpenedBody(ThinkTagsBody):
    """Non-stream chat messages: content is reasoning until </think> (the template opened <think>)."""

    name = "chat.body_think_tags_opened"
    opened = True


STREAM_RULES = [ReasoningSummary, DropResponsesReasoning, ReasoningContent, Reasoning, ThinkTags,
                ThinkTagsOpened, DropChatReasoning]
BODY_RULES = [ReasoningSummaryBody, DropResponsesReasoningBody, ReasoningContentBody, ReasoningBody,
              ThinkTagsBody, ThinkTagsOpenedBody, DropChatReasoningBody]
