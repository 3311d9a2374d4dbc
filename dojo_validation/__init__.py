"""Fidelity checks of the hardware model against measured training steps (host CPU, H200, published).

``dojo_validation.standard`` holds the standard shapes (MLP, CNN, transformer encoder) that sit beside
the suite networks; ``dojo_validation.measure`` times real steps; ``dojo_validation.host`` compares
the committed host measurements (``dojo_validation/data``) with the ``host`` preset's predictions
(tracked by ASV). The commands, each with ``--help``: ``python -m dojo_validation.validate_host``,
``python -m dojo_validation.published``, ``python -m dojo_validation.h200.compare_h200`` and, on a
GPU, ``python -m dojo_validation.h200.measure_h200``.
"""
