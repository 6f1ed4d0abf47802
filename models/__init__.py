"""Networks of the pipeline (Pixel2ISDF, PIFu, Temporal PIFu and their blocks).

One subpackage per method, each with a ``get_model(cfg)`` factory; training and generation
live in :mod:`pipeline`. The networks arrive with the training stage.
"""
