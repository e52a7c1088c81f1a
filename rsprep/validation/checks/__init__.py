"""The checks of `rsprep validate`, one module each; each has ``run(view, rec, sampling)``."""
