"""Task modules the benchmark's workers import with ``--app``."""
