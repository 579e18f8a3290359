"""Media: checking and cleaning uploaded images, and storing their bytes."""
