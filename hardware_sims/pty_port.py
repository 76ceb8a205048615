"""The part every serial-instrument emulator shares: a pseudo-terminal served by one thread.

:class:`PtyEmulator` opens a pty pair in raw mode at :meth:`~PtyEmulator.start` (it keeps its own handle
on the slave open, so the port stays usable between clients), publishes the slave's path as ``port``,
runs the subclass's ``_serve`` loop on a daemon thread, and closes both sides at
:meth:`~PtyEmulator.close`.  Faults are validated and stored here; the serving thread acts on them, and
closes the pty itself on ``unplug`` (so no other thread's new file descriptor can take the closed
number while the loop still holds it).
"""

from __future__ import annotations

import os
import threading
import tty

from prclab.reservoir import Substrate

from . import FAULTS

CLOSE_TIMEOUT_S = 5.0
"""Longest :meth:`PtyEmulator.close` waits for the serving thread, seconds."""


class PtyEmulator:
    """Base class: pty lifecycle, fault injection, context manager.

    Subclasses implement ``_serve()`` (loop until ``_stop`` is set or ``_master`` is closed; call
    ``_close_pty()`` and return when ``fault == "unplug"``), may extend ``_on_fault`` (called holding
    ``_lock``), and name their thread with ``thread_name``.
    """

    thread_name = "pty-emulator"

    def __init__(self, substrate: Substrate, seed: int = 0):
        self.substrate, self.seed = substrate, seed
        self.port = ""
        self.fault: str | None = None
        self._master = self._slave = -1
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self):
        """Reset the substrate to ``seed``, open the pty and start serving; returns ``self``.

        Idempotent while serving (no second pty); startable again after :meth:`close`.  If anything
        fails half-way, the pty opened so far is closed before the error propagates.
        """
        if self.serving:
            return self
        self.substrate.reset(self.seed)
        self._stop.clear()  # startable again after close (a device that owns it reopens)
        try:
            self._master, self._slave = os.openpty()
            tty.setraw(self._master)
            tty.setraw(self._slave)
            os.set_blocking(self._master, False)
            self.port = os.ttyname(self._slave)
            self._thread = threading.Thread(target=self._serve, name=self.thread_name, daemon=True)
            self._thread.start()
        except BaseException:
            self._thread = None
            self._close_pty()
            raise
        return self

    @property
    def address(self) -> str:
        """The pty's path while serving (what a client opens as its serial port)."""
        return self.port

    @property
    def serving(self) -> bool:
        """Whether the serving thread runs now."""
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Stop serving and close both sides of the pty.

        Idempotent, and safe before :meth:`start`, after a failed start, after ``unplug`` and when no
        client ever connected: afterwards no thread of this emulator runs and no pty is held (the slave's
        path is gone).  Waits up to :data:`CLOSE_TIMEOUT_S` for the thread.
        """
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=CLOSE_TIMEOUT_S)
            if not thread.is_alive():
                self._thread = None
        self._close_pty()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def inject(self, fault: str) -> None:
        """Inject ``fault`` (one of :data:`FAULTS`); the serving thread acts on it within 50 ms."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
        with self._lock:
            self.fault = fault
            self._on_fault(fault)

    def _on_fault(self, fault: str) -> None:
        """Hook for a subclass, called by :meth:`inject` holding ``_lock``."""

    def _close_pty(self) -> None:
        with self._lock:
            for fd in (self._master, self._slave):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._master = self._slave = -1

    def _serve(self) -> None:
        raise NotImplementedError
