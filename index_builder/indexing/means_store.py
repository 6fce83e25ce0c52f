"""Where a one-pass build keeps what its single forward pass measured until the scores are computed: every
probe's mean activation of every neuron (a memory-mapped file, rows = this process's probes, columns =
layer × neuron), and the pass's running sums (language counts, leg quality) checkpointed beside it.

The store sits beside the output index (`<index>.means/`, one set of files per torchrun rank) unless the user
names another folder. It is written as the pass goes and checkpointed every `CHECKPOINT_SECONDS`: the means
file is flushed first, then `rank<r>.state.npz` (the sums and how many batches they cover) replaces the
previous one atomically, so a checkpoint never names rows that are not on disk. A build interrupted at any
point and started again with the same probes, model and batching resumes after the last checkpoint's batch;
a finished pass is never run again (changing only the selector, `--min-set` or the band re-scores the stored
means). A store whose fingerprint differs (other probes, model, batching or world size) is replaced.

Size: probes × layers × neurons × 4 bytes (float32) or 2 (float16): see docs/results/build-passes.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

CHECKPOINT_SECONDS = 30.0
DTYPES = ("float32", "float16")


def default_dir(out: Path) -> Path:
    """The store's folder for the index `out`: `<out>.means` beside it."""
    return out.with_name(out.name + ".means")


def fingerprint(identity, encoded: Sequence, batching: Mapping[str, object]) -> str:
    """What must be equal for stored means to be reused: the model (its identity and its weight files' sizes
    and times), every encoded probe of this process and the batching (batches are resumed by number)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(asdict(identity), sort_keys=True).encode())
    folder = Path(identity.folder or identity.source)
    if folder.is_dir():
        for f in sorted(folder.iterdir()):
            if f.suffix in (".safetensors", ".bin", ".gguf"):
                st = f.stat()
                digest.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    digest.update(json.dumps(dict(batching), sort_keys=True, default=str).encode())
    for e in encoded:
        digest.update(json.dumps([e.input_ids, e.token_langs, e.content, e.gold, e.direction]).encode())
    return digest.hexdigest()


class MeansStore:
    """One process's stored means (n_probes, n_layers × n_neurons) and its pass checkpoint."""

    def __init__(
        self,
        directory: Path,
        rank: int,
        shape: tuple[int, int, int],
        dtype: str,
        key: str,
        say=lambda _msg: None,
    ):
        if dtype not in DTYPES:
            raise ValueError(f"unknown means dtype {dtype!r} (expected {' or '.join(DTYPES)})")
        self.directory = Path(directory)
        self.shape = shape  # (probes, layers, neurons)
        self.dtype = np.dtype(dtype)
        self._meta = self.directory / f"rank{rank}.json"
        self._means = self.directory / f"rank{rank}.means"
        self._state = self.directory / f"rank{rank}.state.npz"
        self._last_checkpoint = time.monotonic()
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = {"fingerprint": key, "shape": list(shape), "dtype": dtype}
        if self._read_meta() != meta:
            if self._meta.exists():
                say(f"stored means in {self.directory} are from another build: starting the pass afresh")
            for f in (self._meta, self._means, self._state):
                f.unlink(missing_ok=True)
            self._write_atomic(self._meta, json.dumps(meta).encode())
        columns = shape[1] * shape[2]
        if not self._means.exists():
            self._state.unlink(missing_ok=True)  # a checkpoint without its rows names nothing
        mode = "r+" if self._means.exists() else "w+"
        self.means = np.memmap(self._means, dtype=self.dtype, mode=mode, shape=(max(shape[0], 1), columns))

    @property
    def nbytes(self) -> int:
        return self.means.nbytes

    def _read_meta(self) -> dict | None:
        try:
            return json.loads(self._meta.read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _write_atomic(path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def write(self, rows: np.ndarray, means: np.ndarray) -> None:
        """Store one batch: `means` (B, layers, neurons) for the probes `rows`."""
        self.means[rows] = means.reshape(len(rows), -1)

    def resumed(self) -> tuple[int, dict[str, np.ndarray]]:
        """(batches done, the sums at that point) from the last checkpoint; (0, {}) when there is none."""
        if not self._state.exists():
            return 0, {}
        with np.load(self._state) as data:
            sums = {k: data[k] for k in data.files if k != "batches"}
            return int(data["batches"]), sums

    def checkpoint(
        self, batches: int, sums: Callable[[], Mapping[str, np.ndarray]], force: bool = False
    ) -> bool:
        """Record that `batches` batches are stored, with the pass's running `sums()` (read only when a
        checkpoint is written: on a GPU they are a device-to-host copy), when the last checkpoint is older
        than `CHECKPOINT_SECONDS` (or `force`); True when one was written."""
        now = time.monotonic()
        if not force and now - self._last_checkpoint < CHECKPOINT_SECONDS:
            return False
        self.means.flush()  # the rows first: a checkpoint never names rows that are not on disk
        tmp = self._state.with_name(self._state.name + ".tmp.npz")
        np.savez(tmp, batches=np.int64(batches), **sums())
        os.replace(tmp, self._state)
        self._last_checkpoint = now
        return True

    def rows(self, start: int, stop: int, columns: np.ndarray) -> np.ndarray:
        """Probes `start:stop`, the flat (layer × neuron) `columns`, as a float64 array."""
        return np.asarray(self.means[start:stop][:, columns], dtype=np.float64)

    def close(self) -> None:
        """Flush and release the memory map."""
        self.means.flush()
        del self.means

    def remove_files(self) -> None:
        """Delete this process's files (after the index that needed them is written)."""
        for f in (self._meta, self._means, self._state):
            f.unlink(missing_ok=True)


def remove_if_empty(directory: Path) -> None:
    """Delete the store's folder when no process's files are left in it (a user's folder with other files
    in it stays)."""
    with contextlib.suppress(OSError):
        directory.rmdir()
