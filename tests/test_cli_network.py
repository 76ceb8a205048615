"""A protocol file cannot point prclab at a host: network device specs need ``--allow-network``.

A listening socket on 127.0.0.1 stands for the remote host; it must see no connection unless the user
passed the flag (then the connection is made and fails the handshake with one line, as any bad port).
"""

from __future__ import annotations

import socket
import threading

import pytest

from prclab.drivers import DeviceRequest
from prclab.protocols.rig import make_rig
from prclab.errors import PrclabError
from prclab.cli import main
from test_cli_bad_inputs import PROTOCOL


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.2)
    accepted: list = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            accepted.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    server.close()


def _protocol(tmp_path, toy_npz, spec):
    path = tmp_path / "p.toml"
    path.write_text(PROTOCOL.format(spec=spec, dataset=toy_npz).replace("electrodes = 2", "electrodes = 1")
                    .replace("samples_per_frame = 2", "samples_per_frame = 2\nmultiplex = true"))
    return path


@pytest.mark.parametrize("scheme", ["socket", "rfc2217"])
def test_protocol_file_cannot_open_a_connection_without_the_flag(tmp_path, toy_npz, listener, capsys,
                                                                 scheme):
    port, accepted = listener
    proto = _protocol(tmp_path, toy_npz, f"potentiostat:{scheme}://127.0.0.1:{port}")
    assert main(["run", str(proto), "--out", str(tmp_path / "r.h5")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--allow-network" in err and "protocol file" in err
    # the same spec typed by the user is the user's choice, but still needs the flag
    assert main(["run", str(proto), "--out", str(tmp_path / "r.h5"), "--device",
                 f"potentiostat:{scheme}://127.0.0.1:{port}"]) == 2
    assert "--allow-network" in capsys.readouterr().err
    assert accepted == [] and not (tmp_path / "r.h5").exists()


def test_with_the_flag_the_connection_is_made(tmp_path, toy_npz, listener, capsys):
    port, accepted = listener
    proto = _protocol(tmp_path, toy_npz, f"potentiostat:socket://127.0.0.1:{port}")
    code = main(["run", str(proto), "--out", str(tmp_path / "r.h5"), "--allow-network"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "potentiostat socket://" in err  # no handshake reply
    assert len(accepted) == 1


def test_emulated_devices_ignore_the_address_and_need_no_flag():
    request = DeviceRequest(n_stimulus=1, rate_hz=1000.0, emulate=True)
    make_rig("potentiostat:socket://10.1.2.3:80", request)  # the emulator's pty is used instead
    with pytest.raises(PrclabError, match="allow-network"):
        make_rig("brainflow:synthetic?ip_address=10.1.2.3",
                    DeviceRequest(n_stimulus=1, rate_hz=250.0))
