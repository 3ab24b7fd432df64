"""One run: what defines it (config, profiles), training, the checkpoint it leaves, evaluation, inference on new scans and step timing."""
