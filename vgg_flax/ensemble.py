"""The public names of the ensemble's votes (`vgg_flax.ensemble.hard_vote`, `soft_vote`).

The module itself is `vgg_flax.modes.ensemble`, which also runs `--mode=predict_ensemble`.
"""

from vgg_flax.modes.ensemble import hard_vote
from vgg_flax.modes.ensemble import soft_vote
from vgg_flax.modes.ensemble import tied_classes
