"""The inference gateway: the OpenAI-compatible API applications call (``build_gateway`` in :mod:`.app`)."""
