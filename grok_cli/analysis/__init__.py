"""Analysis commands: each reads run or sweep folders (grok_cli.runfolder) and writes an
analysis folder (grok_cli.analysis.output).

One shape for every command `grok <name>`: conf/<name>.yaml names its task function in
`_target_` (first line: `# grok <name>: what it does`), and the function is `main(cfg)` in
`analysis/<name>.py`, or in `analysis/<name>/command.py` when the analysis needs more than one
module (cds, phase, fourier, pathways), its pure computations and plots beside it.
"""
