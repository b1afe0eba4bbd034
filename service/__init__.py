"""Online half: serves top-k movies from the current models/<version>/ over HTTP."""

import os

# Set before TensorFlow (pulled in by scann) is first imported. One BLAS thread: on a busy 2-core box
# multithreaded NumPy turned a 0.4 ms search into 7.9 ms.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
