"""The training <-> service contract: the version directory, its pointer files and the ratings store.

Both `training` and `service` import this package; it imports neither of them, nor TensorFlow.
"""
