"""Entry point kept for `python bench/llm_bench.py`; the benchmark lives in deskml.bench.llm (`deskml bench`)."""

from deskml.bench.llm import main

if __name__ == "__main__":
    main()
