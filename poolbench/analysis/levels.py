"""The statistical constants every analysis reads: one home, so that a test, its interval, its power
and the sentences that describe them always agree.

- ``ALPHA``: the significance level of every test (two-sided tests at ALPHA; Holm keeps the
  chance of any false "significant" in a report's family at most ALPHA), and ``1 - ALPHA`` the
  coverage of every confidence interval (95%); a one-sided bound is at level ALPHA too.
- ``POWER``: the power a seed plan asks for (Cohen 1988, *Statistical Power Analysis*, ch. 2: 0.8).
- ``MARGIN``: the default non-inferiority margin of the no-trade-off check, in accuracy points.
"""

ALPHA = 0.05
POWER = 0.8
MARGIN = 1.0
