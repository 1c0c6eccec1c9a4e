"""Execution: one run end to end (:mod:`.runner`), sweeps of runs (:mod:`.sweep_runner`) and how their
runs are started (:mod:`.executors`: local processes or Ray tasks), with the device, signal and
GPU memory handling they need. Above it only poolbench.cli; below it the analysis, the run and
sweep folders (poolbench.storage.rundir, poolbench.storage.sweepdir) and the library (train, pools, models, data).
"""
