"""deskml: a local AI/ML inference server speaking the Ollama, OpenAI and seed ML-backend APIs."""

__version__ = "0.1.0"
