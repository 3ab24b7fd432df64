"""What every layer stands on: the machine (device, name, environment, version), atomic records and one-line argument checks."""
