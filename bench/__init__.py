"""Benchmarks: scripts that print figures (run each with python bench/NAME.py)."""
