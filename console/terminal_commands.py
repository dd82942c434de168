"""The operator's command line in ``tuquan watch``: parsed, checked, then carried out.

    a N | ack N                        acknowledge alert N
    c N OUTCOME [note...] | close ...  close alert N (OUTCOME: real, false_alarm, test, other)
    l | list                           show the queue and the hubs again
    h | help | ?                       this help
    q | quit                           leave

A line that is not one of these (an unknown word, an id that is not a plain number of at most
18 digits, control characters, a line longer than ``MAX_LINE``) is refused with one short
error and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from commune.alerts import MAX_NOTE_CHARS, OUTCOMES, AlertError
from commune.db import STORE_ERRORS
from console.terminal_store import WatchStore
from core.errors import TuquanError

MAX_LINE = MAX_NOTE_CHARS + 100  # the longest note, and the command in front of it
MAX_ID_DIGITS = 18  # below SQLite's 2**63: a bigger number is no alert id

HELP = (
    "a N | ack N: acknowledge alert N;  "
    f"c N OUTCOME [note]: close alert N ({'|'.join(OUTCOMES)});  "
    "l: list again;  h: help;  q: quit"
)


class CommandError(TuquanError):
    """A line that is not a command; the message says what is wrong, in one line."""


@dataclass(frozen=True)
class Acknowledge:
    alert_id: int


@dataclass(frozen=True)
class Close:
    alert_id: int
    outcome: str
    note: str


@dataclass(frozen=True)
class Simple:
    """A command without arguments: "help", "list" or "quit"."""

    name: str


Command = Acknowledge | Close | Simple

_SIMPLE = {"h": "help", "help": "help", "?": "help", "l": "list", "list": "list"}
_SIMPLE |= {"q": "quit", "quit": "quit", "exit": "quit"}


def parse_command(line: str) -> Command | None:
    """The command on ``line`` (None for a blank line); raises CommandError."""
    if len(line) > MAX_LINE:
        raise CommandError(f"line too long (over {MAX_LINE} characters)")
    if not line.isprintable():
        raise CommandError("the line holds control characters")
    words = line.split()
    if not words:
        return None
    verb, args = words[0].lower(), words[1:]
    if verb in _SIMPLE:
        if args:
            raise CommandError(f"{verb} takes no arguments")
        return Simple(_SIMPLE[verb])
    if verb in ("a", "ack"):
        if len(args) != 1:
            raise CommandError("usage: a N (the alert's number)")
        return Acknowledge(alert_id(args[0]))
    if verb in ("c", "close"):
        if len(args) < 2:
            raise CommandError(f"usage: c N OUTCOME [note] (OUTCOME: {', '.join(OUTCOMES)})")
        outcome = args[1].lower()
        if outcome not in OUTCOMES:
            raise CommandError(f"outcome must be one of {', '.join(OUTCOMES)}")
        # The note as typed after the outcome, inner spacing kept.
        note = line.split(None, 3)[3].strip() if len(args) > 2 else ""
        return Close(alert_id(args[0]), outcome, note)
    raise CommandError(f"unknown command {shorten(words[0])!r} (h for help)")


def alert_id(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_ID_DIGITS or int(text) == 0:
        raise CommandError(f"{shorten(text)!r} is not an alert number")
    return int(text)


def shorten(text: str, limit: int = 20) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Answer:
    """What became of an action, in one line; ``done`` False when nothing changed."""

    text: str
    done: bool


def perform(store: WatchStore, operator: str, command: Acknowledge | Close) -> Answer:
    """Carry out an action as ``operator`` (audited under that name)."""
    try:
        if isinstance(command, Acknowledge):
            alert = store.acknowledge(command.alert_id, operator)
            if alert.ack_by != operator:
                return Answer(f"alert {alert.id} was already acknowledged by {alert.ack_by}", False)
            return Answer(f"alert {alert.id} acknowledged by {operator}", True)
        alert = store.close_alert(command.alert_id, operator, command.outcome, command.note)
        return Answer(f"alert {alert.id} closed by {operator}: {command.outcome}", True)
    except AlertError as exc:
        return Answer(f"refused: {exc}", False)
    except STORE_ERRORS as exc:
        return Answer(f"the store refused it ({exc}); nothing changed", False)
