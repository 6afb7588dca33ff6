"""One file per `optimizer=` choice, named by its config file's `_target_`: a builder
`build_<name>(cfg, params, **common) -> torch.optim.Optimizer`, `common` holding lr,
weight_decay and foreach. The lr schedule, ⊥Grad and the shared checks are training/optim.py's.
"""
