"""Resilience policies, downstream targets and the resilience core."""
