"""Calibrating the GPU kernel models on one's own GPU.

``pytest-dojo calibrate-gpu measure --out FILE`` (:mod:`.measure`, needs CUDA) times kernels in the
shapes and the format of the shipped measurements (``dojo_validation/data/gpu_kernels``) and a few
whole training steps; ``pytest-dojo calibrate-gpu fit FILE --chip NAME`` (:mod:`.fit`, numpy only)
re-fits the kernel models' parameters on that file, writes them with a preset that uses them, and
prints the device's validation table on the rows it was not fitted on. :mod:`.shapes` picks the
shapes; :mod:`.document` is the file's format.
"""
