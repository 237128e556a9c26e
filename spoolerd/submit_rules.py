"""The rules every submission path applies to the envelope before ``store.submit`` (DESIGN §8): the
control socket's ``submit`` and ``spoolerd-sendmail``'s direct store path call ``complete_submission``,
so both make the same envelope from the same request.

Bare names get the default domain (in the envelope and in the message's address fields), the alias map
is applied, recipients are deduplicated, a local user sends as ``user@sender_domain`` unless allowed to
choose another sender, and a message without a From field gets one (with the header section a
body-only message lacks). Anything that cannot be mail is
refused with ``BadAddress``, before anything is stored.
"""

from __future__ import annotations

import functools
import pwd
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .addressing import (
    AddressPolicy,
    Mailbox,
    complete,
    expand_aliases,
    format_mailbox,
    parse_address,
    parse_address_list,
    quote_local,
)
from .config import Config
from .dsn_params import DsnRequest, RecipientDsn
from .envelope import (
    has_field,
    header_recipients,
    header_sender,
    header_subject,
    map_fields,
    with_field,
    without_bcc,
)
from .errors import BadAddress, NoRecipients
from .message import NewRecipient, RecipientKind, check_wire_text

__all__ = [
    "Envelope",
    "SubmissionRequest",
    "address_policy",
    "bounce_copy_recipients",
    "complete_submission",
    "default_domain",
    "local_sender",
    "trusted",
]


@functools.cache
def _fqdn() -> str:
    return socket.getfqdn() or socket.gethostname() or "localhost"


def _owned_domains(config: Config) -> list[str]:
    """The domains (``@domain`` entries) the stores own, default store first."""
    default = config.spooler.default_store
    order = [default, *(name for name in config.stores if name != default)]
    sections = [config.stores[name] for name in order if name in config.stores]
    return [a[1:] for section in sections for a in section.addresses if a.startswith("@")]


def default_domain(config: Config) -> str:
    """``[addresses] default_domain``; unset, the domain the built-in local store owns when the stores
    are the embedded default (``localhost``: mail to ``root`` stays on the machine), else this host's
    fully qualified name."""
    if config.addresses.default_domain:
        return config.addresses.default_domain
    owned = _owned_domains(config)
    if config.stores == Config.model_fields["stores"].get_default(call_default_factory=True) and owned:
        return owned[0]
    return _fqdn()


def address_policy(config: Config) -> AddressPolicy:
    domain = default_domain(config)
    local = {*_owned_domains(config), config.addresses.sender_domain or domain}
    return AddressPolicy(domain, frozenset(local), config.aliases, config.lists)


def bounce_copy_recipients(config: Config) -> list[str]:
    """Who gets a copy of every NDR: ``[addresses] bounce_copy_to``, completed and aliased. Called when
    the daemon is built or reloaded, so resolving this host's name (a DNS lookup, perhaps slow) happens
    then, not in the event loop during the first submit."""
    policy = address_policy(config)
    address = config.addresses.bounce_copy_to
    if not address:
        return []
    return [m.address for m, _kind in expand_aliases(policy, [(Mailbox(address), "to")])]


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)  # a uid with no passwd entry (a container's): still someone's address


def local_sender(config: Config, uid: int) -> str:
    """The address a local user sends as: ``user@sender_domain`` (masquerading)."""
    domain = config.addresses.sender_domain or default_domain(config)
    return f"{quote_local(_user_name(uid))}@{domain}"


def trusted(config: Config, uid: int, daemon_uid: int) -> bool:
    """Whether ``uid`` may choose its envelope sender (``[addresses] sender_override``)."""
    return config.addresses.sender_override == "anyone" or uid in (0, daemon_uid)


@dataclass(frozen=True, slots=True)
class SubmissionRequest:
    """What a submitter asked for, before the rules."""

    content: bytes
    sender: str | None  # None: the message's Sender/From, else the caller's own address
    recipients: Sequence[str] | None  # address lists ("a@b, Name <c@d>"); None: To, Cc and Bcc
    uid: int  # who submits: the control socket's peer, or sendmail's own user
    trusted: bool  # may choose another sender than its own (see ``trusted``)
    full_name: str | None = None  # the name in an added From field (sendmail -F)
    dsn: DsnRequest = field(default_factory=DsnRequest)  # RFC 3461 parameters (sendmail -N/-R/-V, -bs)


@dataclass(frozen=True, slots=True)
class Envelope:
    content: bytes
    sender: str
    subject: str
    recipients: list[NewRecipient]  # with their NOTIFY and ORCPT
    dsn: DsnRequest = field(default_factory=DsnRequest)  # what was asked (RET and ENVID go in the draft)


def _sender(config: Config, request: SubmissionRequest, own: str) -> str:
    if not request.trusted:
        return own
    if request.sender is not None:
        return complete(parse_address(request.sender).address, default_domain(config))
    try:
        found = parse_address(header_sender(request.content)).address
    except BadAddress:
        found = ""  # a From field that is not mail does not make the envelope; the caller's address does
    return complete(found, default_domain(config)) or own


ADDRESS_FIELDS = frozenset({b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc"})


def _completed_field(value: str, domain: str) -> str | None:
    """An address field with its bare names completed (``To: root`` as cron writes it), or None to keep
    it as it is (nothing bare in it, or not parseable: the header is the writer's, the envelope ours)."""
    try:
        mailboxes = parse_address_list(value)
    except BadAddress:
        return None
    if not any(m.bare for m in mailboxes):
        return None
    return ", ".join(format_mailbox(Mailbox(complete(m.address, domain), m.display)) for m in mailboxes)


def _with_dsn(
    policy: AddressPolicy, recipients: list[NewRecipient], request: SubmissionRequest
) -> list[NewRecipient]:
    """Each recipient with the NOTIFY and ORCPT of the recipient it was given as (an alias or a list
    passes them on; the first given wins), else the message-wide NOTIFY (sendmail -N)."""
    dsn = request.dsn
    if dsn.notify is None and not dsn.recipients:
        return recipients
    given: dict[str, RecipientDsn] = {}
    for text in request.recipients or ():
        if text in dsn.recipients:
            found = [(m, "to") for m in parse_address_list(text)]
            for mailbox, _kind in expand_aliases(policy, found):
                given.setdefault(mailbox.address, dsn.recipients[text])
    default = RecipientDsn(dsn.notify)
    return [
        replace(r, notify=params.notify, orcpt=params.orcpt)
        for r in recipients
        for params in [given.get(r.address, default)]
    ]


def complete_submission(config: Config, request: SubmissionRequest) -> Envelope:
    """The envelope and content ``store.submit`` gets, by the rules above (``BadAddress``,
    ``NoRecipients`` when none is left)."""
    check_wire_text("full_name", request.full_name or "")  # it goes into a header field
    policy = address_policy(config)
    content = request.content
    own = local_sender(config, request.uid)
    sender = _sender(config, request, own)
    found: list[tuple[Mailbox, str]]
    if request.recipients is None:
        found = [(Mailbox(a, d), k) for d, a, k in header_recipients(content)]
        content = without_bcc(content)
    else:
        found = [(m, "to") for text in request.recipients for m in parse_address_list(text)]
    recipients = [
        NewRecipient(m.address, m.display, RecipientKind(k)) for m, k in expand_aliases(policy, found)
    ]
    if not recipients:
        raise NoRecipients("no recipients given and none in To, Cc or Bcc")
    recipients = _with_dsn(policy, recipients, request)
    content = map_fields(
        content, ADDRESS_FIELDS, lambda value: _completed_field(value, policy.default_domain)
    )
    if not has_field(content, b"from"):  # a message needs a From: its sender's (the caller's for <>)
        name = " ".join((request.full_name or "").split())
        content = with_field(content, b"From: " + format_mailbox(Mailbox(sender or own, name)).encode())
    return Envelope(content, sender, header_subject(content), recipients, request.dsn)
