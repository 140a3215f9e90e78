"""Predictions and references with known overlaps, for the ROUGE tests."""

PREDICTIONS = [
    "The council approved the budget. Critics called the figures incomplete.",
    "Farmers measured rainfall in the valley.<n>The drought lasted two years.",
    "A new method estimates housing prices.",
    "Nothing in common here",
    "Prices rose sharply in winter. The old bridge was repaired.",
]
REFERENCES = [
    "The city council approved the annual budget. Critics said the figures were incomplete.",
    "Local farmers measured the rainfall. The drought lasted for two years.",
    "The report describes a new method for estimating housing prices in the north.",
    "Completely different words entirely.",
    "The old bridge was repaired last year. Prices rose sharply during the winter.",
]
