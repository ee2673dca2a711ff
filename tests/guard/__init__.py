"""Tests of the guard Runnable and the modules around it."""
