"""Model cards, checkpoint loaders, the loaded-model wrapper and the model registry."""
