"""Tools around the server: a device simulator and a benchmark."""
