"""The unattended run (fullprocess.py): deciding what is new and doing it; the quiet tick."""
