"""`grok phase`: Liu et al.'s phase diagram of a sweep over two keys.

    command   the task function: settings and a sweep folder in, phase.csv/json/png out
    plots     the diagram                                      -> phases
    phases    pure: the rule that classifies a job, the majority over seeds
"""
