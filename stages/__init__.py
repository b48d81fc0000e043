"""Thin DVC stage adapters: read params.yaml, call the hneurons library, write declared outputs."""
