"""mplug-repro: the mPLUG vision-language model and the harness that reproduces its paper."""

__version__ = "0.1.0"
