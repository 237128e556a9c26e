"""Addresses as a null client completes them, with no I/O: parsing, the default domain, aliases, dedupe.

Recipient arguments and To/Cc/Bcc fields are read like Postfix reads them: ``Name <a@b>``, ``<a@b>``,
``a@b, c@d``, ``"quoted local"@b``, ``a@b (comment)``, groups (``team: a@b, c@d;``), source routes
(``<@relay:a@b>``, the route dropped). A bare name (``root``) gets the default domain; the alias map
(``[aliases]``, like /etc/aliases) is applied recursively, a loop ending at the address it came back to;
recipients are deduplicated with the domain compared case-insensitively. What cannot be mail (garbage,
an empty local part or domain, control characters, unbalanced quotes or brackets) raises ``BadAddress``
with the reason. Standard library only: ``spoolerd-sendmail`` imports it on its fast path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .errors import BadAddress

__all__ = [
    "AddressPolicy",
    "Mailbox",
    "complete",
    "expand_aliases",
    "format_mailbox",
    "parse_address",
    "parse_address_list",
    "quote_local",
    "unfold",
]

MAX_ADDRESS = 254  # RFC 5321's path limit, less the brackets
MAX_LOCAL = 64
# atext (RFC 5322 3.2.3) plus the dot of a dot-atom; anything non-ASCII is allowed (RFC 6531)
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-\x80-\ud7ff\ue000-\U0010ffff]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")  # tab is whitespace; no lone surrogates
_LABEL = re.compile(r"[\w]([\w-]*\w)?")  # letters (any script), digits, _ and inner hyphens
_FOLD = re.compile(r"\r?\n(?=[ \t])")


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One parsed address: ``address`` is ``local@domain``, or a bare ``local`` before completion, or ""
    for ``<>`` (the null sender)."""

    address: str
    display: str = ""

    @property
    def bare(self) -> bool:
        return bool(self.address) and "@" not in _unquoted(self.address)


@dataclass(slots=True)
class _Token:
    kind: str  # "atom", "quoted", "literal", "comment", or the special character itself
    text: str
    space_before: bool


def _quoted(text: str, i: int, close: str) -> tuple[str, int]:
    """The inside of a quoted string (``close`` '"') or a comment (')', nested) that opens at ``i``, with
    backslash escapes resolved, and where it ends."""
    depth, j, buf = 1, i + 1, list[str]()
    while j < len(text):
        ch = text[j]
        if ch == "\\" and j + 1 < len(text):
            j += 1
            ch = text[j]
        elif ch == close:
            depth -= 1
            if not depth:
                return "".join(buf), j + 1
        elif ch == "(" and close == ")":
            depth += 1
        buf.append(ch)
        j += 1
    raise BadAddress(f"{text!r}: unbalanced {text[i]}")


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    i, space = 0, False
    while i < len(text):
        ch = text[i]
        if ch in " \t":
            i, space = i + 1, True
            continue
        if ch == '"':
            inner, i = _quoted(text, i, '"')
            out.append(_Token("quoted", inner, space))
        elif ch == "(":
            inner, i = _quoted(text, i, ")")
            out.append(_Token("comment", " ".join(inner.split()), space))
        elif ch == "[":
            j = text.find("]", i)
            if j < 0:
                raise BadAddress(f"{text!r}: unbalanced [")
            out.append(_Token("literal", text[i : j + 1], space))
            i = j + 1
        elif ch in "<>,:;@":
            out.append(_Token(ch, ch, space))
            i += 1
        else:
            match = _ATOM.match(text, i)
            if match is None:
                raise BadAddress(f"{text!r}: unexpected {ch!r}")
            out.append(_Token("atom", match.group(), space))
            i = match.end()
        space = False
    return out


def _unquoted(address: str) -> str:
    """The address with its quoted local part blanked out, to find the @ that separates it."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', address)


def quote_local(local: str) -> str:
    """A local part as it is written in an address: a dot-atom as it is, anything else quoted."""
    if _ATOM.fullmatch(local) and not local.startswith(".") and not local.endswith(".") and ".." not in local:
        return local
    return '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _addr_spec(tokens: Sequence[_Token], source: str) -> str:
    """``local@domain`` or a bare ``local`` from the tokens of one address (comments removed)."""
    if not tokens:
        return ""
    ats = [i for i, t in enumerate(tokens) if t.kind == "@"]
    if len(ats) > 1:
        raise BadAddress(f"{source!r}: more than one @ in an address")
    local_tokens = tokens[: ats[0]] if ats else tokens
    domain_tokens = tokens[ats[0] + 1 :] if ats else []
    if any(t.kind not in ("atom", "quoted") for t in local_tokens):
        raise BadAddress(f"{source!r}: not an address")
    if any(t.space_before for t in local_tokens[1:]) or any(
        t.kind == "atom" and not t.text.isprintable() for t in local_tokens
    ):
        raise BadAddress(f"{source!r}: a space in an address (put a name before <address>)")
    if not local_tokens or not "".join(t.text for t in local_tokens):
        raise BadAddress(f"{source!r}: the local part (before @) is empty")
    local = "".join(t.text for t in local_tokens)
    if len(local.encode()) > MAX_LOCAL:
        raise BadAddress(f"{source!r}: the local part is longer than {MAX_LOCAL} bytes")
    if any(t.kind == "quoted" for t in local_tokens):
        local = quote_local(local)
    if not ats:
        return local
    if not domain_tokens:
        raise BadAddress(f"{source!r}: the domain (after @) is empty")
    if len(domain_tokens) != 1 or domain_tokens[0].space_before:
        raise BadAddress(f"{source!r}: not a domain after @")
    domain = domain_tokens[0].text
    if domain_tokens[0].kind == "atom":
        if not all(_LABEL.fullmatch(label) for label in domain.split(".")):
            raise BadAddress(f"{source!r}: {domain!r} is not a domain name")
    elif domain_tokens[0].kind != "literal":
        raise BadAddress(f"{source!r}: not a domain after @")
    address = f"{local}@{domain}"
    if len(address.encode()) > MAX_ADDRESS:
        raise BadAddress(f"{source!r}: longer than {MAX_ADDRESS} bytes")
    return address


def _phrase(tokens: Sequence[_Token]) -> str:
    return " ".join(t.text for t in tokens if t.kind in ("atom", "quoted", "comment", "literal"))


def _mailbox(tokens: list[_Token], source: str) -> Mailbox | None:
    comments = [t.text for t in tokens if t.kind == "comment" and t.text]
    words = [t for t in tokens if t.kind != "comment"]
    if not words:
        return None
    opens = [i for i, t in enumerate(words) if t.kind == "<"]
    if not opens:
        if any(t.kind in (">", ":", ";") for t in words):
            raise BadAddress(f"{source!r}: not an address")
        return Mailbox(_addr_spec(words, source), " ".join(comments))
    start = opens[0]
    end = next((i for i, t in enumerate(words) if t.kind == ">"), None)
    if end is None:
        raise BadAddress(f"{source!r}: < without >")
    if len(opens) > 1 or end < start or end != len(words) - 1:
        raise BadAddress(f"{source!r}: text after <address> or nested <>")
    if any(t.kind in ("@", ":", ";") for t in words[:start]):
        raise BadAddress(f"{source!r}: an unquoted @ or : in the name before <address>")
    inner = words[start + 1 : end]
    colons = [i for i, t in enumerate(inner) if t.kind == ":"]
    if colons:  # a source route, <@a,@b:user@c>: obsolete, and dropped as Postfix does
        route, inner = inner[: colons[-1]], inner[colons[-1] + 1 :]
        if not route or route[0].kind != "@":
            raise BadAddress(f"{source!r}: not an address")
    if any(t.kind in (",", ";", "<") for t in inner):
        raise BadAddress(f"{source!r}: not an address")
    display = _phrase(words[:start]) or " ".join(comments)
    return Mailbox(_addr_spec(inner, source), display)


def unfold(text: str) -> str:
    """A header field's value with its folding removed (RFC 5322 §2.2.3: a line break before a blank)."""
    return _FOLD.sub("", text)


def _check_text(text: str) -> str:
    text = unfold(text)
    bad = _CONTROL.search(text)
    if bad is not None:
        raise BadAddress(f"{text!r}: contains {bad.group()!r} (a control character or a byte not UTF-8)")
    return text


def parse_address_list(text: str) -> list[Mailbox]:
    """Every mailbox in an address list (a recipient argument or a To/Cc/Bcc field, unfolded here);
    empty entries and groups' names are skipped. Raises ``BadAddress`` for anything that is not mail."""
    text = _check_text(text)
    out: list[Mailbox] = []
    item: list[_Token] = []
    angle = in_group = False

    def finish() -> None:
        mailbox = _mailbox(item, text)
        if mailbox is not None:
            out.append(mailbox)
        item.clear()

    for token in _tokens(text):
        if token.kind == "<":
            angle = True
        elif token.kind == ">":
            angle = False
        elif not angle and token.kind == ",":
            finish()
            continue
        elif not angle and token.kind == ":" and not in_group and not any(t.kind in ("<", "@") for t in item):
            item.clear()  # the group's name
            in_group = True
            continue
        elif not angle and token.kind == ";" and in_group:
            finish()
            in_group = False
            continue
        item.append(token)
    if in_group:
        raise BadAddress(f"{text!r}: a group without its closing ;")
    finish()
    return out


def parse_address(text: str) -> Mailbox:
    """Exactly one address (an envelope sender, an alias key); ``<>`` and "" are the null address."""
    if text.strip(" \t") in ("", "<>"):
        _check_text(text)
        return Mailbox("")
    found = parse_address_list(text)
    if len(found) != 1:
        raise BadAddress(f"{text!r}: expected one address, found {len(found)}")
    return found[0]


def format_mailbox(mailbox: Mailbox) -> str:
    """``"Display" <address>``, or the address alone: the inverse of parsing one mailbox."""
    if not mailbox.display:
        return mailbox.address
    words = mailbox.display.split()
    if any(w.startswith("=?") and w.endswith("?=") for w in words) and all(_ATOM.fullmatch(w) for w in words):
        return f"{mailbox.display} <{mailbox.address}>"  # RFC 2047 encoded words are not decoded in quotes
    name = mailbox.display.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{name}" <{mailbox.address}>'


def complete(address: str, domain: str) -> str:
    """A bare name with the default domain appended (``root`` -> ``root@example.org``)."""
    return f"{address}@{domain}" if address and "@" not in _unquoted(address) else address


def _key(address: str) -> str:
    """The identity of an address for dedupe: the domain compared case-insensitively, the local part as
    written (RFC 5321 leaves its case to the receiving host)."""
    local, _, domain = _unquoted(address).rpartition("@")
    return f"{address[: len(address) - len(domain) - 1]}@{domain.casefold()}" if local else address


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """How addresses are completed: the default domain, the domains a bare alias key applies to, the
    alias map (keys are bare names or full addresses; values lists of addresses, bare names allowed)."""

    default_domain: str
    local_domains: frozenset[str] = frozenset()
    aliases: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # distribution lists (MAPI's personal distribution lists, expanded at submit: ExpandRecips): full
    # addresses; unlike an alias, a list is never a recipient itself, even when it names itself
    lists: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        table: dict[str, tuple[str, ...]] = {}
        for key, targets in self.aliases.items():
            table[key.casefold()] = tuple(targets)
        object.__setattr__(self, "aliases", table)
        lists = {key.casefold(): tuple(members) for key, members in self.lists.items()}
        object.__setattr__(self, "lists", lists)
        domains = {d.casefold() for d in self.local_domains} | {self.default_domain.casefold()}
        object.__setattr__(self, "local_domains", frozenset(domains))

    def alias_of(self, address: str) -> Sequence[str] | None:
        """The alias entry for a complete address: by the full address, else by the local part when the
        domain is a local one."""
        key = address.casefold()
        found = self.aliases.get(key)
        if found is None:
            local, _, domain = key.rpartition("@")
            if local and domain in self.local_domains:
                found = self.aliases.get(local)
        return found


def expand_aliases(
    policy: AddressPolicy, mailboxes: Iterable[tuple[Mailbox, str]]
) -> list[tuple[Mailbox, str]]:
    """Complete each (mailbox, kind), expand distribution lists and apply the alias map recursively,
    and drop duplicates (the first wins, with its display name). An address met again while its own
    alias is being expanded is taken as it is, as Postfix does for ``root: root, admin``: loops end
    instead of looping; a list is never a recipient (seed 004's ExpandRecips). Each alias and list is
    expanded once, so a map of shared lists costs its size, not the number of paths through it."""
    out: list[tuple[Mailbox, str]] = []
    seen: set[str] = set()
    expanded: set[str] = set()

    def add(mailbox: Mailbox, kind: str, expanding: frozenset[str]) -> None:
        address = complete(mailbox.address, policy.default_domain)
        key = _key(address).casefold()
        members = policy.lists.get(key)
        if members is not None:  # each list once, wherever it is met; its members, never itself
            if key not in expanded:
                expanded.add(key)
                for member in members:
                    add(parse_address(member), kind, expanding)
            return
        targets = policy.alias_of(address)
        if targets is not None and key not in expanding:
            if key in expanded:
                return  # what it expands to is there already
            expanded.add(key)
            for target in targets:
                add(Mailbox(target), kind, expanding | {key})
            return
        if _key(address) not in seen:
            seen.add(_key(address))
            out.append((Mailbox(address, mailbox.display), kind))

    for mailbox, kind in mailboxes:
        if not mailbox.address:
            raise BadAddress("<>: the null address cannot be a recipient")
        add(mailbox, kind, frozenset())
    return out
