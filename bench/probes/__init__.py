"""Synthetic capability probes: small matched models trained on the tasks where SSMs and attention differ.

tasks.py generates the data (seeded, on the fly); models.py builds the matched Mamba and
Transformer and the differentiable forward used to train them; train.py is the training loop and
the accuracy measure. bench/scenarios/probe.py puts them in the harness.
"""
