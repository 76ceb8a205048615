"""Spoken-digit protocols rehearsed through each emulated instrument, via the real client libraries.

The shipped example protocols, cut down to 3 digits and 12 items (24 trials) so each run takes tens of
seconds, are run with ``--emulate`` exactly as a user would.  What a rehearsal must show is that the
instrument path carries the substrate's response: the recorded model, re-driven in-process with the
recorded stimulus (``prclab replay``), gives the recorded response.  Whether the readout beats its
baseline is not asserted: on 12-30 test trials reservoir and baseline are within noise of each other
(measured on 24-30: potentiostat 0.333 / 0.333, Cyton 0.567 / 0.667, NI with the linear-tissue potato
0.833 / 0.833), and the README reports the demo's full-size figures instead.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from prclab.cli import main
from prclab.protocols.replay import compare_recordings, replay_recording

EXAMPLES = Path(__file__).resolve().parent.parent / "protocols" / "examples"
#: the demo reads time-averaged responses only; on these 3-digit cut-downs (12 test trials) the
#: readout also takes each channel's last sample, as the rehearsals were measured with
MEAN_LAST = {'features = "mean"': 'features = "mean+last"'}


def cut_down(example: str, tmp_path: Path, labels: str, max_items: int, **replace: str) -> Path:
    """The example protocol with its [task] table replaced by a few digits and items."""
    text = (EXAMPLES / example).read_text()
    text = re.sub(r"^\[task\]\n(?:(?!\[).*\n)*", f'[task]\ndataset = "builtin:fsdd-subset"\n'
                  f"labels = {labels}\nmax_items = {max_items}\n\n", text, flags=re.MULTILINE)
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / example
    path.write_text(text)
    return path


def rehearse(protocol: Path, spec: str, tmp_path: Path, capsys) -> dict:
    assert main(["run", str(protocol), "--device", spec, "--emulate", "--out", str(tmp_path / "r.h5"),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    print(f"{spec}: accuracy {result['accuracy']:.3f}, baseline {result['baseline_accuracy']:.3f}")
    return result


# the Cyton streams in real time at 250 Hz only (10 ms MFCC frames held for 3 samples, 12 ms) and
# records 8 channels: its emulated substrate is a 100-unit ESN of which the first 8 units are read
CYTON = {"rest_s = 1.0": "rest_s = 0.2", "sample_rate_hz = 1000.0": "sample_rate_hz = 250.0",
         "samples_per_frame = 10": "samples_per_frame = 3", 'name = "potato"': 'name = "esn"',
         "params = { n_outputs = 64 }":
         "params = { units = 100, leak_rate = 0.1 }"}


@pytest.mark.slow
@pytest.mark.parametrize("spec, example, n_test, replace, substrate, min_correlation", [
    ("potentiostat:", "spoken_digits_one_electrode.toml", 12, {}, "esn", 0.999999),
    ("nidaq:Dev1", "spoken_digits_demo.toml", 12, {"rest_s = 1.0": "rest_s = 0.3", **MEAN_LAST}, "potato",
     0.999999),
    # streamed in real time on the emulator's own clock, aligned by markers: a few samples of jitter
    ("brainflow:cyton:", "spoken_digits_demo.toml", 12, {**CYTON, **MEAN_LAST}, "esn", 0.8),
], ids=["potentiostat", "nidaq", "brainflow-cyton"])
def test_rehearsal_records_the_substrate_through_the_instrument(spec, example, n_test, replace, substrate,
                                                                min_correlation, tmp_path, capsys):
    protocol = cut_down(example, tmp_path, '["0", "1", "2"]', n_test, **replace)
    result = rehearse(protocol, spec, tmp_path, capsys)
    assert result["n_classes"] == 3 and result["n_test"] == n_test
    assert 0.0 <= result["baseline_accuracy"] <= 1.0
    replay_recording(tmp_path / "r.h5", substrate, tmp_path / "sim.h5")
    same = compare_recordings(tmp_path / "r.h5", tmp_path / "sim.h5")
    assert same["n_trials"] == 2 * n_test
    assert min(same["correlation"]) > min_correlation, same["correlation"]
