"""How a format 3 recording stores a trial's arrays: the response in the device's native representation,
every array chunked and compressed with a filter plain h5py reads with no plugin.

- **response**: integer counts with their ``conversion`` and ``offset`` (dataset attrs, one per channel;
  a value is ``offset + conversion * count`` in the channel's unit, as NWB's ``ElectricalSeries``) where
  the device declares its converter (:attr:`prclab.drivers.base.Device.adc`: NI inputs 16 bits over
  their range, a Cyton's 24 bits) or the protocol gives a ``[recording] resolution``; each trial's
  counts in the smallest of int16 / int32 that holds them.  float32 for a simulated substrate, float64
  for a measured device that declares no converter (a potentiostat's MethodSCRIPT values carry their
  own SI prefix per sample: no fixed conversion).  A trial whose response does not fit its counts
  (NaN/inf, beyond int32) is stored float64, as measured.
- **stimulus** and **timestamps**: float64 (the volts sent, the device clock), compressed.
- **chunks** of at most :data:`CHUNK_BYTES`, byte shuffle then gzip level :data:`GZIP_LEVEL`
  (:data:`COUNTS_GZIP_LEVEL` for counts; every HDF5 build has both) or lzf (ships with h5py), or none.

Measured on 20 trials of the demo (64 potato channels, 1 kHz; ``tests/test_recording_storage.py`` has
no timing): shuffle+gzip-1 keeps 0.83 of float32 responses (gzip-4: 0.83, gzip-6: 0.82, at half the
speed), lzf 0.89; counts of 5 uV in int16: 1.15 bytes a sample (0.14 of float64); float64 stimulus
0.039 (held MFCC frames).  Level 1 for floats: the higher levels buy about 1 % for twice the time;
level 4 for counts, where it buys 6.5 % (:data:`COUNTS_GZIP_LEVEL`).

The reader gives back float64 in the channels' units whatever is stored (:func:`decode`).  The trial
checksum of format 3 covers the STORED values (their dtype, shape, bytes) and the conversion, so an
edited count or conversion fails it.  Each dataset's chunks are listed in the trial's record (byte
offset, size, filter mask), so a file HDF5 cannot open is still read from its bytes
(:func:`from_chunks`, which decompresses them through an in-memory HDF5 file: no codec of our own).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import h5py
import numpy as np

from prclab.errors import PrclabError

from .schema import Key, Table

COMPRESSIONS = ("gzip", "lzf", "none")
DTYPES = ("auto", "float32", "float64", "counts")
GZIP_LEVEL = 1
"""gzip level of float arrays: measured on the demo's float32 responses, levels 4 and 6 save about 1 %
more at half the speed."""
COUNTS_GZIP_LEVEL = 4
"""gzip level of integer counts: on the demo's int16 responses (20 uV counts, 512-row chunks, 42 of its
420 trials) shuffle+gzip keeps 0.446 of the bytes at level 1, 0.417 at level 4 (1.6x the time), 0.402
at level 6 (4x); level 4 brings the demo recording under 50 MB (48.9 MB, 51.4 at level 1).  Its cost
on a loaded 2-core machine: ``bench_runner.py --noise 1e-4 --dtype counts --resolution 1e-5
--compression gzip`` ran 9.9 M channel-samples/s (387 MB) at level 4, 13.5 M (418 MB) at level 1."""
CHUNK_BYTES = 64 << 10
"""Largest chunk, bytes: reading a few rows decompresses 64 kB, not the trial (deflate's window is
32 kB, so larger chunks compress no better)."""
_INT_TYPES = (np.dtype("<i2"), np.dtype("<i4"))

RECORDING_TABLE = Table("recording", (
    Key("dtype", str, "auto", choices=DTYPES,
        doc="response storage: auto (the device's ADC counts, float32 for a simulated substrate, else "
            "float64), float32, float64, or counts of resolution"),
    Key("resolution", float, 0.0, unit="response unit", low=0, high=1e6,
        doc="counts: the size of one count (V or A; 0: the device's ADC step)"),
    Key("compression", str, "gzip", choices=COMPRESSIONS,
        doc="filter of every trial array: gzip (any HDF5 reader), lzf (h5py) or none")),
    "How the recording stores each trial (protocols.recording_storage); the reader returns float64 in "
    "the channels' units whatever is stored.")


@dataclass(frozen=True)
class Storage:
    """A recording's storage choice, stored as the file attr ``storage`` (JSON) and used by resume.

    Attributes:
        response: ``"float32"``, ``"float64"`` or ``"counts"``.
        conversion, offset: with counts, per response channel (a value is ``offset + conversion *
            count``); one value applies to every channel.
        compression: ``"gzip"``, ``"lzf"`` or ``"none"``.
    """

    response: str = "float64"
    conversion: tuple = ()
    offset: tuple = ()
    compression: str = "gzip"

    def __post_init__(self):
        if self.response not in ("float32", "float64", "counts") or self.compression not in COMPRESSIONS:
            raise PrclabError(f"recording storage {self.response!r}/{self.compression!r} is not one prclab "
                              f"writes")
        conv = np.asarray(self.conversion, dtype=np.float64)
        if self.response == "counts" and not (conv.size and np.isfinite(conv).all() and (conv > 0).all()
                                              and np.isfinite(np.asarray(self.offset, float)).all()):
            raise PrclabError("recording storage: counts need a positive, finite conversion")

    def describe(self) -> dict:
        return {"response": self.response, "conversion": [float(c) for c in self.conversion],
                "offset": [float(o) for o in self.offset], "compression": self.compression}

    @classmethod
    def from_description(cls, d) -> "Storage":
        """The storage a file's ``storage`` attr describes; format 2 files (no attr): float64."""
        if d is None:
            return cls()
        try:
            return cls(str(d["response"]), tuple(float(c) for c in d.get("conversion", ())),
                       tuple(float(o) for o in d.get("offset", ())), str(d["compression"]))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise PrclabError("recording: its storage attribute is damaged") from None


def storage_for(table: dict | None, device) -> Storage:
    """The :class:`Storage` of a run: the protocol's ``[recording]`` ``table`` (None: defaults) on
    ``device`` (its ``adc``; a simulated substrate is ``device.substrate``)."""
    table = {"dtype": "auto", "resolution": 0.0, "compression": "gzip", **(table or {})}
    dtype, compression, resolution = table["dtype"], table["compression"], float(table["resolution"])
    adc = getattr(device, "adc", None)
    n = len(device.channels.response)
    if dtype == "counts" and resolution > 0:
        return Storage("counts", (resolution,) * n, (0.0,) * n, compression)
    if dtype == "counts" and not adc:
        raise PrclabError(f"[recording] dtype = \"counts\" needs a resolution: {device.name} declares no "
                          f"ADC")
    if dtype == "counts" or (dtype == "auto" and adc):
        return Storage("counts", tuple(a.conversion for a in adc), tuple(a.offset for a in adc), compression)
    if dtype == "auto":
        dtype = "float32" if getattr(device, "substrate", None) is not None else "float64"
    return Storage(dtype, (), (), compression)


def encode_response(blocks: list[np.ndarray], storage: Storage, cols: int) -> tuple[np.ndarray, dict | None]:
    """The response's row ``blocks`` as stored: (one array, ``{"conversion", "offset"}`` per channel or
    None).  Counts go to int16 where every one fits, else int32; a trial that does not fit (non-finite,
    beyond int32) is float64, as measured."""
    rows = sum(len(b) for b in blocks)
    if storage.response != "counts":
        out = np.empty((rows, cols), storage.response)
        _fill(out, blocks, lambda b: b)
        return out, None
    conv = np.broadcast_to(np.asarray(storage.conversion, np.float64), (cols,))
    off = np.broadcast_to(np.asarray(storage.offset or (0.0,), np.float64), (cols,))
    counts = np.empty((rows, cols), np.float64)
    _fill(counts, blocks, lambda b: np.rint((b - off) / conv))
    lim = np.iinfo(np.int32)
    if not (np.isfinite(counts).all() and (counts.size == 0 or lim.min <= counts.min() and counts.max()
                                              <= lim.max)):
        out = np.empty((rows, cols), np.float64)
        _fill(out, blocks, lambda b: b)
        return out, None
    small = counts.size == 0 or (-32768 <= counts.min() and counts.max() <= 32767)
    return counts.astype(_INT_TYPES[0 if small else 1]), {"conversion": conv.copy(), "offset": off.copy()}


def _fill(out: np.ndarray, blocks, f) -> None:
    row = 0
    for b in blocks:
        out[row:row + len(b)] = f(np.asarray(b, dtype=np.float64))
        row += len(b)


def decode(stored: np.ndarray, scale: dict | None, shape: tuple, selection=()) -> np.ndarray:
    """``stored`` (the dataset of ``shape`` read at ``selection``) in float64 physical units."""
    out = np.asarray(stored, dtype=np.float64)
    if scale is None:
        return out
    full = shape if len(shape) == 2 else (*shape, 1)
    conv = np.broadcast_to(np.asarray(scale["conversion"], np.float64), full)
    off = np.broadcast_to(np.asarray(scale["offset"], np.float64), full)
    if len(shape) != 2:
        conv, off = conv[..., 0], off[..., 0]
    return out * conv[selection] + off[selection]


def scale_of(ds: h5py.Dataset) -> dict | None:
    """A stored dataset's ``{"conversion", "offset"}`` (integer counts) or None (floats), checked."""
    if ds.dtype.kind == "f":
        return None
    if ds.dtype not in _INT_TYPES or ds.ndim != 2:
        raise PrclabError(f"stored as {ds.dtype} {ds.shape}, which prclab does not write")
    scale = {k: np.asarray(ds.attrs[k], np.float64).reshape(-1) for k in ("conversion", "offset")}
    if any(v.shape != (ds.shape[1],) or not np.isfinite(v).all() for v in scale.values()):
        raise PrclabError("its conversion/offset attrs do not match its channels")
    return scale


def filters(compression: str, counts: bool = False) -> dict:
    """h5py ``create_dataset`` keywords of ``compression``: byte shuffle, then gzip (level
    :data:`GZIP_LEVEL`, :data:`COUNTS_GZIP_LEVEL` for integer ``counts``) or lzf (none: {})."""
    if compression == "none":
        return {}
    level = COUNTS_GZIP_LEVEL if counts else GZIP_LEVEL
    return {"shuffle": True, "compression": compression,
            "compression_opts": level if compression == "gzip" else None}


def write_array(group: h5py.Group, key: str, data: np.ndarray, scale: dict | None,
                compression: str) -> h5py.Dataset:
    """``data`` as dataset ``key``: chunked rows of at most :data:`CHUNK_BYTES`, byte-shuffled and
    compressed (``compression``), ``conversion`` / ``offset`` attrs with counts."""
    kw = {}
    if data.size:
        row_bytes = data.itemsize * int(np.prod(data.shape[1:], dtype=np.int64))
        kw["chunks"] = (max(1, min(len(data), CHUNK_BYTES // max(1, row_bytes))), *data.shape[1:])
        kw.update(filters(compression, counts=data.dtype.kind == "i"))
    ds = group.create_dataset(key, data=data, **kw)
    if scale is not None:
        ds.attrs["conversion"], ds.attrs["offset"] = scale["conversion"], scale["offset"]
    return ds


def chunk_spec(ds: h5py.Dataset, scale: dict | None) -> dict:
    """What the trial's record holds of a written (flushed) dataset: dtype, shape, chunk shape, filter
    and every chunk's ``[byte offset, size, filter mask, *position]``; the conversion with counts."""
    spec = {"dtype": ds.dtype.str, "shape": list(ds.shape), "chunk_shape": list(ds.chunks or ()),
            "compression": ds.compression or "none", "shuffle": bool(ds.shuffle), "chunks": []}
    if ds.chunks is not None:
        def add(info):
            spec["chunks"].append([int(info.byte_offset), int(info.size), int(info.filter_mask),
                                   *map(int, info.chunk_offset)])
        if hasattr(ds.id, "chunk_iter"):  # h5py >= 3.8: one pass over the chunk index
            ds.id.chunk_iter(add)
        else:
            for i in range(ds.id.get_num_chunks()):
                add(ds.id.get_chunk_info(i))
    if scale is not None:
        spec["scale"] = {k: [float(x) for x in v] for k, v in scale.items()}
    return spec


def from_chunks(buf, spec: dict) -> tuple[np.ndarray, dict | None] | None:
    """A dataset read back from the file's bytes ``buf`` by its record ``spec`` (:func:`chunk_spec`),
    without the file's HDF5 structures: the chunks are handed, as stored, to a dataset of the same
    layout in an in-memory HDF5 file (so HDF5's own filters decompress them).  (stored array, scale)
    or None if a chunk is cut off or damaged."""
    try:
        dtype, shape = np.dtype(spec["dtype"]), tuple(int(s) for s in spec["shape"])
        scale = spec.get("scale")
        if scale is not None:
            scale = {k: np.asarray(scale[k], np.float64) for k in ("conversion", "offset")}
        if dtype.kind not in "fi" or not shape or int(np.prod(shape)) == 0:
            return (np.zeros(shape, dtype), scale) if dtype.kind in "fi" else None
        compression = spec["compression"]
        if compression not in COMPRESSIONS:
            return None
        with h5py.File(f"prclab-recover-{id(buf)}", "w", driver="core", backing_store=False) as f:
            kw = {} if compression == "none" else {"compression": compression}
            ds = f.create_dataset("x", shape, dtype, chunks=tuple(int(c) for c in spec["chunk_shape"]),
                                  shuffle=bool(spec["shuffle"]), **kw)
            for at, size, mask, *pos in spec["chunks"]:
                if at < 0 or size < 0 or at + size > len(buf) or len(pos) != len(shape):
                    return None
                ds.id.write_direct_chunk(tuple(pos), bytes(buf[at:at + size]), int(mask))
            return ds[()], scale
    except (KeyError, TypeError, ValueError, OSError, RuntimeError, OverflowError):
        return None


def stored_digest(arrays) -> str:
    """sha256 over each stored array's dtype, shape and little-endian bytes (format 3's
    ``arrays_sha256``)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        h.update(f"{a.dtype.str}{list(a.shape)}".encode())
        h.update(a.reshape(-1).view(np.uint8) if a.size else b"")
    return h.hexdigest()


def storage_of(specs: list) -> dict:
    """The part of each array's layout a format 3 checksum covers: dtype, shape and conversion."""
    return {key: {"dtype": s["dtype"], "shape": list(s["shape"]),
                  "scale": {k: [float(x) for x in v] for k, v in s["scale"].items()} if s.get("scale")
                  is not None else None} for key, s in specs}
