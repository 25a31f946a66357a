"""Benchmarks of the control plane, runnable with `python -m bench.<name>`."""
