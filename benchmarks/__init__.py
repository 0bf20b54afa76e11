"""Benchmarks: each module runs with `python -m benchmarks.<name>` and writes JSON + PNG into results/."""
