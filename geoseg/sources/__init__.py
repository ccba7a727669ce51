"""Where scenes come from: raster files and URLs, STAC items and searches, read as model input.

Modules: `hrefs` (URLs vs paths, GDAL names, redaction), `gdal_env` (remote-read settings),
`items` (STAC documents), `search` (STAC API searches), `inputs` (what ``--scenes`` names),
`bands` (model bands among item assets), `radiometry` (scale/offset into model units),
`masks` (cloud masks), `headers` (raster headers with one-line failures), `vrt` (band files
stacked onto one grid), `resolve` (each input into a raster path and a `ReadPlan`).
"""
