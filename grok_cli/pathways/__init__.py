"""MoE pathway metrics (Li, Fan, Zhou): D_path, routing consistency and complexity per checkpoint.

metrics: pure functions on routing weights and pathway strings; routing: loading MoE models and
capturing router probabilities and per-sample loss; command: the `grok pathways` task function.
"""
