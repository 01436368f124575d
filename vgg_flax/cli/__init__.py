"""The command line of `main.py`: the top layer, which nothing of the library imports.

  flags          the flags, each mode's default config, one-line errors for overrides
  dispatch       runs a mode; the user errors and their exit statuses; process setup
  compile_cache  the persistent compilation cache and the time-to-first-step log line

`flags` imports no JAX or TensorFlow, so a mistake in the flags is answered at once.
May import every layer.
"""
