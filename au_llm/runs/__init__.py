"""Run folders: their layout and the Run that reads and writes their records."""
