"""The torch-free base every package of the toolkit builds on (``srgan_runtime.core``).

Errors, atomic file writes and output checks, image reading/writing, metrics, the shared CLI
pieces, the generator file format and the one model description (:func:`describe`). Nothing
here imports torch, the training package or the export package; heavy optional libraries
(onnx) are imported only inside the functions that read their formats.
"""

__version__ = "0.1.0"
