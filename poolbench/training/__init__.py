"""Training: the protocol's loop (:mod:`.train`), the compiled forward (:mod:`.compile`) and what a
setting name means as a model and a data set (:mod:`.catalog`).
"""
