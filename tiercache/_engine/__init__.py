"""The I/O-free core of a namespace, composed of parts (see each module's docstring)."""
