"""The response store: conversation state for backends that keep none (issue 13).

(Being written.)  ``Stores`` (one per app) gives each route its ``Store`` (or None);
``Store.expand`` turns ``previous_response_id`` into input items, ``Store.tap`` records
the answer, ``views`` serve GET/DELETE /v1/responses/{id}.
"""

from __future__ import annotations


class StoreError(Exception):
    """An answer the store gives instead of the backend: status, OpenAI error code, message."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param


class Stores:
    def __init__(self, cfg, metrics):
        self.cfg = cfg
        self.metrics = metrics

    def for_route(self, route):
        return None

    async def lifecycle(self, app):
        yield
