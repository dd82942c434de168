"""``tuquan watch``: the alert queue and the hubs in a terminal, and the operator's commands.

Three ways to run, chosen by the command line from its options and its terminals:

- ``run_once``: print the board and return (``--once``): rich tables on a terminal, plain
  aligned text into a pipe or a file.
- ``run_lines``: commands read line by line from a pipe or a file (scripts, tests); each
  answered with one line; alerts opened meanwhile are announced as they come; the end of the
  input ends the watch.
- ``run_live``: a full-screen rich ``Live`` display with a prompt line, when both standard input
  and output are terminals.

All three look at the store the same way (``Watch.look``): one ``data_version`` per
refresh interval, and only when another process committed are the new events followed into
alerts and the board read again. Between two looks the process sleeps in ``select`` on its
input: no busy loop. A new alarm rings the terminal's bell once.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import termios
import tty
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from commune.alerts import NEW, Alert
from commune.db import STORE_ERRORS
from console.terminal_board import (
    PRIORITY_NAMES,
    Room,
    plain_board,
    printable,
    rich_board,
)
from console.terminal_commands import (
    HELP,
    MAX_LINE,
    Acknowledge,
    Answer,
    Close,
    CommandError,
    Simple,
    parse_command,
    perform,
)
from console.terminal_input import KeyEditor, LineReader, wait_readable
from console.terminal_store import Board, WatchStore
from core.events import Priority

QUIT = "quit"


@dataclass(frozen=True)
class WatchOptions:
    operator: str
    refresh_s: float = 1.0
    window_s: float = 75.0  # a hub silent for longer (without a window of its own) is "silent"


class Watch:
    """The store, its last board, and which alerts were already on it."""

    def __init__(self, store: WatchStore, options: WatchOptions) -> None:
        self.store = store
        self.options = options
        self.board = Board(alerts=(), open_count=0, hubs=())  # until the first look
        self.problem: str | None = None  # why the last look failed, until one succeeds
        self._version: int | None = None
        self._caught_up = False
        self._seen: set[int] = set()

    @property
    def caught_up(self) -> bool:
        return self._caught_up

    def look(self, force: bool = False) -> list[Alert]:
        """Follow and read the store again if another process wrote to it (or ``force``);
        the open alerts on the board that were not on it at the previous look (an action's
        own reading included), in queue order."""
        try:
            version = self.store.data_version()
            if force or not self._caught_up or version != self._version:
                self._version = version
                _, self._caught_up = self.store.follow()
                self.board = self.store.board()
            self.problem = None
        except STORE_ERRORS as exc:  # a lock held too long, a full disk: the next look retries
            self.problem = f"the store cannot be read: {exc}"
            self._caught_up = True  # wait a refresh interval before trying again...
            self._version = None  # ...and try again then, whether or not the store changed
        appeared = [a for a in self.board.alerts if a.id not in self._seen]
        self._seen = {a.id for a in self.board.alerts}  # closed alerts never come back
        return appeared

    def reread(self) -> None:
        """Read the board again now (after an action, or asked to), following nothing; what
        it shows new is still announced by the next ``look``."""
        try:
            self.board = self.store.board()
        except STORE_ERRORS as exc:
            self.problem = f"the store cannot be read: {exc}"

    def act(self, command: Acknowledge | Close) -> Answer:
        """Carry out an acknowledgement or a closing, then read the board again."""
        answer = perform(self.store, self.options.operator, command)
        self.reread()
        return answer

    def now(self) -> datetime:
        return datetime.now(UTC)


def alarms(alerts: list[Alert]) -> list[Alert]:
    """The alarms among ``alerts`` nobody acknowledged yet."""
    return [a for a in alerts if a.state == NEW and a.priority == Priority.ALARM]


def announce(alert: Alert, names: dict[str, str]) -> str:
    hub = names.get(alert.hub)
    where = printable(f"{hub} ({alert.hub})" if hub else alert.hub)
    label = PRIORITY_NAMES.get(alert.priority, str(alert.priority))
    return (
        f"new alert {alert.id}: {label} {printable(alert.kind)} at {where}, "
        f"zone {printable(alert.zone)}"
    )


# -- --once -----------------------------------------------------------------------------------


def run_once(watch: Watch, out: TextIO) -> int:
    """Print the board; 1 if the store could not be read (the board is then empty)."""
    watch.look(force=True)
    if watch.problem:
        print(f"tuquan watch: {watch.problem}", file=sys.stderr)
        return 1
    _print_board(watch, out)
    return 0


def _print_board(watch: Watch, out: TextIO) -> None:
    if out.isatty():
        Console(file=out, highlight=False).print(
            rich_board(watch.board, watch.now(), watch.options.window_s)
        )
    else:
        out.write(plain_board(watch.board, watch.now(), watch.options.window_s))
        out.flush()


# -- commands from a pipe ---------------------------------------------------------------------


def run_lines(watch: Watch, fd: int, out: TextIO) -> int:
    """Print the board, then answer each line of ``fd`` until ``q`` or its end: what was done
    on ``out``, what was refused or not understood on stderr."""
    watch.look(force=True)
    _print_board(watch, out)
    reader = LineReader(fd, MAX_LINE)
    told: str | None = None  # the store's problem last reported, told once
    while True:
        for item in reader.read(watch.options.refresh_s if watch.caught_up else 0):
            if _answer(watch, item, out) == QUIT:
                return 0
        if reader.eof:
            return 0
        appeared = watch.look()
        if watch.problem != told and watch.problem is not None:
            print(f"error: {watch.problem}", file=sys.stderr, flush=True)
        told = watch.problem
        for alert in appeared:
            print(announce(alert, watch.board.names), file=out, flush=True)
        if alarms(appeared) and out.isatty():
            out.write("\a")
            out.flush()


def _answer(watch: Watch, item: str | CommandError, out: TextIO) -> str | None:
    """Answer one input line; QUIT when it says to leave."""
    try:
        if isinstance(item, CommandError):
            raise item
        command = parse_command(item)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return None
    if isinstance(command, Simple):
        if command.name == "quit":
            return QUIT
        if command.name == "list":
            watch.look(force=True)  # what it shows new is on the board printed: not announced
            _print_board(watch, out)
        else:
            print(HELP, file=out, flush=True)
    elif command is not None:
        answer = watch.act(command)
        print(answer.text, file=out if answer.done else sys.stderr, flush=True)
    return None


# -- the live display -------------------------------------------------------------------------


class _Screen:
    """What the live display shows under the board: the last answer and the prompt."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.editor = KeyEditor(MAX_LINE)
        self.message = Text("h for help, q to quit", style="dim")
        self.ended = False

    def enter(self, line: str) -> None:
        if line == KeyEditor.END:
            self.ended = True
            return
        try:
            command = parse_command(line)
        except CommandError as exc:
            self.message = Text(f"error: {exc}", style="bold red")
            return
        if command is None:
            return
        if isinstance(command, Simple):
            if command.name == "quit":
                self.ended = True
            elif command.name == "list":
                self.watch.reread()
            else:
                self.message = Text(HELP)
            return
        answer = self.watch.act(command)
        self.message = Text(answer.text, style="green" if answer.done else "bold red")

    def render(self, console: Console) -> Group:
        watch = self.watch
        now = watch.now()
        header = Text(
            f"tuquan watch  {printable(watch.store.path, 60)}  operator "
            f"{printable(watch.options.operator)}  {now.astimezone():%H:%M:%S}",
            style="bold",
        )
        board = watch.board
        room = Room.for_height(console.size.height, len(board.hubs))
        status = Text(watch.problem, style="bold red") if watch.problem else self.message
        if self.editor.overflowed:
            status = Text(f"error: line too long (over {MAX_LINE} characters)", style="bold red")
        prompt = Text("> ") + Text(self.editor.text[-(console.size.width - 4) :]) + Text("▏")
        return Group(header, rich_board(board, now, watch.options.window_s, room), status, prompt)


class _LogToScreen(logging.Handler):
    """Warnings of the store's modules shown on the message line, not over the display."""

    def __init__(self, screen: _Screen) -> None:
        super().__init__(logging.WARNING)
        self.screen = screen

    def emit(self, record: logging.LogRecord) -> None:
        self.screen.message = Text(printable(record.getMessage(), 200), style="yellow")


def run_live(watch: Watch, fd: int, console: Console) -> int:
    """The full-screen watch on a terminal until ``q``, Ctrl-D, Ctrl-C, SIGTERM or SIGHUP
    (or the terminal is gone)."""
    screen = _Screen(watch)
    root = logging.getLogger()
    handler = _LogToScreen(screen)
    root.addHandler(handler)
    try:
        with _leave_on_signals(), _cbreak(fd), Live(
            console=console, screen=True, auto_refresh=False, transient=True
        ) as live:  # fmt: skip
            watch.look(force=True)
            if alarms(list(watch.board.alerts)):  # unacknowledged alarms when the watch starts
                console.bell()
            while not screen.ended:
                live.update(screen.render(console), refresh=True)
                timeout = watch.options.refresh_s if watch.caught_up else 0
                if wait_readable(fd, timeout):
                    data = os.read(fd, 1024)
                    if not data:
                        break
                    for line in screen.editor.feed(data):
                        screen.enter(line)
                        if screen.ended:
                            break
                appeared = watch.look()
                if alarms(appeared):
                    console.bell()
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise
        # The terminal hung up: nothing can be shown any more, not even at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        for out in (1, 2):
            os.dup2(devnull, out)
    finally:
        root.removeHandler(handler)
    return 0


@contextmanager
def _cbreak(fd: int) -> Iterator[None]:
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield
    finally:
        with suppress(termios.error):  # the terminal may be gone (SIGHUP)
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextmanager
def _leave_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP (the terminal closed) end the watch through its ``finally`` blocks,
    so the terminal is given back as it was."""

    def leave(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
