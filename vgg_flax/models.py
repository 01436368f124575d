"""The public names of the VGG family, where users import them (`vgg_flax.models.VGG`).

The module itself is `vgg_flax.core.models`.
"""

from vgg_flax.core.models import adaptive_pool
from vgg_flax.core.models import create_model
from vgg_flax.core.models import VGG
from vgg_flax.core.models import VGG11
from vgg_flax.core.models import VGG13
from vgg_flax.core.models import VGG16
from vgg_flax.core.models import VGG16C
from vgg_flax.core.models import VGG19
