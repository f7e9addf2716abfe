"""The apptainer tests: ``test_in_container.py`` runs ``inner/`` inside the provisioned container.

The inner tests talk to a real Apptainer; they are collected only where one is meant to run
(``NBCORE_APPTAINER_INNER=1``, set by ``inner/enter.sh``; set it yourself on a machine with
Apptainer to run them there directly).
"""
import os

collect_ignore = [] if os.environ.get("NBCORE_APPTAINER_INNER") == "1" else ["inner"]
