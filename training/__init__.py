"""Offline job: MovieLens files -> two-tower TFRS model -> evaluated, versioned export under models/."""

from contract import prepare_tensorflow

# Before TensorFlow is first imported anywhere in the process: TFRS needs Keras 2, and quiet default logs.
prepare_tensorflow()
