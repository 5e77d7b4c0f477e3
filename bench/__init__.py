"""Benchmarks: scripts that start real services, measure, and print one JSON line of results."""
