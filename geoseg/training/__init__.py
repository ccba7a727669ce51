"""Training and evaluating models: settings, labelled tiles, augmentation, losses, metrics, the
epoch loop with checkpoints, and `geoseg evaluate`."""
