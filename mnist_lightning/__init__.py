"""MNIST CNN from the Keras notebook, in PyTorch Lightning."""
