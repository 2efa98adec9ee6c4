"""QC gates: verdicts per image and site, scanner epochs and drift, human decisions."""
