"""Fan-out between server nodes: a hint that a user has something new to read."""
