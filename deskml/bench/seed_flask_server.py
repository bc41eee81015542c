"""The seed methodology's "Desktop Server" LLM path, as its text builds it, for the benchmark.

Flask (threaded, as the seed runs it) + a transformers text-generation pipeline, with the seed's
`/generate_stream` SSE endpoint fed by TextIteratorStreamer. transformers loads the same GGUF that
deskml serves (`gguf_file=`, dequantised to float32), so both answer from the same weights.
This file is a benchmark peer only; deskml never imports it.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from pathlib import Path

from flask import Flask, Response, jsonify, request
from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer, pipeline


def build_app(gguf: Path) -> Flask:
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    eos = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    app = Flask(__name__)

    def chat_prompt(text: str) -> str:
        # tokenize=False: the template's text (the declared return type also covers token ids)
        return str(tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                 add_generation_prompt=True))

    @app.get("/health")
    def health() -> Response:
        return jsonify({"status": "ok", "services": {"llm": True}})

    @app.post("/api/llm/generate")
    def generate() -> Response:
        data = request.get_json()
        out = generator(chat_prompt(data["prompt"]), max_new_tokens=int(data.get("max_length", 200)),
                        do_sample=True, temperature=0.7, top_p=0.9)
        return jsonify({"success": True, "text": out[0]["generated_text"], "model": gguf.name})

    @app.post("/generate_stream")
    def generate_stream() -> Response:
        data = request.get_json()
        max_new = int(data.get("max_new_tokens", 128))
        inputs = tokenizer(chat_prompt(data["prompt"]), return_tensors="pt")
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        # min_new_tokens = max_new_tokens: the same fixed reply length the other systems produce
        kwargs = {**inputs, "streamer": streamer, "max_new_tokens": max_new, "min_new_tokens": max_new,
                  "do_sample": True, "temperature": 0.7, "eos_token_id": eos}
        threading.Thread(target=model.generate, kwargs=kwargs, daemon=True).start()

        def events() -> Iterator[str]:
            for token in streamer:
                if token:
                    yield f"data: {json.dumps({'token': token})}\n\n"
            # generate() was told min_new_tokens = max_new_tokens, so the reply is exactly that long;
            # the streamer yields words, not tokens, so the count is reported here.
            yield f"data: {json.dumps({'usage': {'completion_tokens': max_new}})}\n\n"
            yield "data: [DONE]\n\n"

        return Response(events(), mimetype="text/event-stream")

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    build_app(args.gguf).run(host="127.0.0.1", port=args.port, threaded=True)
