"""The ``prclab`` command line: demo, run, train, replay, task, characterize, report.

Errors a user can cause print one line (``prclab: error: ...``) and exit with code 2.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import signal
import sys
import threading
from pathlib import Path

from prclab import PrclabError, __version__

DEMO_PROTOCOL = Path(__file__).resolve().parent.parent / "protocols" / "examples" / "spoken_digits_demo.toml"


def _progress_bar(total: int, desc: str, unit: str, initial: int = 0):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                disable=None, initial=initial)


def _print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    if "recording" in result:
        print(f"recording          {result['recording']}")
    print(f"test accuracy      {result['accuracy']:.3f}  ({result['n_test']} test / "
          f"{result['n_train']} train, {result['n_classes']} classes, chance {result['chance']:.3f})")
    print(f"baseline accuracy  {result['baseline_accuracy']:.3f}  (same readout on the encoded stimulus, "
          f"no reservoir)")
    for problem in result.get("problems", []):
        print(f"warning: {problem}")


def _device_for(protocol, spec: str | None, emulate: bool):
    from drivers import DeviceRequest, make_device

    s = protocol["stimulus"]
    request = DeviceRequest(n_stimulus=s["electrodes"], rate_hz=protocol.rate_hz,
                            stimulus_range_V=(s["low_V"], s["high_V"]),
                            substrate=protocol["substrate"]["name"],
                            substrate_params=protocol["substrate"]["params"], emulate=emulate,
                            seed=protocol["protocol"]["seed"])
    return make_device(spec or protocol["device"]["spec"], request)


def _run(protocol_path, out, device_spec=None, emulate=False, resume=False) -> dict:
    from protocols.protocol import load_protocol
    from protocols.recording import read_recording
    from protocols.runner import prepare, run_protocol
    from readouts.recorded import train_on_recording

    protocol = load_protocol(protocol_path)
    device = _device_for(protocol, device_spec, emulate)
    prepared = prepare(protocol)
    done = len(read_recording(out).trials) if resume else 0
    try:
        with _progress_bar(len(prepared[2]), f"{protocol['protocol']['name']} on {device.name}", "trial",
                           done) as bar:
            run_protocol(protocol, device, out, progress=lambda trial: bar.update(1), resume=resume,
                         prepared=prepared)
    except KeyboardInterrupt:
        print(f"prclab: stopped; {out} holds every finished trial; continue with: "
              f"prclab run {protocol_path} --resume {out}", file=sys.stderr)
        raise
    result = train_on_recording(out)
    result["recording"] = str(out)
    return result


def cmd_demo(args) -> None:
    from readouts.recorded import plot_confusion

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(args.out_dir) / f"demo-{stamp}"
    folder.mkdir(parents=True, exist_ok=False)
    result = _run(DEMO_PROTOCOL, folder / "recording.h5")
    plot_confusion(result, folder / "confusion.png")
    (folder / "result.json").write_text(json.dumps(result, indent=1))
    _print_result(result, False)
    print(f"run folder         {folder}  (recording.h5, confusion.png, result.json)")


def cmd_run(args) -> None:
    if bool(args.out) == bool(args.resume):
        raise PrclabError("run: give exactly one of --out NEW.h5 and --resume REC.h5")
    result = _run(args.protocol, args.out or args.resume, args.device, args.emulate, bool(args.resume))
    _print_result(result, args.json)


def cmd_train(args) -> None:
    from readouts.recorded import plot_confusion, train_on_recording

    result = train_on_recording(args.recording, args.features)
    if args.plot:
        plot_confusion(result, args.plot)
    _print_result(result, args.json)


def cmd_replay(args) -> None:
    from protocols.replay import compare_recordings, plot_comparison, replay_recording

    replay_recording(args.recording, args.substrate, args.out)
    result = compare_recordings(args.recording, args.out)
    result["plot"] = args.plot or str(Path(args.out).with_suffix(".png"))
    plot_comparison(result, result["plot"])
    del result["example"]
    if args.json:
        print(json.dumps(result))
        return
    print(f"replayed           {result['n_trials']} trials of {args.recording} into {args.substrate}: "
          f"{args.out}")
    print(f"response match     mean NRMSE {result['mean_nrmse']:.3g}, mean correlation "
          f"{result['mean_correlation']:.3g} over {result['n_channels']} channels  (plot {result['plot']})")


def cmd_task(args) -> None:
    from readouts.tasks import format_task_result, run_tasks

    result = run_tasks(args.data, args.task, args.substrate, size=args.units, seed=args.seed, seeds=args.seeds,
                       features=args.features, split=args.split, progress_bar=_progress_bar)
    print(json.dumps(result) if args.json else format_task_result(result))


def cmd_report(args) -> None:
    from readouts.report import write_report

    print(f"report             {write_report(args.source, args.out)}")


def cmd_characterize(args) -> None:
    from readouts.characterize import characterize_named, format_result, plot_memory_curve

    result = characterize_named(args.substrate, size=args.units, seed=args.seed)
    if args.plot:
        Path(args.plot).mkdir(parents=True, exist_ok=True)
        result["plot"] = str(Path(args.plot) / f"memory_curve_{args.substrate}.png")
        plot_memory_curve(result, result["plot"], title=args.substrate)
    print(json.dumps(result) if args.json else format_result(result))


def _add_substrate_arguments(parser) -> None:
    """--substrate, --units, --seed: a simulated substrate by name, size and seed (task, characterize)."""
    parser.add_argument("--substrate", default="esn", help="substrate name (esn, potato, ...)")
    parser.add_argument("--units", type=int, help="substrate size (units / nodes / neurons)")
    parser.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prclab", description="Physical reservoir computing lab toolkit.")
    p.add_argument("--version", action="version", version=f"prclab {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="spoken digits through a simulated potato (no hardware, no internet)")
    d.add_argument("--out-dir", default="runs", help="where the run folder is created (default: runs)")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("run", help="run a protocol file against a device and record it")
    r.add_argument("protocol", help="protocol TOML file")
    r.add_argument("--out", help="recording to create (HDF5)")
    r.add_argument("--resume", metavar="REC.h5", help="continue the stopped run recorded in REC.h5")
    r.add_argument("--device", help="device spec, overrides the protocol's (e.g. sim:potato)")
    r.add_argument("--emulate", action="store_true", help="start the device's emulator (rehearsal)")
    r.add_argument("--json", action="store_true", help="print the result as one JSON object")
    r.set_defaults(func=cmd_run)

    t = sub.add_parser("train", help="train and score a ridge readout on a recording")
    t.add_argument("recording", help="recording file (HDF5)")
    t.add_argument("--features", help="feature spec (default: the protocol's), e.g. mean+last, bins:4")
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

    k = sub.add_parser("task", help="whole pipeline on a dataset with a simulated substrate")
    k.add_argument("--data", help="WAV folder ({label}_{speaker}_{index}.wav) or .npz")
    k.add_argument("--task", choices=["narma10", "mackey-glass"], help="time-series regression instead of --data")
    k.add_argument("--seeds", type=int, default=1, help="runs with seeds --seed.. (mean ± std of the scores)")
    k.add_argument("--split", choices=["official", "speaker"], default="official",
                   help="official train/test split, or leave one speaker out (speaker = seed mod speakers)")
    _add_substrate_arguments(k)
    k.add_argument("--features", default="mean+last", help="feature spec, e.g. mean+last, bins:4+last")
    k.add_argument("--json", action="store_true", help="print the result as one JSON object")
    k.set_defaults(func=cmd_task)

    o = sub.add_parser("report", help="PNG figures and a Markdown summary of a recording or a result JSON")
    o.add_argument("source", help="recording (REC.h5) or result (RESULT.json from --json)")
    o.add_argument("--out", required=True, help="folder for the figures and summary.md")
    o.set_defaults(func=cmd_report)

    c = sub.add_parser("characterize", help="memory/nonlinear capacity, kernel rank, consistency of a substrate")
    _add_substrate_arguments(c)
    c.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    c.add_argument("--plot", metavar="DIR", help="write the memory curve PNG into this folder")
    c.set_defaults(func=cmd_characterize)
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C, so every ``finally`` / ``with`` runs: the device
    drives its outputs to rest and closes, the recording keeps every finished trial."""

    stop_reason = "terminated (SIGTERM)"


def _raise_terminated(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
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
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
