"""Mirage: latent spatial memory for video world models.

`import mirage` stays light: subpackages that need diffusers or transformers import them
inside the functions that load models.
"""

__version__ = "0.1.0"
