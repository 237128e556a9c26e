"""Small transports and a preprocessor that the spooler's tests script: installed through entry points."""
