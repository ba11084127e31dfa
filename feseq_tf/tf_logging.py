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

# Lines TensorFlow writes while it is imported that say nothing to act on.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|I0000 "                                   # INFO lines, despite the log level
    r"|To enable the following instructions:"   # continuation of an INFO line
    r"|E0000 \S+\s+\S+\s+cuda_(platform|executor|dnn|fft|blas)\.cc:\d+\] (failed call to cuInit|Unable to register)"
    r")"
)


def is_noise(line: str) -> bool:
    """Whether a line TensorFlow writes at import is start-up noise (see module docstring)."""
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
