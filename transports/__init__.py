"""Built-in transport plugins, found by the daemon only through the ``spoolerd.transports`` entry points."""
