"""Training: the host loop and what happens between its steps.

  loop             epochs, exact evaluation, early stopping, checkpoints, logs
  early_stopping   the stopping rule on the validation loss
  tensorboard_log  TensorBoard's runs, scalars, images and hparams
  init_from        starting from a PyTorch state_dict or another workdir's weights
  interrupts       SIGTERM and Ctrl-C stop at a step boundary

May import `vgg_flax.core`, `vgg_flax.workdir`, `vgg_flax.interop` (to read `init_from`
weights), `vgg_flax.plots` and `input_pipeline`; never `modes` or `cli`.

`train_and_evaluate` is re-exported here: `vgg_flax.train.train_and_evaluate(config,
workdir)` is the public entry point.
"""

from vgg_flax.train.loop import train_and_evaluate
