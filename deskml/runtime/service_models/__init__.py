"""The non-LLM models: embeddings, rerank, vision (classify, detect, OCR), speech and images.

`catalog` and `media_catalog` list the models deskml knows (with the engine and extra each needs),
`listing` adds user detectors and describes them for /api/tags and /v1/models, `manager`
(`ServiceManager`) loads each once and unloads it after keep_alive, `tasks` (`ServiceTasks`) runs
embedding, rerank and vision requests with dynamic `batching`, and `media` runs speech and image
requests. Their engines are in `deskml/engines/` (contract: `deskml/engines/spec.py`).
"""
