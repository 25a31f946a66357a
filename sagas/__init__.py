"""Saga definitions, runs and the orchestrator that executes them."""
