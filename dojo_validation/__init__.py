"""Fidelity checks of the hardware model against measured training steps (host CPU, GPUs, published).

``dojo_validation.standard`` holds the standard shapes (MLP, CNN, transformer encoder) that sit beside
the suite networks; ``dojo_validation.measure`` times real steps; ``dojo_validation.host`` compares
the committed host measurements (``dojo_validation/data``) with the ``host`` preset's predictions
(tracked by ASV); ``dojo_validation.gpu_calibration`` measures one's own GPU and re-fits the kernel
models on it. The commands, each with ``--help``: ``pytest-dojo validate host|published|kernels|steps``
and ``pytest-dojo calibrate-gpu measure|fit``.
"""
