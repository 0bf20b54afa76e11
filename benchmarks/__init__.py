"""Benchmarks: each module runs with `python -m benchmarks.<name>` and writes JSON, PNG plots and a
Markdown table into benchmarks/results/."""
