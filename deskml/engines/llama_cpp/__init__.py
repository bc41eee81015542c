"""GGUF models on llama.cpp's server core (the `xllamacpp` wheel): everything that knows llama.cpp.

`engine.py` loads a model and streams a request as core events, `body.py` builds llama.cpp's request
body from a prepared `EngineRequest`; the chunks it streams back are OpenAI-style and read by
`engines.openai_wire.ChunkTranslator`.
"""

from deskml.engines.llama_cpp.body import Endpoint, request_body, sampling_body
from deskml.engines.llama_cpp.engine import LlamaCppModel, load_llama_cpp

__all__ = ["Endpoint", "LlamaCppModel", "load_llama_cpp", "request_body", "sampling_body"]
