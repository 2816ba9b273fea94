"""Training: losses, augmentation, optimisation and the loop (`img2prompt train`)."""
