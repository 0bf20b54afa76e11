"""Benchmarks: each module writes JSON, a PNG and a Markdown table into benchmarks/results/."""
