"""TensorFlow's C++ log output for the command lines: warnings and errors, not start-up noise.

The CLIs set ``TF_CPP_MIN_LOG_LEVEL=2`` unless the environment sets it (``0`` brings
everything back). TensorFlow 2.21 still writes a few lines while it is imported, before
its logging reads that variable (tensorflow/tensorflow#100442): the absl preamble, INFO
lines (oneDNN, CPU instructions) and, on a machine without a GPU, failed CUDA probes.
:func:`import_tensorflow` imports TensorFlow with the process's standard error captured and
passes on every captured line except those, so a real error at import still shows.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from typing import Any

# A line of TensorFlow's C++ log: severity, date (0000 before absl is initialised), time,
# thread, file:line].
CPP_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+(\.\d+)?\s+\d+ \S+:\d+\] ")

# Lines TensorFlow writes that say nothing to act on: its start-up preamble, INFO lines
# (they appear despite TF_CPP_MIN_LOG_LEVEL), and on a machine without a GPU or without
# AVX-512 the failed CUDA probes and a kernel fallback.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|I\d{4} "                                 # INFO lines, despite the log level
    r"|To enable the following instructions:"   # continuation of an INFO line
    r"|[EW]\d{4} \S+\s+\S+\s+cuda_(platform|executor|dnn|fft|blas|diagnostics)\.cc:\d+\] "
    r"(failed call to cuInit|Unable to register|retrieving CUDA diagnostic|kernel driver)"
    r"|[EW]\d{4} \S+\s+\S+\s+cudart_stub\.cc:\d+\] Could not find cuda drivers"
    r"|[EW]\d{4} \S+\s+\S+\s+\S+\] oneDNN supports DT_\w+ only on platforms with AVX-512"
    r"|[EW]\d{4} \S+\s+\S+\s+\S+\] The default buffer size is \d+, which is overridden"
    r")"
)


def is_noise(line: str) -> bool:
    """Whether a line TensorFlow writes is harmless noise (see module docstring)."""
    return bool(_NOISE.match(line))


def import_tensorflow() -> None:
    """Import TensorFlow for a command line, with C++ logs at warnings and errors.

    Sets ``TF_CPP_MIN_LOG_LEVEL`` to 2 unless set. With a level of 1 or more the import's
    start-up noise is dropped; with 0 (or once TensorFlow is imported) nothing is filtered.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"].strip() in ("", "0"):
        import tensorflow  # noqa: F401

        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for raw in captured:
                line = raw.decode("utf-8", "replace")
                if not is_noise(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


class StderrFilter:
    """Drop TensorFlow's noise lines (:func:`is_noise`) from the process's standard error.

    While started, file descriptor 2 is a pipe that a thread reads line by line, passing
    on every other line (and, at once, text ending in a carriage return: progress bars).
    Child processes inherit the pipe, so their noise is dropped too. The filter works
    below Python (``sys.stderr`` and TensorFlow's C++ logs alike); a command line starts
    it (:func:`feseq_tf.cli.command`), a library never does.
    """

    def __init__(self) -> None:
        self._saved: int | None = None
        self._thread: Any = None

    def start(self) -> None:
        """Route file descriptor 2 through the filter."""
        import threading

        sys.stderr.flush()
        self._saved = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(target=self._pump, args=(read_end, self._saved),
                                         name="stderr-filter", daemon=True)
        self._thread.start()

    @staticmethod
    def _pump(read_end: int, out: int) -> None:
        try:
            StderrFilter._filter_lines(read_end, out)
        except Exception:  # never leave writers blocked on a full pipe: pass the rest on
            while chunk := os.read(read_end, 65536):
                _write_all(out, chunk)
            os.close(read_end)

    @staticmethod
    def _filter_lines(read_end: int, out: int) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(read_end, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                if not is_noise(raw.decode("utf-8", "replace")):
                    _write_all(out, raw + b"\n")
            cut = pending.rfind(b"\r")
            if cut >= 0:  # a progress bar redraws its line: show it now
                _write_all(out, pending[: cut + 1])
                pending = pending[cut + 1:]
        if pending and not is_noise(pending.decode("utf-8", "replace")):
            _write_all(out, pending)
        os.close(read_end)

    def stop(self, timeout: float = 2.0) -> None:
        """Give file descriptor 2 back and pass on what is still in the pipe.

        A child process that still holds the pipe keeps the thread reading (up to
        ``timeout`` seconds are waited for it; the thread is a daemon).
        """
        if self._saved is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved, 2)  # closes the pipe's write end held at 2
        self._thread.join(timeout)
        if not self._thread.is_alive():
            os.close(self._saved)
        self._saved = None


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:  # standard error closed: nothing to tell
        pass
