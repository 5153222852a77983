"""Calibration: measure the user's own model once (DiTAccelCalibrate) and keep what was measured (profiles)."""
