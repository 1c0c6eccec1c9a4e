"""Rendering: the analysis as a report in Markdown, HTML or CSV (:mod:`.report`) with its plots
(:mod:`.plots`), tidy tables (:mod:`.export`), one report of several inputs (:mod:`.merge`) and a
sweep's status grid (:mod:`.status`).
"""
