"""The seed's ML-backend API (its Dart `MLBackendService`): /health, /api/llm, /api/vision, ..."""
