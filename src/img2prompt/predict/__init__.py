"""Prediction outputs: the Kaggle submission format."""
