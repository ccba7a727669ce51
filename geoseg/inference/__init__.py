"""Tiled inference of one scene window: read tiles -> model -> blend -> write class rasters.

`scene.predict_scene` is the stage; `reader` reads tiles, `predictor` and `model_step` run the
models, `blender` (on `stitch` or `stitch_torch`) blends them into class and confidence rows,
`settings` holds the torch-free settings and statistics.
"""
