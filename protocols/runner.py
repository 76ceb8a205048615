"""The protocol runner: compile a protocol into trials, play them through a Device, record each.

A protocol compiles to a list of :class:`~protocols.recording.Trial` steps (Bluesky-style: a plan is
data, the runner executes it; a recording reads back the same type).  For each trial the runner marks
the trial start in the device's response stream, streams the trial waveform (washout, encoded stimulus,
rest) in blocks of ``block_samples`` - write a block, read as many samples - then cuts the trial's
response out of the stream at the mark's position (devices with latency report their marks later in the
stream).

Events: the runner tells its subscribers what happens, in order - ``run_start``, then per trial
``trial_start``, ``block_written`` / ``block_read`` per block, ``trial_end``, and ``run_stop`` however
the run ends (see :class:`Subscriber` for each event's fields).  The recording writer is the first
subscriber (:class:`Recorder`: it logs each block before the device gets it and appends each finished
trial, flushed); a progress bar, a live view or an online readout subscribe the same way.  A subscriber
that raises stops the run as any fault does: outputs ramped to rest, the trials already appended kept.

Safety (:mod:`protocols.safety`): ``prepare`` applies the protocol's start-of-run ramp to the compiled
waveforms and refuses the protocol if any sample of any trial breaks a limit; the runner checks every
block again with a :class:`~protocols.safety.SafetyMonitor` just before ``device.write``.

Resume: the trial list is compiled deterministically from the protocol (order and encoder from its
seed), so ``run_protocol(..., resume=True)`` reopens the recording, keeps its intact trials, and plays
the rest.  A simulated device's substrate state is stored with every trial and restored before the
first resumed trial, so the resumed responses equal an uninterrupted run's; a hardware substrate simply
carries on from where it is.  Device timestamps restart with each session (``session`` trial attr).

Stops: the device is told the protocol's rest level and slew limit (``Device.set_rest``); however the
run ends - normal end, Ctrl-C, SIGTERM, a device fault, an exception - the outputs are ramped to rest
(``Device.rest``) and the session's entry in the recording's ``sessions`` attribute says how:
``{"stopped": reason, "outputs_at_rest": bool, "rest_V": [...], "detail": ...}``.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from prclab.drivers import Device, DeviceError, rest_ramp
from prclab.drivers.capabilities import STIMULATE, require
from prclab.errors import PrclabError
from prclab.reservoir import electrodes_of, make_substrate

from .datasets import LabelledSequences, load_dataset
from .encoders import Encoder, make_encoder, rest_level
from .protocol import Protocol
from .recording import RecordingWriter, Trial, run_identity
from .recording_storage import storage_for
from .safety import SafetyError, SafetyLimits, SafetyMonitor, apply_ramp, resolve_limits, validate_trials


def prepare(protocol: Protocol, device: Device | None = None) -> tuple[LabelledSequences, Encoder, list[Trial]]:
    """Load the dataset, fit the encoder on its training items and compile the trials.

    ``device``: the (unopened) device or rig the run will use, whose declared electrodes the safety
    limits use (see :func:`safety_limits`); default what the protocol's spec names.

    Raises:
        PrclabError: bad dataset or encoder, a closed-loop protocol; ``SafetyError`` if a compiled
            sample breaks a safety limit.
    """
    if protocol.closed_loop:
        raise PrclabError(f"{protocol.where}: a closed-loop protocol ([loop]): run it with prclab loop")
    data = load_dataset(protocol.dataset_path())
    split = data.split if data.split is not None else _random_split(data, protocol["protocol"]["seed"])
    data.split = split
    max_items, labels = protocol["task"]["max_items"], protocol["task"]["labels"]
    if labels:
        missing = sorted(set(labels) - set(data.labels))
        if missing:
            raise PrclabError(f"{protocol.where}: [task] labels {missing} are not in the dataset "
                              f"(it has {', '.join(map(str, data.classes))})")
        split = np.where(np.isin(data.labels, labels), split, "unused")
    keep = np.concatenate([_first_items(data.labels, split == s, max_items) for s in ("train", "test")])
    data = data.subset(np.sort(keep))
    train = np.flatnonzero(data.split == "train")
    if len(train) == 0 or len(np.unique(data.labels[train])) < 2:
        raise PrclabError(f"{protocol.where}: the dataset's training split needs two or more classes")
    enc = protocol["encoder"]
    encoder = make_encoder(data, enc["kind"] or None, **protocol.encoder_params()).fit(data, train)
    n_el = protocol["stimulus"]["electrodes"]
    if encoder.n_channels != n_el:
        raise PrclabError(f"{protocol.where}: [stimulus] electrodes = {n_el} but the {encoder.kind} "
                          f"encoder makes {encoder.n_channels} channels")
    limits = safety_limits(protocol, device)
    trials = compile_trials(protocol, data, encoder, limits)
    validate_trials(trials, limits, protocol.where)
    return data, encoder, trials


def _first_items(labels: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    """Indices of the first ``n`` items in ``mask``, taken round-robin over the labels (all if n = 0)."""
    idx = np.flatnonzero(mask)
    if n == 0 or n >= len(idx):
        return idx
    # rank of each item within its label, then order by (rank, position): 1st of each label, 2nd, ...
    rank = np.zeros(len(idx), int)
    for label in np.unique(labels[idx]):
        sel = labels[idx] == label
        rank[sel] = np.arange(sel.sum())
    return idx[np.lexsort((idx, rank))[:n]]


def safety_limits(protocol: Protocol, device: Device | None = None) -> SafetyLimits:
    """The protocol's ``[safety]`` limits resolved per stimulus channel (see :mod:`protocols.safety`).

    Limits come only from ``[safety]`` and the electrodes the rig declares (``device.electrodes``): a
    :class:`~prclab.drivers.SimDevice` declares its substrate's; hardware, emulated or not, declares
    what its driver knows (nothing, so far), never a simulation's parameters - a current, charge or DC
    limit then needs ``[safety] impedance_ohm`` and is refused, naming the key.  Without ``device``:
    the electrodes of the substrate a ``sim:NAME`` spec builds, else none.

    Raises:
        PrclabError: ``device`` cannot stimulate (a record-only rig), before anything runs.
    """
    s = protocol["stimulus"]
    if device is not None:
        require(device, STIMULATE, f"the protocol {protocol.where} stimulates {s['electrodes']} "
                                   "electrode(s): name a stimulator, e.g. --device nidaq:Dev1+RECORDER")
        electrodes = device.electrodes
    else:
        spec = protocol["device"]["spec"]
        electrodes = () if not spec.startswith("sim:") else electrodes_of(make_substrate(
            protocol.substrate_for(spec), s["electrodes"],
            **{"dt": 1.0 / protocol.rate_hz, **protocol["substrate"]["params"]}))
    return resolve_limits(protocol["safety"], s["electrodes"], protocol.rate_hz, (s["low_V"], s["high_V"]),
                          rest_level(s["low_V"], s["high_V"]), electrodes, protocol.where)


def _random_split(data: LabelledSequences, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    split = np.full(len(data), "train", dtype=object)
    for label in data.classes:
        idx = rng.permutation(np.flatnonzero(data.labels == label))
        split[idx[:max(1, round(0.3 * len(idx)))]] = "test"
    return split.astype(str)


def compile_trials(protocol: Protocol, data: LabelledSequences, encoder: Encoder,
                   limits: SafetyLimits) -> list[Trial]:
    """The run's trials in playing order (shuffled per repetition with the protocol seed if random),
    with the start-of-run amplitude ramp of ``limits`` applied.

    With ``[drift] reference = true`` a fixed reference trial (the item ``reference_id``, default the
    first training item) is played first, after every ``reference_every`` dataset trials (if > 0) and
    last; each has ``split = "reference"`` and ``repetition`` = which play of the reference it is (0, 1,
    ...), so readouts (which take the train and test trials) leave it out and
    :mod:`prclab.experiments.twins.drift` compares its plays.

    Raises:
        PrclabError: ``reference_id`` names no item played.
    """
    p, t, s = protocol["protocol"], protocol["timing"], protocol["stimulus"]
    rate = p["sample_rate_hz"]
    n_wash, n_rest = int(round(t["washout_s"] * rate)), int(round(t["rest_s"] * rate))
    level = rest_level(s["low_V"], s["high_V"])
    rng = np.random.default_rng(p["seed"])
    trials: list[Trial] = []
    stimuli = [encoder.encode(x) for x in data.sequences]

    def add(item: int, repetition: int, split: str) -> None:
        stim = stimuli[item]
        wave = np.full((n_wash + len(stim) + n_rest, stim.shape[1]), level)
        wave[n_wash:n_wash + len(stim)] = stim
        trials.append(Trial(len(trials), int(item), repetition, str(data.labels[item]), split,
                            str(data.ids[item]), wave, n_wash, n_wash + len(stim)))

    drift = protocol["drift"]
    ref = _reference_item(protocol, data) if drift["reference"] else None
    plays = 0  # reference plays so far
    if ref is not None:
        add(ref, plays, "reference")
        plays += 1
    played = 0  # dataset trials so far
    for rep in range(p["repetitions"]):
        order = rng.permutation(len(data)) if p["order"] == "random" else np.arange(len(data))
        for item in order:
            add(int(item), rep, str(data.split[item]))
            played += 1
            if ref is not None and drift["reference_every"] and played % drift["reference_every"] == 0:
                add(ref, plays, "reference")
                plays += 1
    if ref is not None and trials[-1].split != "reference":
        add(ref, plays, "reference")
    apply_ramp([t.stimulus for t in trials], limits)
    return trials


def _reference_item(protocol: Protocol, data: LabelledSequences) -> int:
    """The dataset position of ``[drift] reference_id`` (empty: the first training item)."""
    ref_id = protocol["drift"]["reference_id"]
    if not ref_id:
        return int(np.flatnonzero(data.split == "train")[0])
    found = np.flatnonzero(data.ids == ref_id)
    if len(found) == 0:
        raise PrclabError(f"{protocol.where}: [drift] reference_id {ref_id!r} is no item played "
                          f"(e.g. {', '.join(map(str, data.ids[:3]))})")
    return int(found[0])


EVENTS = ("run_start", "trial_start", "block_written", "block_read", "trial_end", "run_stop")


class Subscriber:
    """What the runner tells its subscribers: one method per event, called with the event's fields as
    keywords; each does nothing here, so a subscriber overrides those it needs.  Any callable
    ``fn(event, fields)`` subscribes too (``event`` one of :data:`EVENTS`, ``fields`` a dict): this
    class's ``__call__`` is what dispatches.  In the spirit of Bluesky's ``RunEngine.subscribe`` and
    ``CallbackBase``, without documents or a dispatcher.

    Subscribers are called in order, synchronously, on the runner's thread: a slow one slows the run;
    one that raises stops it as a device fault does (outputs to rest, the trials recorded kept).
    """

    def __call__(self, event: str, fields: dict) -> None:
        getattr(self, event)(**fields)

    def run_start(self, *, total: int, done: int, resume: bool) -> None:
        """The run begins: ``total`` trials planned, ``done`` of them already recorded (a resume)."""

    def trial_start(self, *, trial: Trial) -> None:
        """``trial`` (planned: ``stimulus`` only) begins; its mark has been asked of the device."""

    def block_written(self, *, trial: Trial | None, start: int, block: np.ndarray) -> None:
        """``block`` ``(n, n_stimulus)`` volts, rows ``start`` onwards of ``trial``'s stimulus (``trial``
        None: a resume's lead-in), passed the safety monitor and goes to the device when every
        subscriber has returned (one that raises keeps it from the device)."""

    def block_read(self, *, samples: np.ndarray, times: np.ndarray) -> None:
        """``samples`` ``(n, n_response)`` and ``times`` ``(n,)`` seconds, read from the device's
        response stream (the stream, not yet cut into trials)."""

    def trial_end(self, *, trial: Trial, response: list[np.ndarray], times: np.ndarray,
                  state: dict | None, safety: dict | None) -> None:
        """``trial`` was played: ``response`` is its ``(n, n_response)`` response as row blocks in order
        (views of what was read, uncopied: ``np.concatenate`` them), ``times`` ``(n,)`` seconds on the
        device clock, ``state`` the simulated substrate's state after it (None on hardware),
        ``safety`` the safety monitor's state after it (None without a monitor)."""

    def run_stop(self, *, reason: str, note: dict) -> None:
        """The run ended (``reason``: :func:`stop_reason`) with the outputs ramped to rest as ``note``
        says (the session's stop note: ``stopped``, ``outputs_at_rest``, ``rest_V``, ...)."""


class Recorder(Subscriber):
    """The recording writer as a subscriber: each block is logged before the device gets it (the
    resume rebuilds the safety monitor from the log), each finished trial appended (flushed and
    fsync-ed, then the monitor's state checkpointed), and the session's stop note written."""

    def __init__(self, writer: RecordingWriter):
        self.writer = writer

    def block_written(self, *, block: np.ndarray, **_) -> None:
        self.writer.note_delivered(block)

    def trial_end(self, *, trial: Trial, response: list[np.ndarray], times: np.ndarray,
                  state: dict | None, safety: dict | None) -> None:
        t = trial
        self.writer.append(t.index, t.stimulus, response, times, state=state, item=t.item,
                           item_id=t.item_id, label=t.label, split=t.split, repetition=t.repetition,
                           stim_start=t.stim_start, stim_stop=t.stim_stop)
        if safety is not None:
            self.writer.note_safety_state(safety)

    def run_stop(self, *, note: dict, **_) -> None:
        self.writer.note_session(**note)


def _emitter(writer: RecordingWriter | None, subscribers: Iterable) -> Callable[..., None]:
    """``emit(event, **fields)``: tell ``writer`` (as a :class:`Recorder`), then every subscriber, in
    order (the first to raise stops the rest)."""
    subscribers = [*([Recorder(writer)] if writer is not None else []), *subscribers]

    def emit(event: str, **fields) -> None:
        for subscriber in subscribers:
            subscriber(event, fields)
    return emit


class _ResponseStream:
    """The device's response stream as read so far, cut into trials at the marks' positions."""

    def __init__(self, device: Device, emit: Callable[..., None]):
        self.device, self.emit = device, emit
        self.start = 0                       # stream index of buffer[0]
        self.samples: list[np.ndarray] = []
        self.times: list[np.ndarray] = []
        self.end = 0                         # stream index just past the last sample read

    def read(self, n: int) -> None:
        samples, times = self.device.read(n)
        self.emit("block_read", samples=samples, times=times)
        self.samples.append(samples)
        self.times.append(times)
        self.end += len(samples)

    def cut(self, begin: int, n: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Samples ``[begin, begin + n)`` of the stream as a list of views of the blocks read (no copy),
        and their times ``(n,)``, reading more if needed; drops older samples."""
        if begin + n > self.end:
            self.read(begin + n - self.end)
        a = begin - self.start
        if a < 0:
            raise PrclabError(f"{self.device.name}: trial mark at sample {begin} lies before the "
                              f"retained stream (starts at {self.start})")
        out, times, keep, keep_t = [], [], [], []
        pos = 0  # stream index of the current block, relative to self.start
        for samples, t in zip(self.samples, self.times):
            lo, hi = max(a - pos, 0), min(a + n - pos, len(samples))
            if lo < hi:
                out.append(samples[lo:hi])
                times.append(t[lo:hi])
            if hi < len(samples):
                rest = max(hi, 0)
                keep.append(samples[rest:])
                keep_t.append(t[rest:])
            pos += len(samples)
        self.samples, self.times = keep, keep_t
        self.start = begin + n
        return out, np.concatenate(times)


def _mark_position(device: Device, stream: _ResponseStream, label: str, n: int, since: int) -> int | None:
    """Stream index where mark ``label`` came back, reading on (at most ``n`` samples plus 2 s more)
    while it has not: a device that marks "now" (brainflow) puts the mark after the samples it had
    buffered when the host fell behind (a slow disk flush between trials), past the ``n`` read.
    Only events from the ``since``-th on (those after the trial's mark was asked for) are searched."""
    extra, chunk, most = 0, max(1, n // 4), n + int(2 * device.channels.rate_hz)
    while True:
        begin = next((i for i, lab in reversed(device.events(since)) if lab == label), None)
        if begin is not None or extra >= most:
            return begin
        stream.read(chunk)
        extra += chunk


def run_trials(trials: list[Trial], device: Device, writer: RecordingWriter | None, block_samples: int,
               monitor: SafetyMonitor | None = None, substrate=None, lead_in: np.ndarray | None = None,
               resume_state: dict | None = None, subscribers: Iterable = ()) -> None:
    """Play ``trials`` through the open ``device``, telling ``writer`` (as a :class:`Recorder`, first)
    and then ``subscribers`` each ``trial_start``, ``block_written``, ``block_read`` and ``trial_end``.

    Every block is checked by ``monitor``, then announced (``block_written``: the recorder logs it, so
    the resume rebuilds the monitor from it), then written: a refused block is never written, and a
    block handed to the device counts as delivered.

    Args:
        writer: the recording the trials are appended to (None: not recorded, subscribers only).
        monitor: checks every block before ``device.write`` (a refused block is never written).
        substrate: the simulated substrate behind ``device``, whose ``state`` is stored with each trial.
        lead_in: ``(k, n_stimulus)`` volts played before the first trial (a resume's ramp from the
            outputs' level to rest, see :func:`resume_lead_in`); its response is read and dropped.
        resume_state: ``substrate``'s state to restore after the lead-in (a simulated substrate
            resumes where its last trial left it, as if the pause and lead-in were not there).
        subscribers: callables ``fn(event, fields)`` (:class:`Subscriber`).
    """
    emit = _emitter(writer, subscribers)
    stream = _ResponseStream(device, emit)
    if lead_in is not None and len(lead_in):
        if monitor is not None:
            monitor.check(lead_in, lambda row: ("resume lead-in", row))
            monitor.restart_ramp()
        emit("block_written", trial=None, start=0, block=lead_in)
        device.write(lead_in)
        stream.read(len(lead_in))
    if resume_state is not None:
        substrate.load_state(resume_state)
    for trial in trials:
        if not isinstance(trial.stimulus, np.ndarray):  # a recorded trial played again: read it once
            trial = replace(trial, stimulus=np.asarray(trial.stimulus))
        label = f"trial:{trial.index}"
        since = device.n_events
        device.mark(label)
        emit("trial_start", trial=trial)
        wave = trial.stimulus
        for a in range(0, len(wave), block_samples):
            block = wave[a:a + block_samples]
            if monitor is not None:
                monitor.check(block, lambda row, a=a, t=trial: (t.index, a + row))
            emit("block_written", trial=trial, start=a, block=block)
            device.write(block)
            stream.read(len(block))
        begin = _mark_position(device, stream, label, len(wave), since)
        if begin is None:
            raise PrclabError(f"{device.name}: mark {label!r} never came back in the response stream")
        response, times = stream.cut(begin, len(wave))  # response: the trial's blocks, uncopied
        emit("trial_end", trial=trial, response=response, times=times,
             state=None if substrate is None else substrate.state,
             safety=None if monitor is None else monitor.state())


def stop_reason(exc: BaseException | None) -> str:
    """Why a run stopped, in a few words: ``end``, ``interrupted``, ``terminated``, a fault, an error."""
    if exc is None:
        return "end"
    if getattr(exc, "stop_reason", None):
        return str(exc.stop_reason)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    text = next((line for line in str(exc).splitlines() if line.strip()), "")
    if isinstance(exc, DeviceError):
        return f"device fault: {text}"
    return f"error: {type(exc).__name__}: {text}"[:300]


def resume_lead_in(monitor: SafetyMonitor, writer: RecordingWriter, trials: list[Trial],
                   where: str) -> tuple[np.ndarray, list[Trial]]:
    """Bring ``monitor`` to the state after every sample ever delivered in the recorded run, and plan
    the resumed session: returns ``(lead_in, trials)``, checked, to pass to :func:`run_trials`.

    What is physically there at a resume, and what is done about it:

    - delivered so far: the recording's safety log (every block handed to the device, the interrupted
      trial's played part included) - taken in as the monitor's state at the log's last checkpoint
      (:meth:`~protocols.recording.RecordingWriter.safety_resume_point`, stored after each trial) plus
      the rows after it, or the whole log where there is none - then, if the last session's stop ramped
      the outputs to rest, that ramp (from the stop note's ``from_V``, at the sample rate and slew
      limit);
    - the outputs' level now: the rest level if that stop confirmed it; otherwise unknown, and taken to
      be the last sample delivered (a DAC holds its last value until reset; a device power-cycled since
      idles at 0 V instead, which this cannot see);
    - the lead-in: a slew-limited ramp from that level to rest (at least ``REST_RAMP_S``), then - for
      living tissue - rest held for the DC window, so the window restarts from a known state as it does
      in real time during the pause; the start-of-run amplitude ramp is then applied again to the
      resumed trials (copies: the recording holds what is sent).

    The monitor is left at the resume point (lead-in not yet played); the lead-in and trials are checked
    from there, so a resume the limits refuse is refused before the device opens.

    Raises:
        SafetyError: the lead-in or a resumed trial breaks a limit given the run's history.
    """
    lim = monitor.limits
    if not trials:
        return np.zeros((0, lim.n_channels)), trials
    point = writer.safety_resume_point()
    if point is None:
        raise PrclabError(f"recording {writer.path}: holds no safety log of the stimulus delivered "
                          f"(made by an older prclab); it cannot be resumed safely, start a new recording")
    checkpoint, history = point
    if checkpoint is not None:  # the history taken in with no ramp envelope, as a replay of the log is
        monitor.load_state({**checkpoint, "ramp_from": np.array(0)})
    monitor.check(history, lambda row: ("history", row), refuse=False)
    stop = writer.previous_stop()
    if stop.get("outputs_at_rest") and "from_V" in stop:
        monitor.check(rest_ramp(stop["from_V"], lim.rest_V, lim.max_slew_V_per_s, lim.rate_hz),
                      lambda row: ("stop ramp", row), refuse=False)
        level = np.full(lim.n_channels, lim.rest_V)
    else:
        level = monitor.prev.copy()
    lead_in = rest_ramp(level, lim.rest_V, lim.max_slew_V_per_s, lim.rate_hz)
    if np.isfinite(lim.max_dc_C).any():
        lead_in = np.concatenate([lead_in, np.full((lim.dc_window, lim.n_channels), lim.rest_V)])
    trials = [replace(t, stimulus=np.array(t.stimulus)) for t in trials]
    apply_ramp([t.stimulus for t in trials], lim)
    twin = monitor.copy()
    try:
        twin.check(lead_in, lambda row: ("resume lead-in", row))
    except SafetyError as exc:
        raise SafetyError(f"{where}: resume refused, nothing was run: {exc}") from None
    twin.restart_ramp()
    validate_trials(trials, lim, where, twin)
    return lead_in, trials


@contextlib.contextmanager
def _opened(device: Device, writer: RecordingWriter, resume: bool):
    """``with device:``, except that a device that fails to open takes the recording just created for
    it along (closed and removed: an empty file would block the retry's ``--out``)."""
    try:
        device.open()
    except BaseException:
        if not resume and writer.n_done == 0:
            writer.close()
            Path(writer.path).unlink(missing_ok=True)
        raise
    with device:
        yield


@contextlib.contextmanager
def _safe_stop(device: Device, writer: RecordingWriter, monitor: SafetyMonitor | None = None,
               subscribers: Iterable = ()):
    """However the run ends - normal end, Ctrl-C, SIGTERM, device fault, exception, a subscriber that
    raised - drive the outputs to their rest level (ramped, see :meth:`drivers.Device.rest`) and emit
    ``run_stop`` with the session's stop note ``{"stopped": reason, "outputs_at_rest": bool, ...}`` to
    ``writer`` (which stores it in the recording's session entry), then to ``subscribers``.

    The ramp is the fastest the slew limit allows, so the path to rest that passes the least charge;
    ``monitor`` accounts for it (as sampled at the run's rate) after the stream it ends, and a limit it
    still breaks - a phase's charge or the DC balance, on a channel stopped near its limit - is stated in
    the note as ``stop_ramp_violation`` rather than leaving the outputs where they were.

    ``run_stop`` reaches the writer first, so the note is stored before any other subscriber runs; one
    failing on it (the rest are then not told) fails a run that went well, while a run that already
    failed raises its own error."""
    error = None
    try:
        yield
    except BaseException as exc:
        error = exc
        raise
    finally:
        report = device.rest(stop_reason(error))
        if error is not None and not report["stopped"].startswith("device fault"):
            report = {**report, "stopped": stop_reason(error)}
        if monitor is not None and report.get("outputs_at_rest") and "from_V" in report:
            lim = monitor.limits
            problem = monitor.check(rest_ramp(report["from_V"], lim.rest_V, lim.max_slew_V_per_s,
                                              lim.rate_hz), lambda row: ("stop ramp", row), refuse=False)
            if problem:
                report = {**report, "stop_ramp_violation": problem}
        try:
            _emitter(writer, subscribers)("run_stop", reason=report["stopped"], note=report)
        except (OSError, RuntimeError, ValueError, PrclabError):
            if error is None:  # the run itself went well: a recording that cannot take the note fails
                raise


def _each_trial(fn: Callable[[Trial], None]) -> Callable[[str, dict], None]:
    """A subscriber calling ``fn(trial)`` at each ``trial_end`` (after the recorder appended it)."""
    def subscriber(event: str, fields: dict) -> None:
        if event == "trial_end":
            fn(fields["trial"])
    return subscriber


def run_protocol(protocol: Protocol, device: Device, out: str | Path,
                 progress: Callable[[Trial], None] | None = None, substrate: dict | None = None,
                 resume: bool = False, prepared: tuple | None = None, subscribers: Iterable = (),
                 verify: bool = True) -> Path:
    """Run ``protocol`` on ``device`` (opened here) and write the recording ``out``; returns its path.

    Args:
        progress: ``progress(trial)`` after each trial is recorded (a ``trial_end`` subscriber).
        resume: continue the run recorded in ``out`` (made with the same protocol text) after its last
            intact trial, restoring a simulated substrate's state; events are emitted for the trials
            played now (``run_start`` says how many were done before).
        prepared: ``prepare(protocol)``'s result, if the caller already has it.
        subscribers: told every event after the recording writer (:class:`Subscriber`).
        verify: on resume, check every earlier trial's arrays against its checksum, reading them once;
            False: only the last trial's (see :meth:`~protocols.recording.RecordingWriter.resume`).
    """
    data, encoder, trials = prepared or prepare(protocol)
    if device.channels.rate_hz != protocol.rate_hz:
        raise PrclabError(f"{device.name}: runs at {device.channels.rate_hz} Hz, the protocol asks for "
                          f"{protocol.rate_hz} Hz")
    if len(device.channels.stimulus) != protocol["stimulus"]["electrodes"]:
        raise PrclabError(f"{device.name}: has {len(device.channels.stimulus)} stimulus channels, the "
                          f"protocol needs {protocol['stimulus']['electrodes']}")
    sim = getattr(device, "substrate", None)
    limits = safety_limits(protocol, device)
    monitor = SafetyMonitor(limits)
    device.set_rest(limits.rest_V, limits.max_slew_V_per_s)  # where every stop leaves the outputs
    identity = run_identity(protocol.text, data, encoder, device)
    if resume:
        writer = RecordingWriter.resume(out, protocol.text, identity=identity, verify=verify)
    else:
        metadata = {"protocol_text": protocol.text, "rate_hz": protocol.rate_hz,
                    "device": device.describe(), "encoder": encoder.describe(),
                    "substrate": substrate or device.describe().get("substrate", {}),
                    "readout": {"features": protocol["readout"]["features"]},
                    "dataset": data.source, "n_trials_planned": len(trials), "identity": identity}
        writer = RecordingWriter(out, metadata, storage=storage_for(protocol["recording"], device))
    subscribers = [*subscribers, *([_each_trial(progress)] if progress is not None else [])]
    with writer:
        total, done, lead_in = len(trials), writer.n_done, None
        if resume:  # the monitor continues from everything ever delivered; refused before anything runs
            lead_in, trials = resume_lead_in(monitor, writer, trials[done:], protocol.where)
        else:
            validate_trials(trials, limits, protocol.where)  # with this device's limits
        with _opened(device, writer, resume), _safe_stop(device, writer, monitor, subscribers):
            if done and sim is not None and writer.last_state is None:
                raise PrclabError(f"recording {out}: holds no substrate state to resume the simulation from")
            _emitter(writer, subscribers)("run_start", total=total, done=done, resume=resume)
            run_trials(trials, device, writer, protocol["protocol"]["block_samples"], monitor, sim,
                       lead_in, writer.last_state if done and sim is not None else None, subscribers)
    return Path(out)
