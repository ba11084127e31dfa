"""The command lines import TensorFlow without its start-up noise, and keep real errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from feseq_tf.tf_logging import CPP_LOG_LINE, is_noise

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMPORT = "from feseq_tf import tf_logging; tf_logging.import_tensorflow(); print('imported')"


def test_noise_lines_are_recognised_and_errors_are_not():
    assert is_noise("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    assert is_noise("I0000 00:00:1795960963.194338   31360 port.cc:153] oneDNN custom operations are on.\n")
    assert is_noise("E0000 00:00:1795959058.148652   28260 cuda_platform.cc:52] failed call to cuInit: "
                    "INTERNAL: CUDA error\n")
    assert not is_noise("E0000 00:00:1.0   1 op_kernel.cc:1] OP_REQUIRES failed: out of memory\n")
    assert not is_noise("Traceback (most recent call last):\n")
    assert not is_noise("W0000 00:00:1.0   1 something.cc:1] a warning\n")


def _stderr(level: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    out = subprocess.run([sys.executable, "-c", IMPORT], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    assert out.stdout.strip() == "imported"
    return out.stderr


@pytest.mark.slow
def test_import_drops_the_start_up_noise_unless_the_environment_asks_for_it():
    quiet = _stderr(None)
    assert "I0000" not in quiet and "absl::InitializeLog" not in quiet, quiet
    verbose = _stderr("0")  # everything back
    assert "I0000" in verbose  # the noise is real: the filter is what removes it


def test_the_known_harmless_lines_of_a_cpu_machine_are_noise():
    for line in (
        "E0000 00:00:1796677006.6 6020 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
        "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n",
        "I0000 00:00:1796677006.6 6020 cudart_stub.cc:31] Could not find cuda drivers on your "
        "machine, GPU will not be used.\n",
        "W0000 00:00:1796677006.6 6020 onednn_util.cc:12] oneDNN supports DT_INT32 only on "
        "platforms with AVX-512. Falling back to the default Eigen-based implementation if present.\n",
        "I0000 00:00:1796677006.6 6020 dataset.cc:12] The default buffer size is 262144, which "
        "is overridden by the user specified `buffer_size` of 8388608\n",
    ):
        assert is_noise(line), line
        assert CPP_LOG_LINE.match(line), line
    assert not CPP_LOG_LINE.match("error: split 'valid' is empty\n")


FILTERED = """\
import os
from feseq_tf.tf_logging import StderrFilter
f = StderrFilter()
f.start()
os.write(2, b"I0000 00:00:1.0   1 port.cc:153] oneDNN custom operations are on.\\n")
os.write(2, b"a real line\\n")
os.write(2, b"W0000 00:00:1.0   1 x.cc:1] a real warning\\n")
f.stop()
os.write(2, b"after\\n")
"""


def test_stderr_filter_drops_noise_and_keeps_the_rest_in_order():
    out = subprocess.run([sys.executable, "-c", FILTERED], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    assert out.stderr == "a real line\nW0000 00:00:1.0   1 x.cc:1] a real warning\nafter\n"
