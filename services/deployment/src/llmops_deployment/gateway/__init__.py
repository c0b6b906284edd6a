"""The inference gateway: the OpenAI-compatible API applications call. Stateless; run any number of replicas."""
