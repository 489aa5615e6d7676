"""Idempotency keys: a client may repeat a POST that starts work (a deployment, an import)
with the same `Idempotency-Key` and get the first answer back instead of starting it twice."""
