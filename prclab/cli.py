"""The ``prclab`` command line: demo, run, train, replay, task, characterize, report.

Errors a user can cause print one line (``prclab: error: ...``) and exit with code 2: bad arguments
(numbers are bounded: ``--seeds``, ``--units``, ``--seed``), bad files, and every output path, which is
checked before any work starts (its folder exists and takes a new file, the name is not too long, nothing
is there yet, it is not one of the command's inputs or other outputs).  SIGTERM is handled like Ctrl-C:
the run stops, the device drives its outputs to rest and closes, finished trials are kept (exit 143).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import errno
import importlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

from prclab import __version__

from prclab.errors import PrclabError

DEMO_PROTOCOL = Path(__file__).resolve().parent.parent / "protocols" / "examples" / "spoken_digits_demo.toml"


MAX_SEEDS = 1000
MAX_UNITS = 100_000
MAX_SEED = 2 ** 32 - 1
NAME_MAX_BYTES = 255
PATH_MAX_BYTES = 4000


class UsageError(PrclabError):
    """A bad command line (unknown option, bad value): reported like every other error."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are :class:`UsageError` (one line ``prclab: error: ...``, exit 2)."""

    def error(self, message):
        text = " ".join(str(message).split())
        m = re.match(r"argument ([^:]+): (.*)", text)
        raise UsageError(f"{self.prog}: {m.group(1)} {m.group(2)}" if m else f"{self.prog}: {text}")


def _bounded_int(low: int, high: int):
    def parse(text: str) -> int:
        if not re.fullmatch(r"[+-]?[0-9]{1,30}", text.strip()):  # ASCII digits only, no 1e9 / inf
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number")
        value = int(text.strip(), 10)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, got {value}")
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def _plain_path(path, what: str) -> Path:
    """``path`` as a Path; refuses a NUL byte (the C library would cut the name there)."""
    if "\x00" in str(path):
        raise PrclabError(f"{what} {str(path)[:60]!r}: a path cannot hold a NUL byte")
    return Path(path)


def check_new_file(path, what: str, inputs=(), suffix: str | None = None) -> Path:
    """Check, before any work, that ``path`` can be created as a new file; returns it.

    Refused in one line: a name or path too long, a folder that does not exist or is not writable (a
    probe file is created and removed there), anything already at ``path``, ``path`` equal to one of
    ``inputs``, or (with ``suffix``) another extension.
    """
    p = _plain_path(path, what)
    raw = os.fsencode(str(p))
    if not str(p) or str(p).endswith(os.sep):
        raise PrclabError(f"{what} {str(path)[:80]!r}: give a file name")
    if len(raw) > PATH_MAX_BYTES or any(len(os.fsencode(part)) > NAME_MAX_BYTES for part in p.parts):
        raise PrclabError(f"{what} {str(path)[:60]!r}...: name too long")
    if suffix is not None and p.suffix.lower() != suffix:
        raise PrclabError(f"{what} {p}: must end in {suffix}")
    if os.path.lexists(p):
        kind = "a folder" if p.is_dir() else "a file"
        raise PrclabError(f"{what} {p}: {kind} is already there; choose a new name")
    for other in inputs:
        if other is not None and _same_path(p, Path(other)):
            raise PrclabError(f"{what} {p}: is also an input or another output of this command")
    _check_writable_folder(p.parent if str(p.parent) else Path("."), f"{what} {p}")
    return p


def check_folder(path, what: str) -> Path:
    """An output folder (made later by the command, if missing): its parent must exist; refused if a
    file is there, the name is too long, or no file can be created in it (or in its parent)."""
    p = _plain_path(path, what)
    if len(os.fsencode(str(p))) > PATH_MAX_BYTES or any(
            len(os.fsencode(part)) > NAME_MAX_BYTES for part in p.parts):
        raise PrclabError(f"{what} {str(path)[:60]!r}...: name too long")
    if os.path.lexists(p) and not p.is_dir():
        raise PrclabError(f"{what} {p}: a file is already there, not a folder")
    if not p.is_dir():
        _check_writable_folder(p.parent if str(p.parent) else Path("."), f"{what} {p}")
    else:
        _check_writable_folder(p, f"{what} {p}")
    return p


def _same_path(a: Path, b: Path) -> bool:
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


def _check_writable_folder(folder: Path, what: str) -> None:
    if not folder.is_dir():
        raise PrclabError(f"{what}: folder {folder} does not exist" if not os.path.lexists(folder)
                          else f"{what}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".prclab-probe-")
    except OSError as exc:
        reason = {errno.EACCES: "not writable", errno.EPERM: "not writable",
                  errno.EROFS: "read-only file system", errno.ENOSPC: "disk full"}.get(
                      exc.errno, exc.strerror or type(exc).__name__)
        raise PrclabError(f"{what}: cannot create files in {folder} ({reason})") from None
    os.close(fd)
    os.unlink(probe)


def _check_input_file(path, what: str) -> Path:
    p = _plain_path(path, what)
    if not p.is_file():
        raise PrclabError(f"{what} {str(path)[:200]}: " +
                          ("not found" if not os.path.lexists(p) else "not a regular file"))
    return p


MAX_RESULT_BYTES = 64 << 20
MAX_RESULT_ITEMS = 1_000_000


def check_result_json(path) -> dict:
    """Read a result JSON (``--json`` output) without trusting it: strict JSON (no NaN / Infinity),
    an object, and every field the report draws of the type and shape the report needs.

    Raises ``PrclabError`` naming the file and the first bad field.
    """
    p = Path(path)
    where = f"result {p}"
    if p.stat().st_size > MAX_RESULT_BYTES:
        raise PrclabError(f"{where}: larger than {MAX_RESULT_BYTES >> 20} MiB, not a prclab result")

    def no_constant(name):
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        result = json.loads(p.read_bytes().decode("utf-8"), parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PrclabError(f"{where}: not a JSON result ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(result, dict):
        raise PrclabError(f"{where}: holds no result object")

    def bad(key, what):
        raise PrclabError(f"{where}: field {key!r} {what}")

    def number(key, value, low=-1e300, high=1e300):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            bad(key, f"must be a number in [{low:g}, {high:g}]")

    def numbers(key, value, low=-1e300, high=1e300, length=None):
        if not isinstance(value, list) or not 0 < len(value) <= MAX_RESULT_ITEMS or \
                (length is not None and len(value) != length):
            bad(key, "must be a non-empty list" + (f" of {length}" if length is not None else ""))
        for v in value:
            number(key, v, low, high)

    def names(key, value, length=None):
        if not isinstance(value, list) or not 0 < len(value) <= MAX_RESULT_ITEMS or \
                (length is not None and len(value) != length) or \
                not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
            bad(key, "must be a non-empty list of labels" + (f" of {length}" if length is not None else ""))

    for key in ("accuracy", "baseline_accuracy", "quadratic_baseline_accuracy", "accuracy_mean",
                "baseline_mean", "quadratic_baseline_mean", "minirocket_accuracy", "minirocket_mean",
                "default_accuracy", "default_mean", "cv_score"):
        if key in result:
            number(key, result[key], 0.0, 1.0) if "accuracy" in key else number(key, result[key])
    for key in ("nrmse", "memory_capacity", "nonlinear_capacity", "alpha", "seconds", "seed",
                "accuracy_std", "baseline_std", "quadratic_baseline_std", "nrmse_mean", "nrmse_std", "n_train", "n_test",
                "n_classes", "chance"):
        if key in result:
            number(key, result[key])
    if "labels" in result or "predictions" in result or "classes" in result:
        names("labels", result.get("labels"))
        names("predictions", result.get("predictions"), len(result["labels"]))
        names("classes", result.get("classes"))
        if len(result["classes"]) > 10_000:
            bad("classes", "has more than 10000 classes")
    if "alpha_curve" in result:
        curve = result["alpha_curve"]
        if not isinstance(curve, dict):
            bad("alpha_curve", "must be an object")
        numbers("alpha_curve.alphas", curve.get("alphas"), 1e-300, 1e300)
        numbers("alpha_curve.accuracy", curve.get("accuracy"), 0.0, 1.0, len(curve["alphas"]))
        if "baseline" in curve:
            numbers("alpha_curve.baseline", curve["baseline"], 0.0, 1.0, len(curve["alphas"]))
    if "seeds" in result:
        numbers("seeds", result["seeds"])
        metric = "nrmse" if "nrmse" in result else "accuracy"
        for key in (f"{metric}_per_seed", "baseline_per_seed"):
            if key in result or key.startswith(metric):
                numbers(key, result.get(key), length=len(result["seeds"]))
    if "test_prediction" in result:
        numbers("test_prediction", result["test_prediction"])
        numbers("test_target", result.get("test_target"), length=len(result["test_prediction"]))
        number("nrmse", result.get("nrmse"))
        if not isinstance(result.get("task"), str):
            bad("task", "must be text")
    if "memory_curve" in result:
        numbers("memory_curve", result["memory_curve"])
        number("memory_capacity", result.get("memory_capacity"))
    def entry(key):
        if not isinstance(result[key], dict):
            bad(key, "must be an object")
        return result[key]

    if "impedance" in result:
        z = entry("impedance")
        numbers("impedance.freq_hz", z.get("freq_hz"), 1e-300, 1e300)
        numbers("impedance.magnitude_ohm", z.get("magnitude_ohm"), 0.0, 1e300, len(z["freq_hz"]))
        numbers("impedance.phase_deg", z.get("phase_deg"), -180.0, 180.0, len(z["freq_hz"]))
    if "iv_loops" in result:
        loops = entry("iv_loops")
        numbers("iv_loops.periods_s", loops.get("periods_s"), 1e-300, 1e300)
        numbers("iv_loops.areas_VA", loops.get("areas_VA"), 0.0, 1e300, len(loops["periods_s"]))
        if "amplitude_V" in loops:
            number("iv_loops.amplitude_V", loops["amplitude_V"])
    if "bursts" in result:
        bursts = entry("bursts")
        number("bursts.n_bursts", bursts.get("n_bursts"), 0, 1e12)
        if not isinstance(bursts["n_bursts"], int):
            bad("bursts.n_bursts", "must be a whole number")
        for key in ("burst_rate_hz", "ibi_cv", "recruitment_mean", "burst_duration_mean_s",
                    "fraction_spikes_in_bursts", "rate_per_unit_hz"):
            if bursts.get(key) is not None:
                number(f"bursts.{key}", bursts[key])
        if not isinstance(bursts.get("unit", ""), str):
            bad("bursts.unit", "must be text")
    if "substrate" in result and not isinstance(result["substrate"], (str, dict)):
        bad("substrate", "must be text or an object")
    if isinstance(result.get("substrate"), dict) and not isinstance(result["substrate"].get("model", ""), str):
        bad("substrate.model", "must be text")
    for key in ("dataset", "task", "split", "held_out", "features", "baseline_features",
                "quadratic_baseline_features"):
        value = result.get(f"{key}_per_seed", result.get(key))
        if key in result and not (isinstance(value, (str, int, float)) or
                                  (isinstance(value, list) and all(isinstance(v, str) for v in value))):
            bad(key, "must be text")
    if "problems" in result and not (isinstance(result["problems"], list) and
                                     all(isinstance(v, str) for v in result["problems"])):
        bad("problems", "must be a list of text")
    return result


def _progress_bar(total: int, desc: str, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, disable=None)


def _trial_bar(bar):
    """A runner subscriber moving ``bar`` on: to the trials already recorded at ``run_start`` (a resume;
    not counted in the rate), one per ``trial_end``."""
    def subscriber(event: str, fields: dict) -> None:
        if event == "run_start":
            bar.reset(fields["total"])
            bar.initial = bar.n = fields["done"]
            bar.refresh()
        elif event == "trial_end":
            bar.update(1)
    return subscriber


def _print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    if "recording" in result:
        print(f"recording          {result['recording']}")
    how = "given" if result.get("feature_search") == "given" else "chosen on training trials"
    print(f"test accuracy      {result['accuracy']:.3f}  ({result['n_test']} test / "
          f"{result['n_train']} train, {result['n_classes']} classes, chance {result['chance']:.3f}; "
          f"features {result['features']}, {how})")
    if "baseline_accuracy" in result:  # absent for a recording without stimulus channels
        print(f"baseline accuracy  {result['baseline_accuracy']:.3f}  (same readout on the encoded stimulus, "
              f"no reservoir; features {result['baseline_features']})")
        print(f"quadratic baseline {result['quadratic_baseline_accuracy']:.3f}  (same readout on the stimulus "
              f"and its square, no reservoir; features {result['quadratic_baseline_features']})")
    for problem in result.get("problems", []):
        print(f"warning: {problem}")


def _device_for(protocol, spec: str | None, emulate: bool, allow_network: bool = False):
    """The rig the run drives: ``--device`` (or the protocol's ``[device] spec``), one device or
    ``STIMULATOR+RECORDER`` (:mod:`prclab.protocols.rig`); with ``emulate`` the rig owns the emulators."""
    from prclab.drivers import DeviceRequest
    from prclab.protocols.rig import make_rig

    s = protocol["stimulus"]
    chosen = spec or protocol["device"]["spec"]
    request = DeviceRequest(n_stimulus=s["electrodes"], rate_hz=protocol.rate_hz,
                            stimulus_range_V=(s["low_V"], s["high_V"]),
                            substrate=protocol.substrate_for(chosen),
                            substrate_params=protocol["substrate"]["params"], emulate=emulate,
                            seed=protocol["protocol"]["seed"])
    origin = "--device" if spec else f"the protocol file {protocol.where}"
    return make_rig(chosen, request, allow_network=allow_network, origin=origin)


def _run(protocol_path, out, device_spec=None, emulate=False, resume=False,
         allow_network=False) -> dict:
    from prclab.drivers import DeviceError
    from prclab.protocols.protocol import load_protocol
    from prclab.protocols.runner import prepare, run_protocol
    from prclab.experiments.recorded import train_on_recording

    _check_input_file(protocol_path, "protocol")
    if resume:
        _check_input_file(out, "recording to resume")
    else:
        check_new_file(out, "recording", inputs=[protocol_path])
    protocol = load_protocol(protocol_path)
    device = _device_for(protocol, device_spec, emulate, allow_network)
    prepared = prepare(protocol, device)  # safety limits from the device actually run
    try:
        with _progress_bar(len(prepared[2]), f"{protocol['protocol']['name']} on {device.name}",
                           "trial") as bar:
            # a resume checks the earlier trials' records and the last (torn) trial's arrays, reading a
            # few MB; every trial's arrays are checked against their checksums by the training below
            run_protocol(protocol, device, out, resume=resume, prepared=prepared,
                         subscribers=[_trial_bar(bar)], verify=False)
    except KeyboardInterrupt:
        print(f"prclab: stopped; {_outputs_state(device)}; {out} holds every finished trial; continue "
              f"with: prclab run {protocol_path} --resume {out}", file=sys.stderr)
        raise
    except DeviceError as exc:
        if device.last_stop is not None and not device.last_stop["outputs_at_rest"]:
            raise DeviceError(f"{exc}; WARNING: {_outputs_state(device)}") from None
        raise
    result = train_on_recording(out)
    result["recording"] = str(out)
    return result


def _outputs_state(device) -> str:
    stop = device.last_stop
    if stop is None:
        return "outputs never driven"
    if stop["outputs_at_rest"]:
        return f"outputs ramped to rest ({', '.join(f'{v:g}' for v in stop['rest_V'])} V)"
    return "outputs NOT confirmed at rest (the device did not answer): check the electrodes"


def cmd_demo(args) -> None:
    from prclab.experiments.recorded import plot_confusion

    out_dir = check_folder(args.out_dir, "--out-dir")
    folder = _new_run_folder(out_dir)
    result = _run(DEMO_PROTOCOL, folder / "recording.h5")
    plot_confusion(result, folder / "confusion.png")
    (folder / "result.json").write_text(json.dumps(result, indent=1))
    _print_result(result, False)
    print(f"run folder         {folder}  (recording.h5, confusion.png, result.json)")
    print(f"recording size     {(folder / 'recording.h5').stat().st_size / 1e6:.1f} MB "
          f"(prclab info {folder / 'recording.h5'})")


def _new_run_folder(out_dir: Path) -> Path:
    """``OUT_DIR/demo-YYYYmmdd-HHMMSS`` created exclusively; ``-2``, ``-3``... when two runs start in the
    same second (mkdir is atomic: of two concurrent runs, exactly one gets each name)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        folder = out_dir / (f"demo-{stamp}" if n == 1 else f"demo-{stamp}-{n}")
        try:
            folder.mkdir(exist_ok=False)
            return folder
        except FileExistsError:
            continue
    raise PrclabError(f"--out-dir {out_dir}: 999 demo folders for {stamp} already exist")


def cmd_run(args) -> None:
    if bool(args.out) == bool(args.resume):
        raise PrclabError("run: give exactly one of --out NEW.h5 and --resume REC.h5")
    result = _run(args.protocol, args.out or args.resume, args.device, args.emulate, bool(args.resume),
                  args.allow_network)
    _print_result(result, args.json)


def cmd_loop(args) -> None:
    """``prclab loop``: the closed loop of a protocol with a ``[loop]`` table (protocols.loop)."""
    from prclab.experiments.envs import make_decoder, make_env
    from prclab.protocols.loop import run_loop
    from prclab.protocols.protocol import load_protocol

    _check_input_file(args.protocol, "protocol")
    check_new_file(args.out, "recording", inputs=[args.protocol])
    protocol = load_protocol(args.protocol)
    if not protocol.closed_loop:
        raise PrclabError(f"{protocol.where}: has no [loop] table: run it with prclab run")
    env, baseline = make_env(protocol), make_env(protocol)
    device = _device_for(protocol, args.device, args.emulate, args.allow_network)
    decoder = make_decoder(protocol, len(device.channels.response))
    loop = protocol["loop"]
    total = int(round(loop["duration_s"] / loop["tick_s"]))
    with _progress_bar(total, f"{protocol['protocol']['name']} on {device.name}", "tick") as bar:
        result = run_loop(protocol, device, args.out, env, decoder, baseline_env=baseline,
                          progress=lambda done, _: bar.update(done - bar.n))
    result = {k: None if isinstance(v, float) and v != v else v for k, v in result.items()}  # NaN: none
    result["recording"] = str(args.out)
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:30s} {value:.4g}" if isinstance(value, float) else f"{key:30s} {value}")


def cmd_train(args) -> None:
    from prclab.experiments.recorded import plot_confusion, train_on_recording

    _check_input_file(args.recording, "recording")
    if args.plot:  # before training: a bad plot path must not cost the result
        check_new_file(args.plot, "--plot", inputs=[args.recording], suffix=".png")
    result = train_on_recording(args.recording, args.features)
    if args.plot:
        plot_confusion(result, args.plot)
    _print_result(result, args.json)


def cmd_replay(args) -> None:
    from prclab.protocols.replay import compare_recordings, plot_comparison, replay_recording

    _check_input_file(args.recording, "recording")
    check_new_file(args.out, "--out", inputs=[args.recording], suffix=".h5")
    plot = args.plot or str(Path(args.out).with_suffix(".png"))
    check_new_file(plot, "--plot", inputs=[args.recording, args.out], suffix=".png")
    replay_recording(args.recording, args.substrate, args.out)
    result = compare_recordings(args.recording, args.out)
    result["plot"] = plot
    plot_comparison(result, result["plot"])
    del result["example"]
    if args.json:
        print(json.dumps(result))
        return
    print(f"replayed           {result['n_trials']} trials of {args.recording} into {args.substrate}: "
          f"{args.out}")
    print(f"response match     mean NRMSE {result['mean_nrmse']:.3g}, mean correlation "
          f"{result['mean_correlation']:.3g} over {result['n_channels']} channels  (plot {result['plot']})")


def cmd_export(args) -> None:
    from prclab.protocols.export import EXPORTERS

    _check_input_file(args.recording, "recording")
    suffix = Path(args.out).suffix.lower()
    if suffix not in EXPORTERS:
        raise PrclabError(f"export {args.out}: must end in {' or '.join(EXPORTERS)}")
    check_new_file(args.out, "export", inputs=[args.recording], suffix=suffix)
    result = EXPORTERS[suffix](args.recording, args.out)
    if args.json:
        print(json.dumps(result))
        return
    print(f"exported           {result['n_trials']} trials of {args.recording} to {result['out']} "
          f"({Path(result['out']).stat().st_size / 1e6:.2f} MB)")


def cmd_info(args) -> None:
    from prclab.protocols.recording_info import format_info, problem_line, recording_info

    _check_input_file(args.recording, "recording")
    info = recording_info(args.recording)
    print(json.dumps(info) if args.json else format_info(info))
    problem = problem_line(info)
    if problem:  # truncated, tampered: what it holds is printed above, then one line and exit 2
        raise PrclabError(problem)


def cmd_task(args) -> None:
    from prclab.experiments.tasks import assignments, format_task_result, run_tasks

    result = run_tasks(args.data, args.task, args.substrate, size=args.units, seed=args.seed, seeds=args.seeds,
                       features=args.features, split=args.split, progress_bar=_progress_bar,
                       encoder_params=assignments(args.encoder, "--encoder"),
                       substrate_params=assignments(args.param, "--param"), tune=args.tune)
    print(json.dumps(result) if args.json else format_task_result(result))


def cmd_report(args) -> None:
    from prclab.experiments.report import write_report

    _check_input_file(args.source, "report source")
    if Path(args.source).suffix.lower() == ".json":
        check_result_json(args.source)
    out = check_folder(args.out, "--out")
    if out.is_dir() and any(out.iterdir()):
        raise PrclabError(f"--out {out}: folder is not empty; choose a new or empty folder")
    created = not out.exists()
    try:
        summary = write_report(args.source, args.out)
    except BaseException:
        if created and out.is_dir():  # a refused source leaves no half-made report folder behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    print(f"report             {summary}")


def cmd_characterize(args) -> None:
    from prclab.experiments.characterize import characterize_plan, format_result, plan, plot_files

    substrate, hold, parts = plan(args.substrate, size=args.units, seed=args.seed, impedance_only=args.impedance)
    files = None
    if args.plot:  # every PNG checked before the work
        folder = check_folder(args.plot, "--plot")
        files = plot_files(args.substrate, parts, folder)
        if folder.is_dir():
            for paths in files.values():
                for path in paths:
                    check_new_file(path, "--plot", suffix=".png")
        folder.mkdir(parents=True, exist_ok=True)
    result = characterize_plan(substrate, hold, parts, seed=args.seed, files=files, title=args.substrate)
    print(json.dumps(result) if args.json else format_result(result))


def _add_substrate_arguments(parser) -> None:
    """--substrate, --units, --seed: a simulated substrate by name, size and seed (task, characterize)."""
    parser.add_argument("--substrate", default="esn", help="substrate name (esn, potato, ...)")
    parser.add_argument("--units", type=_bounded_int(1, MAX_UNITS),
                        help=f"substrate size (units / nodes / neurons, 1..{MAX_UNITS})")
    parser.add_argument("--seed", type=_bounded_int(0, MAX_SEED), default=0)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="prclab", description="Physical reservoir computing lab toolkit.")
    p.add_argument("--version", action="version", version=f"prclab {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="spoken digits through a simulated potato (no hardware, no internet)")
    d.add_argument("--out-dir", default="runs", help="where the run folder is created (default: runs)")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("run", help="run a protocol file against a device and record it")
    r.add_argument("protocol", help="protocol TOML file")
    r.add_argument("--out", help="recording to create (HDF5)")
    r.add_argument("--resume", metavar="REC.h5", help="continue the stopped run recorded in REC.h5")
    r.add_argument("--device", help="device spec, overrides the protocol's (e.g. sim:potato, or "
                   "STIMULATOR+RECORDER such as nidaq:Dev1+brainflow:cyton:/dev/ttyUSB0)")
    r.add_argument("--emulate", action="store_true",
                   help="rehearse on the devices' emulators, one simulated substrate behind them all")
    r.add_argument("--allow-network", action="store_true",
                   help="allow a device reached over the network (socket://, rfc2217://, IP boards); "
                        "off by default, since protocol files travel between labs")
    r.add_argument("--json", action="store_true", help="print the result as one JSON object")
    r.set_defaults(func=cmd_run)

    lp = sub.add_parser("loop", help="run a closed-loop protocol ([loop]: sense, act, feedback per tick) "
                        "and record every tick")
    lp.add_argument("protocol", help="protocol TOML file with a [loop] table")
    lp.add_argument("--out", required=True, help="recording to create (HDF5)")
    lp.add_argument("--device", help="device spec, overrides the protocol's (as for prclab run)")
    lp.add_argument("--emulate", action="store_true", help="run on the devices' emulators")
    lp.add_argument("--allow-network", action="store_true", help="allow a device reached over the network")
    lp.add_argument("--json", action="store_true", help="print the result as one JSON object")
    lp.set_defaults(func=cmd_loop)

    t = sub.add_parser("train", help="train and score a ridge readout on a recording")
    t.add_argument("recording", help="recording file (HDF5)")
    t.add_argument("--features", help="feature spec for reservoir and baselines, e.g. mean+last, bins:4 "
                                      "(default: each side's chosen on the training trials from the "
                                      "protocol's and the standard candidates)")
    t.add_argument("--plot", help="write the confusion matrix to this PNG")
    t.add_argument("--json", action="store_true", help="print the result as one JSON object")
    t.set_defaults(func=cmd_train)

    rp = sub.add_parser("replay", help="re-drive a simulated substrate with a recording's stimuli")
    rp.add_argument("recording", help="recording file (HDF5)")
    rp.add_argument("--substrate", required=True, help="simulated substrate (esn, potato, ...)")
    rp.add_argument("--out", required=True, help="recording to create from the simulation (HDF5)")
    rp.add_argument("--plot", help="comparison PNG (default: next to --out)")
    rp.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    rp.set_defaults(func=cmd_replay)

    x = sub.add_parser("export", help="write a recording as NWB (.nwb) or, for EEG-style analysis, MNE (.fif)")
    x.add_argument("recording", help="recording file (REC.h5, or any format prclab reads)")
    x.add_argument("out", help="file to create: OUT.nwb (docs/interop-nwb.md) or OUT.fif (MNE raw)")
    x.add_argument("--json", action="store_true", help="print the result as one JSON object")
    x.set_defaults(func=cmd_export)

    nf = sub.add_parser("info", help="what a recording holds: trials, labels, channels, storage, size, integrity")
    nf.add_argument("recording", help="recording file (REC.h5, or any format prclab reads)")
    nf.add_argument("--json", action="store_true", help="print it as one JSON object")
    nf.set_defaults(func=cmd_info)

    k = sub.add_parser("task", help="whole pipeline on a dataset with a simulated substrate")
    k.add_argument("--data", help="WAV folder ({label}_{speaker}_{index}.wav) or .npz")
    k.add_argument("--task", choices=["narma10", "mackey-glass"], help="time-series regression instead of --data")
    k.add_argument("--seeds", type=_bounded_int(1, MAX_SEEDS), default=1,
                   help=f"runs with seeds --seed.. (mean ± std of the scores; 1..{MAX_SEEDS})")
    k.add_argument("--split", choices=["official", "speaker"], default="official",
                   help="official train/test split, or leave one speaker out (speaker = seed mod speakers)")
    _add_substrate_arguments(k)
    k.add_argument("--features", help="feature spec for reservoir and baselines, e.g. mean+last, "
                                      "bins:4+last (default: each side's chosen on the training trials)")
    k.add_argument("--encoder", action="append", metavar="KEY=VALUE",
                   help="encoder keyword, repeatable, e.g. waveform=rate or samples_per_frame=100 "
                        "(default: the substrate's; keys in docs/protocol-keys.md [encoder])")
    k.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="substrate keyword, repeatable, e.g. recurrent=false (the synapse-ablation control)")
    k.add_argument("--tune", type=_bounded_int(1, 100_000), default=0, metavar="N",
                   help="tune the configuration first: an N-trial sweep (Optuna on a Dask LocalCluster) on "
                        "the training split over the substrate's default space (docs/sweeps.md)")
    k.add_argument("--json", action="store_true", help="print the result as one JSON object")
    k.set_defaults(func=cmd_task)

    o = sub.add_parser("report", help="PNG figures and a Markdown summary of a recording or a result JSON")
    o.add_argument("source", help="recording (REC.h5) or result (RESULT.json from --json)")
    o.add_argument("--out", required=True, help="folder for the figures and summary.md")
    o.set_defaults(func=cmd_report)

    c = sub.add_parser(
        "characterize", help="memory/nonlinear capacity, kernel rank, consistency and the material's own "
        "measurements (impedance, I-V loops, network bursts) of a substrate",
        description="Reservoir metrics with an independent random input on every stimulating electrode "
        "(figures with one shared input under shared_input), and what the substrate can show: an "
        "impedance spectrum (0.1 Hz to 0.8 of Nyquist, 16 points, 5 mV) and I-V loops (0.5 V triangles, "
        "periods 0.1-100 s) where electrode currents are modelled (potato, hydrogel), network bursts of "
        "30 s of spontaneous activity where outputs are spike counts (organoid). Prints the seconds "
        "each part took.")
    _add_substrate_arguments(c)
    c.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    c.add_argument("--plot", metavar="DIR", help="write the PNGs into this folder (created if missing): "
                   "memory curve, Nyquist and Bode plots, I-V loops with loop area over period, spike raster "
                   "with the bursts marked, as the substrate has them")
    c.add_argument("--impedance", action="store_true",
                   help="only the impedance spectrum of stimulating electrode 0 (|Z| and phase per "
                        "frequency; with --plot the Nyquist and Bode PNGs); a substrate without electrode "
                        "currents is refused")
    c.set_defaults(func=cmd_characterize)
    _add_twin_verbs(sub)
    from prclab.experiments import sweep_cmd

    sw = sub.add_parser("sweep", help=sweep_cmd.HELP, description=sweep_cmd.HELP)
    sweep_cmd.add_arguments(sw)
    sw.set_defaults(func=sweep_cmd.main)
    return p


def _add_twin_verbs(sub) -> None:
    """``prclab twin VERB``: one verb per module ``prclab.experiments.twins.cmd_<verb>`` (each defines
    ``HELP``, ``add_arguments(parser)`` and ``main(args)``, its heavy imports inside ``main``), found here
    so a new verb needs no edit of this file."""
    import pkgutil

    from prclab.experiments import twins

    tw = sub.add_parser("twin", help="digital twins of a recorded substrate: fit, check, probe, modules")
    verbs = tw.add_subparsers(dest="twin_verb", required=True)
    for info in sorted(pkgutil.iter_modules(twins.__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            module = importlib.import_module(f"prclab.experiments.twins.{info.name}")
            v = verbs.add_parser(info.name[4:], help=module.HELP, description=module.HELP)
            module.add_arguments(v)
            v.set_defaults(func=module.main)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C, so every ``finally`` / ``with`` runs: the device
    drives its outputs to rest and closes, the recording keeps every finished trial."""

    stop_reason = "terminated (SIGTERM)"


def _raise_terminated(signum, frame):
    raise Terminated()


class _StopSignals:
    """SIGINT and SIGTERM in the main thread.  The first raises (``KeyboardInterrupt`` / ``Terminated``)
    so the run unwinds and the device ramps its outputs to rest; the next one, while stopping, is only
    noted - cutting the ramp short would leave a DC potential on the tissue; one more forces the stop."""

    def __init__(self):
        self.count = 0
        self.previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def handle(self, signum, frame):
        self.count += 1
        if self.count == 2:
            print("prclab: stopping: driving the outputs to rest (signal once more to abandon that)",
                  file=sys.stderr)
            return
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def main(argv: list[str] | None = None) -> int:
    with _StopSignals():
        return _main(argv)


def _main(argv) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except PrclabError as exc:
        print(f"prclab: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Terminated:
        print("prclab: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("prclab: interrupted", file=sys.stderr)
        return 130
    return 0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
