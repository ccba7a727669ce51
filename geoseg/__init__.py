"""geoseg: land-cover maps from satellite and aerial GeoTIFF scenes."""

__version__ = "0.1.0"
