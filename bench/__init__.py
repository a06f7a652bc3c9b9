"""Benchmarks (``make bench``): results in bench/results/*.json, summaries in docs/benchmarks.md."""
