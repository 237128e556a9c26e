"""Built-in message store providers, found by the daemon only through the ``spoolerd.stores`` entry points."""
