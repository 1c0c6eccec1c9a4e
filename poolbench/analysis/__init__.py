"""Analysis of finished runs: a sweep's statistics and verdict (:mod:`.sweep_analysis`), the paired
comparison of two poolings (:mod:`.paired`), seed planning (:mod:`.power`), the no-trade-off check
(:mod:`.tradeoff`), a pooling's fingerprint (:mod:`.fingerprint`) and protocol variants
(:mod:`.variants`). Nothing here writes a file or draws.
"""
