"""``responses_store: memory``: the stored responses in this process's memory.

Bounded (``max_items``, oldest first out) and per process: with ``--workers N`` or several
replicas a continuation may land where turn 1 was not kept - use ``sqlite`` or ``redis``.
"""

from __future__ import annotations

import time
from collections import OrderedDict


class MemoryBackend:
    name = "memory"
    shared = False            # nobody else writes here: a miss is final

    def __init__(self, ttl: float, max_items: int):
        self.ttl, self.max_items = ttl, max_items
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()   # id -> (expires, data)

    def describe(self) -> str:
        return "memory"

    def _expire(self, now: float) -> int:
        # one ttl for all, kept in insertion order: the expired ones are at the front
        n = 0
        items = self._items
        while items:
            rid, (expires, _) = next(iter(items.items()))
            if expires > now:
                break
            del items[rid]
            n += 1
        return n

    async def get(self, rid: str) -> bytes | None:
        self._expire(time.time())
        hit = self._items.get(rid)
        return hit[1] if hit is not None else None

    async def put(self, rid: str, data: bytes) -> dict:
        now = time.time()
        expired = self._expire(now)
        self._items.pop(rid, None)
        self._items[rid] = (now + self.ttl, data)
        evicted = 0
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
            evicted += 1
        return {"ttl": expired, "max_items": evicted}

    async def delete(self, rid: str) -> bool:
        return self._items.pop(rid, None) is not None

    async def close(self) -> None:
        self._items.clear()
