"""The report: tidy tables from run directories, then text and figures from those tables."""
