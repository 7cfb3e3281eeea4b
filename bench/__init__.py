"""Benchmarks: each compares capi-stream with a named baseline in the same run (see README)."""
