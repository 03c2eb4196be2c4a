"""Runtime (installed as ``srgan_runtime``): tiled, batched upscaling on several backends.

Empty until the runtime issue lands; the folder exists so that the package layout is fixed.
"""
