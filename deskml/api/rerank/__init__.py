"""Rerank endpoints (`/v1/rerank`, `/api/rerank`) in the Jina / Cohere shape."""
