"""Reading a subscriber CSV: find the columns, then check and clean each row on its own.

The header row names the columns. `email` is required; `name` (or first and last name),
`topics` (names separated by ';'), `cadence` and `status` are optional, other columns are
ignored. Common spellings are recognised ("E-mail Address", "First Name", "Interests",
"Frequency"); an explicit mapping (field → header) wins. A status saying the person left
(as in our own export, or "cleaned" from other tools) marks the row as one to leave alone.
No I/O here: rows come in as text.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from subscribers import service
from subscribers.service import FREQUENCIES, MAX_NAME, SubscriberError

FIELDS = ("email", "name", "topics", "cadence", "status")
# Header spellings recognised without an explicit mapping, compared lower-case and with
# everything but letters and digits removed ("E-mail Address" → "emailaddress").
_SPELLINGS = {
    "email": ("email", "emailaddress", "mail", "mailaddress"),
    "name": ("name", "fullname", "displayname"),
    "topics": ("topics", "topic", "interests", "tags"),
    "cadence": ("cadence", "frequency"),
    "status": ("status",),
}
_FIRST_NAME = ("firstname", "givenname", "forename")
_LAST_NAME = ("lastname", "surname", "familyname")
_FIELD_ALIASES = {"frequency": "cadence"}
# Status cells that say the person must not be mailed: (what the import counts them as).
_WITHDRAWN = {
    "unsubscribed": "unsubscribed",
    "bounced": "suppressed",
    "complained": "suppressed",
    "suppressed": "suppressed",
    "cleaned": "suppressed",
}
TOPIC_SEPARATOR = ";"
# Line breaks and other control characters are never part of an address, name or topic; in
# a name they would reach email headers. Lone surrogates stand for bytes that were not UTF-8
# (the file is read with errors="surrogateescape" so one bad row does not stop the rest).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\udc80-\udcff]")
# The apostrophe CSV export puts before a would-be formula; dropped so an export re-imports.
_NEUTRALISED = re.compile("^'(?=[=+\\-@\t\r])")

# A dot-atom of common characters @ a dotted ASCII host name: the shape `normalise_address`
# can take a short cut for. The limits are email-validator's (RFC 5321).
_PLAIN_ADDRESS = re.compile(
    r"(?P<local>[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*)@(?P<domain>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
)
_MAX_LOCAL = 64
_MAX_ADDRESS = 254
# A row of names and addresses is a few hundred characters. A longer line is not one, and read
# whole it would sit in memory whole (a file without line breaks could be gigabytes).
MAX_LINE = 1_000_000
# What stands in for such a line: the CSV reader sees one odd field and goes on to the next.
_OVERLONG = "\x00overlong line\x00\n"

Record = tuple[int, list[str] | csv.Error]


class RowRejected(SubscriberError):
    """A row left out; the message ("kind: detail") is the reason shown to the operator."""


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """Where each field sits in a row; `name` may be first and last name, joined."""

    email: int
    name: tuple[int, ...]
    topics: int | None
    cadence: int | None
    status: int | None
    titles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One valid row. None for name, topics or cadence: the file does not say, keep theirs.

    `withdrawn` is "unsubscribed" or "suppressed" when the file says the person left.
    """

    line: int
    email: str
    name: str | None
    topics: tuple[str, ...] | None
    cadence: str | None
    withdrawn: str | None = None


def parse_column_option(option: str) -> tuple[str, str]:
    """'email=E-Mail' → ('email', 'E-Mail'); SubscriberError for an unknown field."""
    chosen, separator, header = option.partition("=")
    target = _FIELD_ALIASES.get(chosen.strip().lower(), chosen.strip().lower())
    if not separator or not header.strip():
        raise SubscriberError(f"--column {option!r}: write FIELD=HEADER, e.g. email=E-Mail")
    if target not in FIELDS:
        raise SubscriberError(f"--column {option!r}: unknown field (choose {', '.join(FIELDS)})")
    return target, header.strip()


def numbered_records(source: str | Iterable[str]) -> Iterator[Record]:
    """(first line number, fields or the CSV error) per record; quoted fields may span lines.

    `source` is the whole text, or its lines as a file opened with newline="" gives them.
    """
    lines = (
        io.StringIO(source.removeprefix("\ufeff"), newline="")
        if isinstance(source, str)
        else source
    )
    reader = csv.reader(_bounded_lines(lines))
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield start, error
            continue
        if fields == [_OVERLONG.strip("\n")]:
            yield start, csv.Error(f"line longer than {MAX_LINE} characters")
            continue
        yield start, fields


def _bounded_lines(lines: Iterable[str]) -> Iterator[str]:
    """The lines of a file read at most MAX_LINE characters at a time; each longer one is
    read to its end and dropped, _OVERLONG in its place."""
    readline = getattr(lines, "readline", None)
    if readline is None:  # a list of lines is already in memory
        yield from lines
        return
    while line := readline(MAX_LINE):
        if len(line) < MAX_LINE or line.endswith(("\n", "\r")):
            yield line
            continue
        while (rest := readline(MAX_LINE)) and not rest.endswith(("\n", "\r")):
            pass
        yield _OVERLONG


def map_columns(header: Sequence[str], chosen: Mapping[str, str]) -> ColumnMap:
    """Find each field's column: `chosen` (field → header, any case) first, else by spelling."""
    titles = tuple(title.removeprefix("\ufeff").strip() for title in header)
    found = ", ".join(repr(title) for title in titles) or "nothing"
    keys = [_header_key(title) for title in titles]
    place: dict[str, int | None] = {}
    for name in FIELDS:
        if name in chosen:
            wanted = chosen[name].strip().lower()
            place[name] = next((i for i, t in enumerate(titles) if t.lower() == wanted), None)
            if place[name] is None:
                raise SubscriberError(
                    f"--column {name}={chosen[name]}: no such column (found: {found})"
                )
            continue
        candidates = [i for i, key in enumerate(keys) if key in _SPELLINGS[name]]
        if name == "email" and len(candidates) > 1:
            both = " and ".join(repr(titles[i]) for i in candidates[:2])
            raise SubscriberError(
                f"two email columns, {both}: choose one with --column email=HEADER"
            )
        place[name] = candidates[0] if candidates else None
    email = place["email"]
    if email is None:
        raise SubscriberError(
            f"no email column (found: {found}); name it with --column email=HEADER"
        )
    return ColumnMap(
        email=email,
        name=_name_columns(place["name"], keys),
        topics=place["topics"],
        cadence=place["cadence"],
        status=place["status"],
        titles=titles,
    )


def _name_columns(name: int | None, keys: Sequence[str]) -> tuple[int, ...]:
    """The name column, else first and last name columns (either may be missing)."""
    if name is not None:
        return (name,)
    first = next((i for i, key in enumerate(keys) if key in _FIRST_NAME), None)
    last = next((i for i, key in enumerate(keys) if key in _LAST_NAME), None)
    return tuple(i for i in (first, last) if i is not None)


def _header_key(title: str) -> str:
    return "".join(character for character in title.lower() if character.isalnum())


def read_row(
    record: Record, columns: ColumnMap, known_topics: Mapping[str, str] | None
) -> ImportRow | None:
    """The record checked and cleaned; None for a blank row; RowRejected says what is wrong.

    `known_topics` maps lower-case topic names to their spelling; None accepts any topic.
    """
    line, fields = record
    if isinstance(fields, csv.Error):
        raise RowRejected(f"unreadable CSV: {fields}")
    if not any(cell.strip() for cell in fields):
        return None
    width = len(columns.titles)
    if len(fields) > width and any(cell.strip() for cell in fields[width:]):
        raise RowRejected(f"too many fields: {len(fields)}, but the header has {width}")

    def cell(index: int) -> str:
        value = _NEUTRALISED.sub("", fields[index].strip()) if index < len(fields) else ""
        _check_characters(value, columns.titles[index])
        return value

    raw_email = cell(columns.email)
    if not raw_email:
        raise RowRejected("bad address: the email cell is empty")
    try:
        email = normalise_address(raw_email)
    except service.InvalidEmail as error:
        raise RowRejected(f"bad address: {error}") from error
    name = None
    if columns.name:
        name = " ".join(" ".join(cell(i) for i in columns.name).split())
        if len(name) > MAX_NAME:
            raise RowRejected(f"name too long: {len(name)} characters (at most {MAX_NAME})")
    topics = None if columns.topics is None else _topics(cell(columns.topics), known_topics)
    cadence = None if columns.cadence is None else _cadence(cell(columns.cadence))
    withdrawn = None if columns.status is None else _WITHDRAWN.get(cell(columns.status).lower())
    return ImportRow(line, email, name, topics, cadence, withdrawn)


def normalise_address(raw: str) -> str:
    """`service.normalise_email`, sped up for the plain addresses most lists are made of.

    Checking the domain is most of the work, and a list has few distinct domains: a plain
    ASCII address is split, its domain checked once (by the service) and remembered. Anything
    else, and any domain the service would rewrite, takes the service's full path.
    """
    plain = _PLAIN_ADDRESS.fullmatch(raw)
    if plain is None or len(plain["local"]) > _MAX_LOCAL or len(raw) > _MAX_ADDRESS:
        return service.normalise_email(raw)
    domain = plain["domain"].lower()
    if not _is_plain_domain(domain):
        return service.normalise_email(raw)  # for its own error message
    return f"{plain['local'].lower()}@{domain}"


@functools.lru_cache(maxsize=4096)
def _is_plain_domain(domain: str) -> bool:
    """Whether the service accepts the domain and keeps it as written (lower-case ASCII)."""
    try:
        return service.normalise_email(f"x@{domain}") == f"x@{domain}"
    except service.InvalidEmail:
        return False


def _check_characters(value: str, title: str) -> None:
    unsafe = _UNSAFE.search(value)
    if unsafe is None:
        return
    character = unsafe.group()
    if character in "\r\n":
        raise RowRejected(f"line break: CR/LF in column {title!r}")
    if "\udc80" <= character <= "\udcff":
        raise RowRejected(f"not UTF-8: undecodable bytes in column {title!r}")
    raise RowRejected(f"control character: U+{ord(character):04X} in column {title!r}")


def _topics(text: str, known: Mapping[str, str] | None) -> tuple[str, ...]:
    """Topic names from a cell (empty: every topic); ',' separates them too when no known
    topic name contains one, as spreadsheets of interests often do."""
    separators = TOPIC_SEPARATOR
    if known is not None and not any("," in name for name in known):
        separators += ","
    names = service.clean_topics(re.split(f"[{re.escape(separators)}]", text))
    if known is None:
        return names
    for name in names:
        if name.lower() not in known:
            choices = ", ".join(sorted(known.values())) or "none"
            raise RowRejected(f"unknown topic: {name!r} (known: {choices})")
    return tuple(dict.fromkeys(known[name.lower()] for name in names))


def _cadence(text: str) -> str | None:
    """A cadence from a cell; None for an empty one (keep theirs, or the default)."""
    if not text:
        return None
    if text.lower() not in FREQUENCIES:
        raise RowRejected(f"unknown cadence: {text!r} (choose {', '.join(FREQUENCIES)})")
    return text.lower()
