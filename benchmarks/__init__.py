"""Benchmarks. Every ``bench_*.py`` module exposes ``run() -> dict`` mapping a figure's name to
``{"value": float, "unit": str, "baseline": float | None, "ratio": float | None, "note": str}``;
baselines are measured in the same run, values are medians."""
