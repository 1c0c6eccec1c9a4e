"""Storage: the files of a run folder (:mod:`.rundir`) and of a sweep folder (:mod:`.sweepdir`),
and the experiment trackers a run's epochs are also logged to (:mod:`.tracking`).
"""
