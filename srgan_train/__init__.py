"""SRGAN/SRResNet training: the generator's torch definition, data, training loop and
checkpoints. Errors, files, images and metrics come from the torch-free base,
:mod:`srgan_runtime.core`."""

from srgan_runtime.core import __version__

__all__ = ["__version__"]
