"""Tests of geoseg.inference, one module per inference module."""
