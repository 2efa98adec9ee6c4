"""QC gates and self-contained HTML reports."""
