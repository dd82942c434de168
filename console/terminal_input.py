"""What the operator types, read from a file descriptor without ever blocking the display.

- ``LineReader``: lines from a pipe or a file (scripts, tests): ``select`` waits for input or
  the refresh interval, whichever comes first; a line longer than any command can be is
  dropped (reported once) up to its newline; bytes that are not UTF-8 make that line an error.
- ``KeyEditor``: keys from a terminal in cbreak mode (no echo, no line discipline), edited
  into the prompt line the live display draws: backspace, Ctrl-U (clear), Ctrl-W (word), Enter;
  other control keys and escape sequences (arrows, function keys) are ignored.
"""

from __future__ import annotations

import codecs
import os
import select

from console.terminal_commands import CommandError

READ_CHUNK = 4096


def wait_readable(fd: int, timeout: float) -> bool:
    """True once ``fd`` has input (or its end) to read, False after ``timeout`` seconds."""
    ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
    return bool(ready)


class LineReader:
    """Lines from ``fd``; ``eof`` is True once the writer closed it."""

    def __init__(self, fd: int, max_line: int) -> None:
        self.fd = fd
        self.max_line = max_line
        self.max_bytes = 4 * max_line  # UTF-8 takes up to 4 bytes a character
        self.eof = False
        self._buf = b""
        self._skipping = False  # inside a line already reported too long

    def read(self, timeout: float) -> list[str | CommandError]:
        """The complete lines that arrived within ``timeout`` seconds (none if nothing did)."""
        if self.eof or not wait_readable(self.fd, timeout):
            return []
        try:
            data = os.read(self.fd, READ_CHUNK)
        except OSError:  # the other end is gone
            data = b""
        if not data:
            self.eof = True
            data = b"\n" if self._buf else b""  # a last line without its newline
        out: list[str | CommandError] = []
        self._buf += data
        while b"\n" in self._buf:
            raw, self._buf = self._buf.split(b"\n", 1)
            if self._skipping:
                self._skipping = False
                continue
            out.append(self._decode(raw.removesuffix(b"\r")))
        if len(self._buf) > self.max_bytes:
            if not self._skipping:
                out.append(CommandError(f"line too long (over {self.max_line} characters)"))
            self._skipping = True
            self._buf = b""
        return out

    @staticmethod
    def _decode(raw: bytes) -> str | CommandError:
        """The line's text (its length is the parser's to check)."""
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return CommandError("the line is not UTF-8 text")


class KeyEditor:
    """The prompt line being typed (``text``) and the lines entered."""

    END = "\x04"  # Ctrl-D on an empty line: leave

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self.text = ""
        self.overflowed = False  # keys were refused: the line is at its limit
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._escape = 0  # 1: after ESC; 2: inside a CSI/SS3 sequence

    def feed(self, data: bytes) -> list[str]:
        """Take typed bytes; the lines entered with them (``END`` for Ctrl-D on nothing)."""
        entered: list[str] = []
        self.overflowed = False
        for ch in self._decoder.decode(data):
            if self._escape:
                self._escape = _after_escape(self._escape, ch)
            elif ch == "\x1b":
                self._escape = 1
            elif ch in "\r\n":
                entered.append(self.text)
                self.text = ""
            elif ch in "\x7f\x08":
                self.text = self.text[:-1]
            elif ch == "\x15":
                self.text = ""
            elif ch == "\x17":
                stripped = self.text.rstrip()
                self.text = stripped[: stripped.rfind(" ") + 1]  # up to the word's space
            elif ch == self.END and not self.text:
                entered.append(self.END)
            elif ch.isprintable():
                if len(self.text) < self.max_line:
                    self.text += ch
                else:
                    self.overflowed = True
        return entered


def _after_escape(state: int, ch: str) -> int:
    """The escape state after ``ch``: sequences end with a byte from @ to ~ (ECMA-48)."""
    if state == 1:
        return 2 if ch in "[O" else 0
    return 0 if "@" <= ch <= "~" else 2
