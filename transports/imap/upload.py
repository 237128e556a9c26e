"""Upload: APPEND a message into a mailbox, as an outcome for the recipients it stands for.

What an APPEND's answer means (RFC 3501 6.3.11, response codes of RFC 4315 and RFC 5530):
OK is delivered (with the new UID when the server says it); NO [TRYCREATE] creates the mailbox once, when
allowed; [OVERQUOTA], [INUSE], [LIMIT], [UNAVAILABLE] and [SERVERBUG] are worth another try later; a
message the server will never take ([TOOBIG], [NOPERM], [CANNOT], BAD) fails for good; any other NO is
taken as temporary, as RFC 3501 gives NO no permanence.
"""

from __future__ import annotations

from aioimaplib.aioimaplib import Response

from spoolerd.transport import Outcome

from .wire import last_line, parse_appenduid, response_code

__all__ = ["append_outcome"]

# response code -> the SMTP-style reply code and enhanced status the spooler and its reports speak
_TEMPORARY = {
    "OVERQUOTA": (452, "4.2.2"),
    "INUSE": (450, "4.2.0"),
    "LIMIT": (452, "4.3.1"),
    "UNAVAILABLE": (451, "4.4.2"),  # the server as a whole: the spooler holds it as down for a while
    "SERVERBUG": (451, "4.3.0"),
    "EXPUNGEISSUED": (450, "4.2.0"),
}
_PERMANENT = {
    "TOOBIG": (552, "5.3.4"),
    "NOPERM": (550, "5.7.1"),
    "CANNOT": (550, "5.2.0"),
    "TRYCREATE": (550, "5.2.0"),  # only when creating the mailbox is not allowed or did not help
    "ALREADYEXISTS": (550, "5.2.0"),
    "NONEXISTENT": (550, "5.1.1"),
    "PARSE": (554, "5.6.0"),
}


def append_outcome(response: Response, mailbox: str, peer: str) -> Outcome:
    """The outcome of one APPEND, from its tagged response."""
    text = last_line(response)
    code = response_code(text)
    if response.result == "OK":
        uid = parse_appenduid(text)
        where = f"appended to {mailbox} on {peer}" + (f" as UID {uid[1]}" if uid else "")
        return Outcome.delivered(where)
    what = f"{peer} refused APPEND to {mailbox}: {response.result}" + (
        f" [{code.name}] {code.text}" if code.name else f" {code.text}"
    )
    if response.result == "BAD":
        return Outcome.failed(what, 554, "5.5.2")
    if code.name in _PERMANENT:
        return Outcome.failed(what, *_PERMANENT[code.name])
    reply, status = _TEMPORARY.get(code.name, (450, "4.2.0"))
    return Outcome.deferred(what, reply, status)
