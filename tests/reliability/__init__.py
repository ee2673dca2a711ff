"""Tests of failure behaviour: bad input, model faults, crashes, load and security."""
