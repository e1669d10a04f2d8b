"""Tiny real checkpoints built from config, for tests, benchmarks and the demo (no download)."""
