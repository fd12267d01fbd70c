"""Prompt templates of the audit (``string.Template`` files, ``$name`` placeholders), shipped as package data."""
