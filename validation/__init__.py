"""Fidelity checks of the hardware model against measured training steps (host CPU, H200, published).

``validation.standard`` holds the standard shapes (MLP, CNN, transformer encoder) that sit beside the
suite networks; ``validation.measure`` times real steps; ``validation.host_error`` compares the
committed host measurements with the ``host`` preset's predictions (tracked by ASV).
"""
