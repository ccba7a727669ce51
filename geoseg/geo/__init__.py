"""Pixel geometry without I/O: windows, tile and block grids, and grids placed on the map."""
