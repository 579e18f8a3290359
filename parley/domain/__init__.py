"""The rules of the messenger, with no I/O: values in, values out."""
