"""Client programs the client matrix drives (bench/matrix.py): each is its own process."""
