"""The SMTP listener (a face, DESIGN §1): applications that speak SMTP submit into a store through it.
The daemon starts it (``server.Listeners``) like the control server; the layers below never import it.
``check`` is what ``check-config`` asks of a listener's files, without importing the server."""
