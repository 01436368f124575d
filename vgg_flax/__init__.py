"""vgg_flax: the VGG family for Tiny ImageNet in JAX/Flax.

The subpackages are the layers, each importing only those below it (docs/design.md draws
them; tests/test_imports.py holds the rules):

  cli        the command line of main.py
  modes      evaluate, predict, the ensemble and the results table
  train      the host loop           interop   PyTorch and SavedModel in and out
  workdir    what a workdir holds
  core       the model and its jitted steps (JAX, Flax, optax, clu only)

`plots` draws every figure and `errors` holds the user's config error. The modules
`models`, `convert`, `export` and `ensemble` keep the public names and commands where users
found them; each is a few lines over its subpackage.
"""
