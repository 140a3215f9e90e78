"""Functions and constants shared by several test folders."""
