"""Rules for Realtime API server events (the WebSocket's JSON messages), endpoint ``realtime``.

(Being written: issue 18.)
"""

from __future__ import annotations

RULES: list = []
