"""Dirty traces: the canonical schema, analysis, importers and a tailer/indexer for growing JSONL files."""
