"""VGG-11 on your own images: one folder per class, as torchvision's ImageFolder reads them.

  data/photos/train/<class>/*.jpg   (val/<class>/ optional: without it, val_fraction of
                                     each class of train/ is held out, drawn with split_seed,
                                     and listed in <workdir>/held_out.csv)

  python -m input_pipeline.folder_sample --output=data/photos   # or your own folder or zip
  python main.py --config=configs/image_folder.py --config.data_source=data/photos
  python main.py --config=configs/image_folder.py --mode=predict \
      --config.predict_images=data/photos/test --config.explain=True

The first run prepares the folder once into TFRecords under data/tfds (images resized to
image_size; see input_pipeline/image_folder.py), then trains; the last command writes
runs/image_folder/image_predictions.csv, a Grad-CAM heat map per image in explanations/ and
plots/gradcam_grid.png. `--mode=evaluate --config.explain=True` adds the grid of the
validation set's most confident mistakes. On the generated sample (3 classes, 60 + 15
images each) expect validation accuracy about 0.7 after 10 epochs (chance 1/3; the two orange
classes are the ones still confused), the three commands taking about a minute on a 2-core
CPU (tests/test_image_folder.py runs them on a sample learnt in a few epochs).
"""

from configs import default


def get_config():
  """A narrow VGG-11 at 64 px with crop and flip augmentation, on `data_source`."""
  config = default.get_config()
  config.dataset = 'image_folder'
  config.data_dir = 'data/tfds'
  config.image_size = 64
  config.val_fraction = 0.2
  config.model.depth = 11
  config.model.width = 16
  config.model.hidden_units = 256
  config.augment.crop_padding = 4
  config.batch_size = 32
  config.eval_batch_size = 64
  config.num_epochs = 10
  config.early_stopping.patience = 3
  config.log_every_steps = 10
  return config
