"""Analysis of finished run folders: step-wise / critical-data-size analysis (`grok cds`)."""
