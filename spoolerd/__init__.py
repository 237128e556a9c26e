"""spoolerd: a mail spooler daemon with message stores and pluggable transports (after the MAPI spooler)."""

__version__ = "0.1.0"
