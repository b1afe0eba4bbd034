"""Offline job: MovieLens files -> two-tower TFRS model -> evaluated, versioned export under models/."""

import os

# TFRS needs Keras 2; this must be set before TensorFlow is first imported anywhere in the process.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
