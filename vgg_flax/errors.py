"""The error a user fixes from its message alone: a config value that cannot work.

It lives apart, with nothing to import, because every layer raises it and `main.py` must
answer a mistake in its flags before it imports JAX or TensorFlow.
"""


class ConfigError(ValueError):
  """A config value that cannot work; the message names the field."""
