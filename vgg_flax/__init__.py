"""vgg_flax: the VGG family for Tiny ImageNet in JAX/Flax."""
