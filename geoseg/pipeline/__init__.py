"""`geoseg run` as stages: plan (check everything, decide the windows), run (predict, write,
vectorize each scene into a staged folder), record (run.json). The flows call the same stages."""
