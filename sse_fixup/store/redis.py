"""``responses_store: {redis: URL}``: stored responses in Redis, for several replicas.

Any replica behind a load balancer can serve any turn (no sticky sessions): each response
is one key with Redis's own expiry (``SET ... PX ttl``), and a sorted set of ids by time
keeps ``max_items`` (the oldest popped and deleted).  Redis is the distributed engine;
nothing here tries to be one.  Short socket timeouts and one retry: a Redis that is down
makes a continuation fail with a 503 in seconds, never hang.
"""

from __future__ import annotations

import time

PREFIX = "sse-fixup:response:"
INDEX = "sse-fixup:responses"       # sorted set: id -> time stored
TIMEOUT = 2.0                       # connect and each command, seconds


class RedisBackend:
    name = "redis"
    shared = True

    def __init__(self, url: str, ttl: float, max_items: int):
        self.url, self.ttl, self.max_items = url, ttl, max_items
        self._client = None

    def describe(self) -> str:
        # no password in logs and error messages
        from urllib.parse import urlsplit
        u = urlsplit(self.url)
        return f"redis {u.scheme}://{u.hostname}:{u.port or 6379}{u.path}"

    def _redis(self):
        if self._client is None:
            try:
                import redis.asyncio as aioredis
                from redis.asyncio.retry import Retry
                from redis.backoff import NoBackoff
            except ImportError:
                raise RuntimeError("responses_store: redis needs the redis package "
                                   "(pip install 'sse-fixup[redis]')") from None
            # lazy: from_url does not connect; the pool connects on the first command
            self._client = aioredis.from_url(self.url, socket_timeout=TIMEOUT,
                                             socket_connect_timeout=TIMEOUT,
                                             retry=Retry(NoBackoff(), 1), health_check_interval=30)
        return self._client

    async def get(self, rid: str) -> bytes | None:
        return await self._redis().get(PREFIX + rid)

    async def put(self, rid: str, data: bytes) -> dict:
        r = self._redis()
        now = time.time()
        async with r.pipeline(transaction=True) as pipe:
            pipe.set(PREFIX + rid, data, px=max(1, int(self.ttl * 1000)))
            pipe.zadd(INDEX, {rid: now})
            pipe.zremrangebyscore(INDEX, "-inf", now - self.ttl)   # their keys expired already
            pipe.zcard(INDEX)
            _, _, expired, count = await pipe.execute()
        evicted = 0
        if count > self.max_items:
            victims = await r.zpopmin(INDEX, count - self.max_items)
            if victims:
                evicted = await r.delete(*(PREFIX + (v.decode() if isinstance(v, bytes) else v)
                                           for v, _ in victims))
        return {"ttl": expired, "max_items": evicted}

    async def delete(self, rid: str) -> bool:
        r = self._redis()
        async with r.pipeline(transaction=True) as pipe:
            pipe.delete(PREFIX + rid)
            pipe.zrem(INDEX, rid)
            gone, _ = await pipe.execute()
        return gone > 0

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
