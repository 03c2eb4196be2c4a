"""SRGAN/SRResNet training: architectures, data, training loop, checkpoints and metrics.

Importing the package is cheap: torch is imported only by the modules that need it, so the
numpy-only parts (``metrics``, ``images``) stay usable without it.
"""

__version__ = "0.1.0"
