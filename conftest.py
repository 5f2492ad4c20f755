"""Repository-level pytest glue; the harness itself is the `harness.plugin` pytest plugin."""
