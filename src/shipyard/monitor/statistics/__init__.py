"""The statistics of the sequential canary judge: pure functions of counts and samples.

``rates`` holds the always-valid tests of error rates (an mSPRT on the difference of rates,
and the exact test that conditions on errors), ``ranks`` the Mann-Whitney test of latencies
with its alpha budget across looks, ``score`` the Kayenta-like summary. Nothing here reads a
metric, stores a result or imports scipy: the analysis feeds the counts and keeps the state.
"""

from __future__ import annotations

from shipyard.monitor.statistics.decision import (
    BadStatisticInput,
    Decision,
    DecisionKind,
    StatisticsError,
)
from shipyard.monitor.statistics.ranks import (
    MannWhitney,
    alpha_for_look,
    latency_decision,
    mann_whitney,
)
from shipyard.monitor.statistics.rates import RateEvidence, conditional_errors, msprt_rates
from shipyard.monitor.statistics.score import Score, ScoreLabel, score

__all__ = [
    "BadStatisticInput",
    "Decision",
    "DecisionKind",
    "MannWhitney",
    "RateEvidence",
    "Score",
    "ScoreLabel",
    "StatisticsError",
    "alpha_for_look",
    "conditional_errors",
    "latency_decision",
    "mann_whitney",
    "msprt_rates",
    "score",
]
