"""Small networking helpers for tests: the same ones the benchmarks use."""

from bench.common import free_port, port_open, wait_for

__all__ = ["free_port", "port_open", "wait_for"]
