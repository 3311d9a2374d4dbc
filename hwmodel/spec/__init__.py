"""What the hardware is: chips, fabrics, meshes, precisions, systems and the named presets."""
