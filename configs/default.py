"""Every config field, its default and what it means.

The defaults follow the original PyTorch project (Adam, lr 1e-3, batch 64, 50 epochs,
patience 6, 64 px, random flip, BatchNorm, adaptive max pool to 2x2, no dropout). The other
config files start from `get_config()` here and override a few fields.

  python main.py --config=configs/default.py --workdir=runs/vgg16 \
      --config.data_source=/data/tiny-imagenet-200.zip
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Returns the default configuration (VGG-16 with the original's recipe)."""
  config = ml_collections.ConfigDict()

  # --- Data -------------------------------------------------------------------------------
  config.dataset = 'tiny_imagenet'  # TFDS name; any local image-classification TFDS works.
  config.data_source = ''  # Extracted `tiny-imagenet-200` folder or its zip; '' = download.
  config.data_dir = ''  # TFDS data dir for prepared TFRecords; '' = TFDS default.
  config.train_split = 'train'  # Split to train on.
  config.eval_split = 'validation'  # Split evaluated each epoch (early stopping watches it).
  config.predict_split = 'test'  # Split that --mode=predict writes predictions for.
  # Decoded images in memory after the first epoch: True, False (stream the TFRecords every
  # epoch) or 'auto' (each split that fits `cache_max_gib`); any type, so True parses too.
  config.cache = ml_collections.FieldReference('auto', field_type=object)
  config.skip_corrupt = False  # Skip unreadable images while preparing (and report them).
  config.image_size = 64  # Side the model sees; images are resized when it differs.
  # Generated sample (Tiny ImageNet layout) used when `data_source` is '' and enabled.
  config.sample = ml_collections.ConfigDict()
  config.sample.enabled = False  # Generate and train on a synthetic sample instead.
  config.sample.num_classes = 10  # Classes in the sample.
  config.sample.train_per_class = 100  # Train images per class.
  config.sample.val_per_class = 20  # Validation images per class.
  config.sample.test_images = 100  # Unlabelled test images.
  config.sample.seed = 0  # Seed of the drawing; same seed, same files.
  # Your own images (dataset='image_folder', configs/image_folder.py): without val/, this
  # share of each class of train/ is held out for validation, drawn with `split_seed`.
  config.val_fraction = 0.1  # Share of train/ held out when the folder has no val/.
  config.split_seed = 0  # Seed of that hold-out; same seed, same files held out.

  # --- Datasets larger than memory (cache='auto' streams what does not fit) -----------------
  config.cache_max_gib = 4.0  # 'auto' caches a split when its decoded images fit this (GiB).

  # --- Augmentation (train only; evaluation is deterministic) ------------------------------
  config.augment = ml_collections.ConfigDict()
  config.augment.flip = True  # Random horizontal flip, as the original.
  config.augment.crop_padding = 0  # Random crop after zero-padding this many px; 0 = off.

  # --- Model ------------------------------------------------------------------------------
  config.model = ml_collections.ConfigDict()
  config.model.depth = 16  # 11, 13, 16 or 19 weight layers.
  config.model.conv1x1 = False  # Paper config C: last conv of stages 3-5 is 1x1 (depth 16).
  config.model.batch_norm = True  # Conv -> BatchNorm -> ReLU, as the original.
  config.model.width = 64  # Channels of the first stage (64 = the paper).
  config.model.hidden_units = 4096  # Width of the two hidden dense layers.
  config.model.pool_size = (2, 2)  # Adaptive pool output before the head.
  config.model.pool_type = 'max'  # 'max' (the original's README) or 'avg' (the original's code).
  config.model.dropout_rate = 0.0  # Dropout in the head; 0 = the original.
  config.dtype = 'float32'  # Computation dtype ('float32' or 'bfloat16'); params stay f32.

  # --- Optimisation -----------------------------------------------------------------------
  config.seed = 0  # Seed for initialisation, data order and augmentation.
  config.batch_size = 64  # Global training batch (all devices and processes).
  config.eval_batch_size = 256  # Global evaluation batch.
  config.num_epochs = 50  # Upper bound on epochs; early stopping may end sooner.
  config.optimizer = 'adam'  # 'adam', 'adamw' or 'sgd' (with momentum).
  config.learning_rate = 1e-3  # Peak learning rate.
  config.schedule = 'constant'  # 'constant' or 'cosine' (with linear warm-up).
  config.warmup_epochs = 0  # Linear warm-up length (epochs) for the schedule.
  config.weight_decay = 0.0  # Decoupled for adamw, L2 added to the gradient for sgd.
  config.momentum = 0.9  # SGD momentum.
  config.nesterov = True  # Nesterov momentum for SGD.
  config.label_smoothing = 0.0  # Label smoothing of the cross-entropy.

  # --- Early stopping ---------------------------------------------------------------------
  config.early_stopping = ml_collections.ConfigDict()
  config.early_stopping.patience = 6  # Epochs without improvement before stopping.
  config.early_stopping.min_delta = 0.0  # Improvement smaller than this does not count.

  # --- Starting from PyTorch weights, training as PyTorch does ------------------------------
  config.init_from = ''  # state_dict file (original/torchvision layout) or a workdir; '' = none.
  config.init_head = True  # Keep init_from's last dense layer when the classes match.
  config.model.bn_running_var = 'unbiased'  # BN running var: 'unbiased' (PyTorch), 'biased'.

  # --- Logging and checkpoints ------------------------------------------------------------
  config.log_every_steps = 50  # Train scalars to TensorBoard every N steps.
  config.progress_bar = True  # Progress bar on an interactive terminal.
  config.profile = False  # Trace a few steps with the JAX profiler.
  config.max_checkpoints = 2  # Epochs kept in checkpoints/ and best/ (2: a damaged one falls back).
  config.steps_per_epoch = -1  # -1 = the whole train split; smaller for quick runs.

  # --- Prediction: test-time augmentation and your own images ------------------------------
  config.tta = 'none'  # Evaluate/predict/ensemble: 'none', or 'flip' (mean softmax with mirror).
  config.predict_images = ''  # --mode=predict on these images (file, folder or glob), not a split.
  # Grad-CAM heat maps: predict writes explanations/<image>.png and plots/gradcam_grid.png,
  # evaluate the grid of the validation set's most confident mistakes.
  config.explain = False  # Write Grad-CAM heat maps with --mode=predict / evaluate.
  config.explain_layer = ''  # Conv block to explain, e.g. 'stage4_2'; '' = the last one.

  # --- CPU training speed ----------------------------------------------------------------
  config.cpu_conv_grad = 'xla'  # CPU conv weight grads: 'taps' (per-tap matmuls) or 'xla'.

  # --- Scale: fast restarts and large batches -------------------------------------------------
  config.compilation_cache = True  # Keep compiled steps on disk, so a restart skips compiling.
  config.compilation_cache_dir = ''  # Its folder, private to you; '' = ~/.cache/vgg_flax/jax.
  config.grad_accum_steps = 1  # Micro-batches per step (batch_size split; one optimizer step).
  return config


def vgg_config(depth: int, conv1x1: bool = False) -> ml_collections.ConfigDict:
  """The defaults with `model.depth` and `model.conv1x1` set: the configs of one VGG each."""
  config = get_config()
  config.model.depth = depth
  config.model.conv1x1 = conv1x1
  return config
