"""Anatomical preprocessing: Nipype workflows on antspyx (issue 3, in progress)."""
