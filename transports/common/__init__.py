"""What the network transports share: where secrets come from (``credentials``) and the client TLS
settings and context (``tls``)."""
