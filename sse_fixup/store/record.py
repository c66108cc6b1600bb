"""The tap that keeps an answer: it sees what the client gets, after the rule chain.

A stream's ``response.completed`` (or ``response.incomplete``) carries the response the
client saw, with the id it will send as ``previous_response_id``; a JSON body is that
response.  The save is scheduled as soon as that event passes - before the writer has
sent it, so a client that answers at once finds the response kept (``Store`` waits for a
save in flight) - and never blocks or breaks the stream.
"""

from __future__ import annotations

from .expand import record

DONE = ("response.completed", "response.incomplete")
WANTED = frozenset((*DONE, "response.output_item.done"))


class Recorder:
    __slots__ = ("store", "items", "fix", "stream", "streamed", "saved")

    def __init__(self, store, items: list, shape: str, fix: dict | None = None):
        self.store = store
        self.items = items
        self.fix = fix or {}
        self.stream = shape == "stream"
        self.streamed: list = []        # output_item.done items, if completed has no output
        self.saved = False

    def push(self, events):
        if self.saved:
            return events
        for ev in events:
            # the Responses stream names its events: the deltas are not parsed for this
            if self.stream and ev.event is not None and ev.event not in WANTED:
                continue
            obj = ev.json
            if obj is None:
                continue
            if not self.stream:
                if obj.get("object") == "response" and obj.get("status") in ("completed", "incomplete"):
                    self._keep(obj)
                continue
            typ = obj.get("type")
            if typ == "response.output_item.done" and isinstance(obj.get("item"), dict):
                self.streamed.append(obj["item"])
            elif typ in DONE and isinstance(obj.get("response"), dict):
                self._keep(obj["response"])
        return events

    def end(self):
        return []

    def _keep(self, response: dict) -> None:
        rid = response.get("id")
        if not isinstance(rid, str) or not rid:
            return
        self.saved = True
        self.store.schedule(rid, record(rid, self.items, {**response, **self.fix}, self.streamed))
