"""poolbench: a benchmark and library of global pooling layers for CNN image classifiers."""

__version__ = "0.1.0"
