"""Spoken-digit protocols rehearsed through each emulated instrument, via the real client libraries.

The shipped example protocols, cut down to a few digits and items so each run takes seconds to tens of
seconds, are run with ``--emulate`` exactly as a user would; the readout must beat its baseline.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from prclab.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "protocols" / "examples"
#: the demo reads time-averaged responses only; on these 3-digit cut-downs (24-30 test trials) the
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
         "params = { n_outputs = 64, nodes = 400, tau_slow_s = 1.0, coupling_length_mm = 4.0 }":
         "params = { units = 100, leak_rate = 0.1 }"}


@pytest.mark.slow
@pytest.mark.parametrize("spec, example, n_test, replace", [
    ("potentiostat:", "spoken_digits_one_electrode.toml", 24, {}),
    ("nidaq:Dev1", "spoken_digits_demo.toml", 24, {"rest_s = 1.0": "rest_s = 0.3", **MEAN_LAST}),
    ("brainflow:cyton:", "spoken_digits_demo.toml", 30, {**CYTON, **MEAN_LAST}),
], ids=["potentiostat", "nidaq", "brainflow-cyton"])
def test_rehearsal_beats_its_baseline(spec, example, n_test, replace, tmp_path, capsys):
    protocol = cut_down(example, tmp_path, '["0", "1", "2"]', n_test, **replace)
    result = rehearse(protocol, spec, tmp_path, capsys)
    assert result["n_classes"] == 3 and result["n_test"] == n_test
    assert result["accuracy"] > result["baseline_accuracy"]
