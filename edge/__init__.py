"""Edge half of the car detector: runs the int8 score-map CNN on a Raspberry Pi.

Never imports TensorFlow at module level; `training` imports from here so the
workstation report measures exactly the code the Pi runs.
"""

__version__ = "0.1.0"
