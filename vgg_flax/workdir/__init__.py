"""What a workdir holds, and reading and writing it safely.

  files        the names of its files, `history.csv`, what a trained workdir must hold
  config       the run's config: its checks, `config.json` and the migration of older ones
  checkpoints  orbax's `checkpoints/` (resume) and `best/` (evaluate, predict, export)
  restore      a workdir's `best/` model with the config it was trained with
  lock         one training run per workdir
  disk         disk errors as one line, free-space checks
  atomic       writes that never leave a half-written file

May import `vgg_flax.core`, `vgg_flax.errors`, `configs` and `input_pipeline` (to restore a
model on its data); never `train`, `modes`, `interop` or `cli`.
"""
