"""The core: what every layer may read. The named settings and the training protocol, the spec
strings of poolings, models and data sets, how a command ends, the labels runs are filed under,
atomic writes, how a message quotes user input, and the process-wide state a run depends on.
No torch model code and no folders of runs: those live in the layers above.
"""
