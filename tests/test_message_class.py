"""Classes an incoming message's MIME structure gives it (class_from_content)."""

from __future__ import annotations

import pytest

from spoolerd.message_class import class_from_content


def report(actions: list[str]) -> bytes:
    fields = "".join(
        f"Final-Recipient: rfc822; r{i}@x\r\nAction: {a}\r\nStatus: 5.0.0\r\n\r\n"
        for i, a in enumerate(actions)
    )
    return (
        b"From: MAILER-DAEMON@x\r\nSubject: report\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee below\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n"
        + fields.encode()
        + b"--b--\r\n"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"Subject: plain\r\n\r\nbody\r\n", "IPM.Note"),
        (report(["delivered", "failed"]), "REPORT.IPM.Note.NDR"),
        (report(["delivered", "relayed"]), "REPORT.IPM.Note.DR"),
        (report(["delayed"]), "REPORT.IPM.Note.DELAYED"),
        (
            b'Content-Type: multipart/report; report-type="disposition-notification";\r\n'
            b" boundary=x\r\n\r\n--x--\r\n",
            "REPORT.IPM.Note.IPNRN",
        ),
        (
            b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nMIIB\r\n",
            "IPM.Note.SMIME",
        ),
        (
            b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";\r\n'
            b" boundary=s\r\n\r\n--s--\r\n",
            "IPM.Note.SMIME.MultipartSigned",
        ),
        (
            b"Content-Type: text/calendar; method=REQUEST\r\n\r\nBEGIN:VCALENDAR\r\n",
            "IPM.Schedule.Meeting.Request",
        ),
        (
            b"Content-Type: text/calendar; method=CANCEL\r\n\r\nBEGIN:VCALENDAR\r\n",
            "IPM.Schedule.Meeting.Canceled",
        ),
        (b"Content-Type: text/calendar; method=PUBLISH\r\n\r\nBEGIN:VCALENDAR\r\n", "IPM.Note"),
        (b"Content-Type: text/html\r\n\r\n<p>x</p>\r\n", "IPM.Note"),
    ],
)
def test_class_from_content(content: bytes, expected: str) -> None:
    assert class_from_content(content) == expected


def test_the_default_is_the_callers() -> None:
    assert class_from_content(b"Subject: x\r\n\r\n", "IPM.Note.Work") == "IPM.Note.Work"
    assert class_from_content(report(["failed"]), "IPM.Note.Work") == "REPORT.IPM.Note.NDR"
