"""Reporting: the evaluation report in markdown with its chart (`markdown`) and the index's PNG charts
(`charts`)."""
