"""Rendering of the paper's tables (`tables`) and figures."""
