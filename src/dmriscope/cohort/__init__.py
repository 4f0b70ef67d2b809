"""Cohorts: the synthetic phantom, HCP download and demographics, participants tables."""
