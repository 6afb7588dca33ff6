"""`grok cds`: the step-wise / critical-data-size analysis (Zhu et al., Definition 1).

    command   the task function: settings and sweep folders in, tables, cds.json, plots out
    plots     the figures                                      -> stepwise
    stepwise  pure: steps to thresholds per run, Definition 1 per data size
"""
