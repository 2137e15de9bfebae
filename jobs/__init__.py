"""Background jobs of the course platform: the service API, configuration, logging and CLI."""
