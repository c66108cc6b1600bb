"""upstream_api: chat - Responses API clients in front of a chat-completions-only backend.

(Being written: issue 12.)
"""

from __future__ import annotations

from . import Translation


class ChatTranslation(Translation):
    upstream_api = "chat"
