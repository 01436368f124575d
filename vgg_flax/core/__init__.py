"""What runs on the accelerator, and nothing else: the model, its steps, their sharding.

  models       the VGG family (`VGG`, `VGG11` ... `VGG19`, `adaptive_pool`, `BatchNorm`)
  conv         the convolution with a per-tap weight gradient on the CPU
  preprocess   augmentation, resizing and normalisation inside the jitted step
  metrics      clu metric collections computed inside jit
  steps        the train state, the train and eval steps, evaluation over batches
  factory      builds the model, optimizer, shardings and jitted steps from a config
  sharding     the one-axis `data` mesh

May import JAX, Flax, optax, clu and numpy; imports nothing else of the project (no
TensorFlow, no input pipeline, no workdir), so benchmarks on hosts that carry JAX alone run
the exact steps training runs.
"""
