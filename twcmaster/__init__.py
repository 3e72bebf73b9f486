"""twcmaster: the master of a Tesla Wall Connector Gen2 load-sharing bus."""

__version__ = "0.1.0"
