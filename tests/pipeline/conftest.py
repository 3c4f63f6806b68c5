"""The ``backend`` fixture of tests/backends.py: a module whose tests take it runs once per Broker
backend (sim, tws, webapi), the gateways simulated on loopback."""

from __future__ import annotations

from tests.backends import backend, pytest_configure, pytest_generate_tests

#: the backend fixture and its hooks, found here by the tests of this folder
__all__ = ["backend", "pytest_configure", "pytest_generate_tests"]
