"""Sandbox fixtures: the gateway of tests/gateway, to check that the tokens the sandbox issues are accepted."""

from tests.gateway.conftest import make_gateway

__all__ = ["make_gateway"]
