"""Evaluation of a candidate against the base model and the champion."""
