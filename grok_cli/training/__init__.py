"""Training: the loop, `grok run`, and whose run a checkpoint is (identity keys); the run
folder's files themselves are grok_cli.runfolder's."""
