"""Optional integrations, one module each; each imports its framework lazily."""
