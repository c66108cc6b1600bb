"""upstream_api: anthropic - OpenAI chat clients in front of an Anthropic Messages backend.

(Being written: issue 12.)
"""

from __future__ import annotations

from . import Translation


class AnthropicTranslation(Translation):
    upstream_api = "anthropic"
