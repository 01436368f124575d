"""The original project's five models vote on the test images; their results table.

  python main.py --mode=predict_ensemble --workdir=runs/ensemble
  python main.py --mode=summary --workdir=runs/ensemble

Both modes use this config when --config is not given.

Train the members first, each into its workdir under runs/ (e.g.
`python main.py --config=configs/vgg11.py --workdir=runs/vgg11`). Each member is rebuilt
from the config saved in its workdir and restored from its `best/` checkpoint, so members
may differ in depth, width or image size. The data section (`dataset`, `data_source`,
`data_dir`, `sample`) is this config's when `data_source` is set (or `sample.enabled`), else
the first member's. Writes into the workdir: `ensemble_predictions.csv` (test split, the
original's columns `images, 11, 13, 16, 16_C11, 19` plus `mode_pred`, `soft_pred`,
`class_pred`, `class_words`), `ensemble_validation_predictions.csv` (the same with `label`),
`ensemble_report.json` (validation top-1 of each member and of both votes, agreement, the
tie rule) and `sample_predictions.png`. `--mode=summary` writes `summary.csv`, `summary.md`
and `plots/summary_val_accuracy.png` (one row and one curve per member). Other members:

  --config.members="(('a', 'runs/a'), ('b', 'runs/b'))"
"""

from configs import default


def get_config():
  """The defaults plus the members, in the original's order (its ties go to the first)."""
  config = default.get_config()
  # (name, workdir) pairs; the name is the member's CSV column. With the default tie_break
  # the earliest member's class wins a tie, so the order matters: the original's is kept.
  config.members = (
      ('11', 'runs/vgg11'),
      ('13', 'runs/vgg13'),
      ('16', 'runs/vgg16'),
      ('16_C11', 'runs/vgg16_c11'),
      ('19', 'runs/vgg19'),
  )
  config.num_sample_images = 16  # Test images in sample_predictions.png (the original: 4).
  # --- Ties of the hard vote ---
  # 'first_member': the earliest member's class among the tied ones (the original's README);
  # 'lowest_class': the smallest tied class index (its code and its published CSV).
  config.tie_break = 'first_member'
  return config
