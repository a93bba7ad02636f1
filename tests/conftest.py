"""Shared test set-up."""

import warnings

# Tests build animations to check their frames without rendering them.
# Matplotlib warns about each such animation when it is garbage-collected,
# which can happen after pytest has stopped capturing warnings, so the
# warning would print after the summary line. It says nothing about sacbook.
warnings.filterwarnings("ignore", message="Animation was deleted without rendering")
