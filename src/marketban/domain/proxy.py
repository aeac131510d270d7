"""R8, trading under another's name (Art. 6 借他人名义): what a terminal's uses reveal.

Pure and event-time like the rest of the domain. An order's account task knows who owns and
controls the account and whose trading measures apply on the order's session; it describes the
order's use of its terminal as a :class:`TerminalUse`. Everything one terminal saw is judged in
one place (its :class:`TerminalState`), whichever accounts the uses came from, so a nominee's
account and the banned person's own account meet there. A pair raises a suspicion; the account
it names makes sure it is emitted once (``Engine``), since two terminals can raise the same one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Final

import msgspec
from msgspec import Struct, field

from marketban.domain.calendars import MarketCalendar
from marketban.domain.models import Violation
from marketban.domain.wire import DecodeError

_HEX: Final = frozenset("0123456789abcdef")
_SEPARATORS: Final = frozenset(":-.")
_MAC_DIGITS: Final = 12
#: IPs a terminal's note keeps per account and session: corroboration, not identity.
_IPS_KEPT: Final = 8


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """R8's two parameters (``MARKETBAN_PROXY_WINDOW``, ``MARKETBAN_PROXY_SHARED_LIMIT``)."""

    window: int = 20
    shared_limit: int = 5


_COLONS: Final = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
_PLACEHOLDERS: Final = frozenset({"00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"})


@lru_cache(maxsize=1 << 16)  # one per order; a market has far fewer devices active at once
def terminal_id(mac: str | None) -> str | None:
    """The identity of the terminal with MAC ``mac``, or None when it identifies nothing.

    Case-insensitive; the usual notations of one MAC (``00:1B:…``, ``00-1b-…``, ``001b.44…``)
    are one terminal. Missing, empty and placeholder MACs (all zeros, all ``ff``) are nobody's.
    """
    if mac is None:
        return None
    text = mac.lower()
    if _COLONS.fullmatch(text):  # the usual notation: nothing to rewrite
        return None if text in _PLACEHOLDERS else text
    return _other_notation(text.strip())


@lru_cache(maxsize=4096)
def _other_notation(text: str) -> str | None:
    digits = "".join(c for c in text if c in _HEX)
    if not digits or set(digits) <= {"0"} or set(digits) <= {"f"}:
        return None
    if len(digits) == _MAC_DIGITS and all(c in _HEX or c in _SEPARATORS for c in text):
        return ":".join(digits[i : i + 2] for i in range(0, _MAC_DIGITS, 2))
    return text


def identity_of(account_id: str, persons: list[str]) -> list[str]:
    """Who a use counts as for the shared-equipment limit: its persons, or the account itself."""
    return persons or [f"account:{account_id}"]


# msgspec structs, not pydantic models: one of each is built, written and read per order
# (about 1 us each where a pydantic model cost 5-10). Empty fields are left out of their JSON
# (most accounts are linked to nobody): a fifth fewer bytes to write, send and read.


class TerminalUse(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One order's use of a terminal, as its account's task saw it (key: the terminal)."""

    terminal: str
    ip: str | None = None
    account_id: str
    #: The account's owner and controllers when the order was decided; empty when unlinked.
    persons: list[str] = field(default_factory=list)
    #: Those of them under a trading measure on ``session``, with the decisions that apply.
    banned: dict[str, list[str]] = field(default_factory=dict)
    session: date
    order_id: str
    entered_at: datetime
    broker: str


class UseNote(Struct, kw_only=True, omit_defaults=True):
    """What a terminal keeps of one account's uses in one session: its earliest order, IPs."""

    account_id: str
    session: date
    persons: list[str] = field(default_factory=list)
    banned: dict[str, list[str]] = field(default_factory=dict)
    order_id: str
    entered_at: datetime
    broker: str
    ips: list[str] = field(default_factory=list)


class SentUses(Struct, omit_defaults=True):
    """What an account's task sent R8 of its terminals: per terminal, the latest session's note."""

    by_terminal: dict[str, UseNote] = field(default_factory=dict)


class TerminalState(Struct, omit_defaults=True):
    """Everything R8 remembers of one terminal."""

    notes: list[UseNote] = field(default_factory=list)
    #: Suspicions this terminal raised, with their session (forgotten with the notes).
    raised: dict[str, date] = field(default_factory=dict)
    #: The session in which more than the shared limit of persons used it (then it is shared).
    shared_since: date | None = None
    latest: date | None = None


_USE_DECODER: Final = msgspec.json.Decoder(TerminalUse)
_USES_DECODER: Final = msgspec.json.Decoder(list[TerminalUse])


_USES_ENCODER: Final = msgspec.json.Encoder()


def encode_uses(uses: list[TerminalUse]) -> bytes:
    """Terminal uses as one record: a JSON array (one encoder call for the lot)."""
    return _USES_ENCODER.encode(uses)


def decode_uses_bytes(payload: bytes) -> list[TerminalUse] | None:
    """The terminal uses of a record as a task wrote it, or None (the generic path explains).

    A task writes the uses of one batch bound for one partition as one JSON array.
    """
    try:
        if payload[:1] == b"[":
            return _USES_DECODER.decode(payload)
        return [_USE_DECODER.decode(payload)]
    except msgspec.DecodeError:
        return None


def decode_use(obj: dict[str, object]) -> TerminalUse:
    """A terminal use from parsed JSON (replay of a hand-written line, or a damaged record)."""
    try:
        return msgspec.convert(obj, TerminalUse)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"invalid terminal use: {exc}") from None


def on_use(  # noqa: PLR0917 - the rule's parameters, each named in R8
    st: TerminalState,
    use: TerminalUse,
    calendar: MarketCalendar,
    window: int,
    shared_limit: int,
    now: datetime | None,
) -> tuple[list[Violation], bool]:
    """Record ``use`` in its terminal's state: the suspicions it completes, whether it changed.

    A repeat of a known account's use in a session changes nothing and so can complete nothing
    new: the state need not be written again.
    """
    if st.shared_since is not None:
        return [], False
    this, changed = _note(st, use)
    if not changed:
        return [], False
    if st.latest is None or use.session > st.latest:
        if st.latest is not None:
            _forget_old(st, calendar, window, use.session)  # only a later session ages notes
        st.latest = use.session
    if len(st.notes) == 1 and len(identity_of(this.account_id, this.persons)) <= shared_limit:
        return [], True  # one account in one session (most terminals, most of the time): no pair
    apart = calendar.sessions_apart
    near = [n for n in st.notes if apart(n.session, use.session, window) <= window]
    persons = {p for n in near for p in identity_of(n.account_id, n.persons)}
    if len(persons) > shared_limit:
        # A branch office's terminal, not one person's: from now on it proves nothing.
        st.shared_since = use.session
        st.notes, st.raised = [], {}
        return [], True
    found: list[Violation] = []
    for person, ids in use.banned.items():  # this order as the banned use ...
        for other in near:
            if person not in other.persons:
                found += _raise(st, use, other, person, ids, this, now)
    for other in near:  # ... and as the foreign use of a banned use already seen
        for person, ids in other.banned.items():
            if person not in this.persons:
                found += _raise(st, use, this, person, ids, other, now)
    return found, True


def _note(st: TerminalState, use: TerminalUse) -> tuple[UseNote, bool]:
    """The note of ``use``'s account and session, created or updated; whether it changed."""
    for note in st.notes:
        if note.account_id == use.account_id and note.session == use.session:
            return note, merge_use(note, use)
    note = first_note(use)
    st.notes.append(note)
    return note, True


def merge_use(note: UseNote, use: TerminalUse) -> bool:
    """Take ``use`` into ``note`` (same account, same session); whether the note changed."""
    if repeats(note, use.entered_at, use.persons, use.banned, use.ip):
        return False
    before = (note.order_id, note.persons, note.banned, len(note.ips))
    if use.entered_at < note.entered_at:
        note.order_id, note.entered_at, note.broker = use.order_id, use.entered_at, use.broker
    note.persons = sorted({*note.persons, *use.persons})
    note.banned = {
        p: sorted({*note.banned.get(p, []), *use.banned.get(p, [])})
        for p in sorted({*note.banned, *use.banned})
    }
    if use.ip and use.ip not in note.ips and len(note.ips) < _IPS_KEPT:
        note.ips.append(use.ip)
    return before != (note.order_id, note.persons, note.banned, len(note.ips))


def repeats(
    note: UseNote,
    entered_at: datetime,
    persons: list[str],
    banned: dict[str, list[str]],
    ip: str | None,
) -> bool:
    """Whether a use with these fields would leave ``note`` as it is (the usual repeat).

    The next order from the same device, with nothing new: no earlier time, person, measure or IP.
    """
    return (
        entered_at >= note.entered_at
        and persons == note.persons
        and banned == note.banned
        and (not ip or ip in note.ips or len(note.ips) >= _IPS_KEPT)
    )


def first_note(use: TerminalUse) -> UseNote:
    """The note of an account's first use of a terminal in a session."""
    banned = use.banned
    return UseNote(
        account_id=use.account_id,
        session=use.session,
        persons=sorted(use.persons) if use.persons else [],
        banned={p: sorted(banned[p]) for p in sorted(banned)} if banned else {},
        order_id=use.order_id,
        entered_at=use.entered_at,
        broker=use.broker,
        ips=[use.ip] if use.ip else [],
    )


def worth_sending(last: UseNote | None, use: TerminalUse) -> tuple[bool, UseNote | None]:
    """Whether ``use`` can change what its terminal knows; the account's note to keep, if new.

    ``last``: the note of the latest session in which this account's task sent a use of this
    terminal, kept as the terminal's own note of it was (the same uses, merged the same way, in
    the same order). A use of that session that leaves the note as it was leaves the terminal's
    state as it was, and can complete no suspicion: it need not travel. Anything else is sent.
    """
    if last is not None and last.session == use.session:
        return (True, last) if merge_use(last, use) else (False, None)
    if last is None or use.session > last.session:
        return True, first_note(use)
    return True, None  # an earlier session's use: sent, the latest session's note kept


def _forget_old(st: TerminalState, calendar: MarketCalendar, window: int, latest: date) -> None:
    """Drop what lies more than two windows before the latest session (bounded state)."""
    horizon = 2 * window

    def old(session: date) -> bool:
        return session < latest and calendar.sessions_apart(session, latest, horizon) > horizon

    st.notes = [n for n in st.notes if not old(n.session)]
    st.raised = {v: s for v, s in st.raised.items() if not old(s)}


def _raise(  # noqa: PLR0917 - the two uses of a pair and what to report of them
    st: TerminalState,
    use: TerminalUse,
    foreign: UseNote,
    person: str,
    ids: list[str],
    banned: UseNote,
    now: datetime | None,
) -> list[Violation]:
    violation_id = f"suspected_proxy_trading:{foreign.account_id}:{person}:{foreign.session}"
    if violation_id in st.raised:
        return []
    st.raised[violation_id] = foreign.session
    ips = ", ".join(sorted({*foreign.ips, *banned.ips})) or "none"
    detail = (
        f"terminal {use.terminal} (IPs seen: {ips}) entered order {foreign.order_id} on account "
        f"{foreign.account_id}, which {person} neither owns nor controls, in session "
        f"{foreign.session}; {person}, under a trading measure, used it for order "
        f"{banned.order_id} on account {banned.account_id} in session {banned.session}"
    )
    return [
        Violation(
            violation_id=violation_id,
            kind="suspected_proxy_trading",
            severity="high",
            account_id=foreign.account_id,
            person_id=person,
            order_id=foreign.order_id,
            decision_ids=sorted(ids),
            broker=foreign.broker,
            session=foreign.session,
            detected_at=now or use.entered_at,
            detail=detail,
        )
    ]
