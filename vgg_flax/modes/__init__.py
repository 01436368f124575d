"""The modes of `main.py` after training: what a trained workdir is used for.

  predictions     one model's predictions over a split or an array of images
  one_model       --mode=evaluate and --mode=predict (eval_results.json, the CSVs)
  per_class       per-class accuracy and the confusion figure of --mode=evaluate
  own_images      the user's own image files for --mode=predict
  gradcam         Grad-CAM heat maps of evaluate and predict (explain=True)
  ensemble        --mode=predict_ensemble: the members' votes
  results_table   --mode=summary: the original's results table from the members' workdirs

May import every layer below: `core`, `workdir`, `plots`, `train` (its early-stopping rule)
and `input_pipeline`. Only the entry points (`main.py` through `cli`, and the
`vgg_flax.ensemble` names) import it.
"""
