"""streamscore: streaming real-time features and predictions for card transactions."""

__version__ = "0.1.0"
