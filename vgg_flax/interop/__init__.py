"""Models in and out of the project: PyTorch state_dicts both ways, and SavedModels.

  torch_weights  PyTorch state_dict <-> Flax variables (the original's layout and
                 torchvision's), reading and writing the files
  saved_model    a TensorFlow SavedModel of a trained model (jax2tf)
  commands       what `python -m vgg_flax.convert` and `python -m vgg_flax.export` do

May import `vgg_flax.core` and `vgg_flax.workdir`; never `train`, `modes` or `cli`.
"""
