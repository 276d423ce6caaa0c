"""Runnable examples built on fastconv alone (``fastconv.examples.digits``: LeNet-5 on scikit-learn's digits)."""
