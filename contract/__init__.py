"""The training <-> service contract: the version directory, its pointer files and the ratings store.

Both `training` and `service` import this package; it imports neither of them, nor TensorFlow. Both also load
TensorFlow the same way, set once here by `prepare_tensorflow` before either imports it.
"""

import logging
import os
from pathlib import Path

# Device nodes of an NVIDIA driver (Linux, containers given a GPU) and of WSL2's GPU.
_GPU_DEVICE_NODES = ("/dev/nvidiactl", "/dev/dxg")


def prepare_tensorflow() -> None:
    """Set how TensorFlow loads; call before it is first imported anywhere in the process.

    Keras 2 (tf-keras): TFRS needs it and the exported towers are written with it. TensorFlow's own logs at
    the default level keep warnings and errors but not the lines every run prints: its C++ INFO lines, the
    `cuInit` error of a machine without a GPU (C++ errors are kept where a GPU device exists: there a failed
    cuInit means the GPU goes unused), and absl/TensorFlow Python INFO such as SavedModel's renamed captured
    inputs. A failure still raises a Python exception with TensorFlow's message. `TF_CPP_MIN_LOG_LEVEL=0`
    shows everything again, C++ and Python INFO alike; 1 or 2 show C++ warnings or errors.
    """
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    has_gpu = any(Path(node).exists() for node in _GPU_DEVICE_NODES)
    if os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if has_gpu else "3") == "0":
        return
    from absl import logging as absl_logging  # absl-py comes with TensorFlow; importing it does not load TF

    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
