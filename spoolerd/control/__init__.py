"""The control socket: a local Unix stream socket speaking one JSON object per line (DESIGN §6)."""
