"""Integrations with other libraries, each an optional extra imported only by its own module."""
