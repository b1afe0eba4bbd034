"""Online half: serves top-k movies from the current models/<version>/ over HTTP."""

import os

from contract import prepare_tensorflow

# Before TensorFlow (pulled in by scann) is first imported: Keras 2 and quiet default logs. One BLAS thread:
# on a busy 2-core box multithreaded NumPy made a search many times slower (docs/serving-speed.md).
prepare_tensorflow()
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
