"""What the SQLite and PostgreSQL stores share, free of any I/O: their rows as named values
(``rows``), the rules of leases and the queue (``rules``) and the queueing step of ``submit`` /
``submit_new`` (``queueing``). Each dialect only runs the SQL."""
