"""Incremental reading of a JSON object that is still being generated.

A grammar-constrained reply such as `{"name": "f", "arguments": {...}}` arrives a token at a time;
to stream it (a tool call's argument deltas, an answer's text) the members of the top-level object
must be recognised before the object is complete. `MemberScanner` reports, for each fed piece, the
raw JSON text that fell inside each top-level member's value; `StringDecoder` turns the raw text of a
JSON string literal into its characters as they arrive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

_WS = " \t\r\n"
_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass
class MemberPiece:
    key: str
    raw: str  # raw JSON text of the member's value that arrived in this piece
    finished: bool  # the value is complete


class MemberScanner:
    """Scans the text of one JSON object, reporting raw value text per top-level member."""

    def __init__(self) -> None:
        self._state = "start"
        self._key_raw: list[str] = []
        self.key: str | None = None
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._scalar = False
        self.done = False

    def feed(self, text: str) -> list[MemberPiece]:
        pieces: list[MemberPiece] = []
        current: list[str] = []

        def flush(finished: bool) -> None:
            if self.key is not None and (current or finished):
                if pieces and pieces[-1].key == self.key and not pieces[-1].finished:
                    pieces[-1].raw += "".join(current)
                    pieces[-1].finished = finished
                else:
                    pieces.append(MemberPiece(self.key, "".join(current), finished))
            current.clear()

        for char in text:
            if self._state == "value":
                if self._value_char(char, current):
                    flush(True)
                    self._state = "after_value"
                    if self._scalar:  # the character that ended a number or literal belongs to the object
                        self._scalar = False
                        self._structural(char)
                continue
            self._structural(char)
            if self._state == "value":  # `char` opened a member value
                current.append(char)
        flush(False)
        return pieces

    def _value_char(self, char: str, current: list[str]) -> bool:
        """Consume one character of a member value; True when the value just ended."""
        if self._scalar:
            if char in _WS or char in ",}":
                return True
            current.append(char)
            return False
        current.append(char)
        if self._in_string:
            if self._escape:
                self._escape = False
            elif char == "\\":
                self._escape = True
            elif char == '"':
                self._in_string = False
                return self._depth == 0
            return False
        if char == '"':
            self._in_string = True
        elif char in "{[":
            self._depth += 1
        elif char in "}]":
            self._depth -= 1
            return self._depth == 0
        return False

    def _structural(self, char: str) -> None:
        state = self._state
        if state == "key":
            self._key_raw.append(char)
            if self._escape:
                self._escape = False
            elif char == "\\":
                self._escape = True
            elif char == '"':
                self.key = json.loads("".join(self._key_raw))
                self._state = "colon"
            return
        if char in _WS:
            return
        if state == "start" and char == "{":
            self._state = "key_or_end"
        elif state in {"key_or_end", "after_value"} and char == "}":
            self._state = "end"
            self.done = True
        elif state == "after_value" and char == ",":
            self._state = "key_or_end"
        elif state == "key_or_end" and char == '"':
            self._key_raw = ['"']
            self._state = "key"
        elif state == "colon" and char == ":":
            self._state = "value_start"
        elif state == "value_start":
            self._state = "value"
            self._depth = 0
            self._in_string = char == '"'
            self._scalar = char not in '"{['
            if char in "{[":
                self._depth = 1


class StringDecoder:
    """Decodes the raw text of a JSON string literal (opening quote included) as it arrives."""

    def __init__(self) -> None:
        self._started = False
        self._ended = False
        self._escape: str | None = None  # text after a backslash, while an escape is incomplete
        self._high: int | None = None  # a high surrogate waiting for its pair

    def feed(self, raw: str) -> str:
        out: list[str] = []
        for char in raw:
            if self._ended:
                break
            if not self._started:
                self._started = char == '"'
                continue
            if self._escape is not None:
                self._escape += char
                self._finish_escape(out)
            elif char == "\\":
                self._escape = ""
            elif char == '"':
                self._ended = True
            else:
                self._emit(out, char)
        return "".join(out)

    def _finish_escape(self, out: list[str]) -> None:
        text = self._escape or ""
        if text[0] != "u":
            self._escape = None
            self._emit(out, _SIMPLE_ESCAPES.get(text[0], text[0]))
            return
        if len(text) < 5:
            return
        self._escape = None
        try:
            code = int(text[1:5], 16)
        except ValueError:
            return
        if 0xD800 <= code < 0xDC00:
            self._high = code
            return
        if 0xDC00 <= code < 0xE000 and self._high is not None:
            code = 0x10000 + ((self._high - 0xD800) << 10) + (code - 0xDC00)
            self._high = None
        out.append(chr(code))

    def _emit(self, out: list[str], char: str) -> None:
        self._high = None  # an unpaired high surrogate is dropped, as it cannot be encoded as UTF-8
        out.append(char)
