"""Tests of the optional integrations (a package, so its conftest does not shadow
tests/conftest.py)."""
