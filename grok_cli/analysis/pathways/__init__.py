"""MoE pathway metrics (Li, Fan, Zhou): D_path, routing consistency and complexity per checkpoint.

One module per job of `grok pathways`; imports run one way, top to bottom:

    command      the task function: the flow from config to files
    outputs      csv / json files          -> plots (pathways.png)
    aggregate    memorization, groups, per-group rows, correlations
    checkpoints  moe=local | olmoe_1b_7b | from_run -> Checkpoint list, architecture check
    accuracy     accuracy=FILE or the run's test_acc (runfolder.metrics.read_metrics)
    samples      data.path or the run's training sequences, tokenized
    config       checks of conf/pathways.yaml and conf/moe/
    routing      loading MoE checkpoints, router probabilities + loss in one forward pass
    metrics      pure functions: pathways, D_path, consistency, memorization, correlation
"""
