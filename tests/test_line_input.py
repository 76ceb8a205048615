"""The serial emulators' shared input framing (hardware_sims.line_input): bounded lines from any chunks,
an overlong line answered once and skipped to its newline, handlers that never end the thread."""

from __future__ import annotations

from prclab.hardware_sims.line_input import MAX_INTERNAL_ERRORS, GuardedHandlers, LineInput


def _run(data_chunks, limit=5, strip_cr=False):
    lines, overflows, held = [], [], []
    framer = LineInput(limit, strip_cr)
    for chunk in data_chunks:
        framer.feed(chunk, lines.append, lambda: overflows.append(len(lines)), held.append)
    return lines, overflows, held


def test_lines_from_any_chunks_and_crlf():
    whole = b"ab\r\ncdefg\nh\r\n"
    assert _run([whole], strip_cr=True)[0] == [b"ab", b"cdefg", b"h"]
    assert _run([bytes([b]) for b in whole], strip_cr=True)[0] == [b"ab", b"cdefg", b"h"]
    assert _run([whole])[0] == [b"ab\r", b"cdefg", b"h\r"]  # without strip_cr a CR is the line's


def test_an_overlong_line_is_answered_once_skipped_and_never_held_whole():
    lines, overflows, held = _run([b"ok\n" + b"x" * 10, b"y" * 1000, b"\nnext\n"])
    assert lines == [b"ok", b"next"] and overflows == [1]
    assert max(held) <= 6            # limit + 1 bytes: enough to see that it is too long
    lines, overflows, held = _run([b"abcdef\r\n"], strip_cr=True)
    assert lines == [] and overflows == [0] and max(held) <= 7


def test_a_failing_handler_is_recorded_and_recovered_not_raised():
    class Peer(GuardedHandlers):
        def __init__(self):
            self.internal_errors, self.recovered = [], 0

        def _recover(self):
            self.recovered += 1

    peer = Peer()
    for i in range(MAX_INTERNAL_ERRORS + 5):
        peer._guarded(lambda n: 1 / 0 if n % 2 else None, i)
    assert peer.recovered == (MAX_INTERNAL_ERRORS + 5) // 2
    assert len(peer.internal_errors) == min(MAX_INTERNAL_ERRORS, peer.recovered)
    assert all(e.startswith("ZeroDivisionError") for e in peer.internal_errors)
