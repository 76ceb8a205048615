"""The input side the serial-instrument emulators share (``potentiostat``, ``rodeostat``): received bytes
into bounded lines, and handlers that never end the serving thread.

A firmware's receive buffer is finite: a line longer than it is dropped up to its newline and answered
once, never held whole.  An unforeseen exception in a handler is recorded and answered as the firmware
would, and the thread serves on (a peer's bytes are parsed defensively).
"""

from __future__ import annotations

from collections.abc import Callable

MAX_INTERNAL_ERRORS = 20
"""Internal errors an emulator keeps (the last ones) in ``internal_errors``."""


class LineInput:
    """Lines of at most ``limit`` bytes from bytes received in any chunks.

    Args:
        limit: longest line in bytes, its newline (and, with ``strip_cr``, a CR before it) excluded.
        strip_cr: a CR before the newline is not part of the line (CRLF peers).
    At most ``limit + 1`` bytes of a line are held (one more with ``strip_cr``): enough to see that it
    is too long.
    """

    def __init__(self, limit: int, strip_cr: bool = False):
        self.limit, self.strip_cr = int(limit), bool(strip_cr)
        self.clear()

    def clear(self) -> None:
        """Forget the unfinished line (and an overlong one being skipped)."""
        self._line, self._discard = bytearray(), False

    def feed(self, data: bytes, on_line: Callable[[bytes], None], on_overflow: Callable[[], None],
             on_held: Callable[[int], None] | None = None) -> None:
        """Call ``on_line(line)`` for every whole line in ``data`` and ``on_overflow()`` once for every
        line that grew too long (its rest is skipped); ``on_held(n)``: the bytes held after each piece."""
        while data:
            nl = data.find(b"\n")
            piece, data = (data, b"") if nl < 0 else (data[:nl], data[nl + 1:])
            if self._discard:
                self._discard = nl < 0
                continue
            room = self.limit + 1 + self.strip_cr - len(self._line)
            self._line += piece[:room]
            if on_held is not None:
                on_held(len(self._line))
            line = self._line.rstrip(b"\r") if self.strip_cr else self._line
            if len(piece) > room or len(line) > self.limit:
                self._line.clear()
                self._discard = nl < 0
                on_overflow()
            elif nl >= 0:
                line = bytes(line)
                self._line.clear()
                on_line(line)


class GuardedHandlers:
    """``_guarded(action, *args)``: run one input's handler; an unforeseen exception is recorded in
    ``internal_errors`` (the last :data:`MAX_INTERNAL_ERRORS`) and answered by the subclass's
    ``_recover()``, and never ends the serving thread."""

    internal_errors: list[str]

    def _guarded(self, action, *args) -> None:
        try:
            action(*args)
        except Exception as exc:  # noqa: BLE001 - the serving thread must outlive any input
            self._record_internal_error(f"{type(exc).__name__}: {exc}")
            self._recover()

    def _record_internal_error(self, what: str) -> None:
        self.internal_errors = (self.internal_errors + [what])[-MAX_INTERNAL_ERRORS:]

    def _recover(self) -> None:
        raise NotImplementedError
