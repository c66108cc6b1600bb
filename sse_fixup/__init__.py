"""sse-fixup: a streaming reverse proxy that fixes OpenAI-compatible SSE for strict clients."""

__version__ = "0.1.0"
