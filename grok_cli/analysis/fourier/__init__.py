"""`grok fourier`: Nanda et al.'s progress measures of modular-addition runs, per snapshot.

    command   the task function: settings and run folders in, fourier.csv/json and plots out
    plots     the figures
    measures  pure: Fourier spectra, key frequencies, restricted and excluded losses
"""
