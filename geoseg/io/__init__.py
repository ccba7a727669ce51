"""Files in and out: AOIs, scene rasters, output rasters and their class metadata, GeoPackages,
QGIS styles, and atomic staging of everything a run writes."""
