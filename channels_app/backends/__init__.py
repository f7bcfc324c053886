"""Built-in channel backends, one module per provider family."""
