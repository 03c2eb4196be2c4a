"""Export stage (installed as ``srgan_export``): ONNX and TensorRT export of generator files.

Empty until the export issue lands; the folder exists so that the package layout is fixed.
"""
