"""The router service: the Faust application, the routing of each batch, the optimizer and
the weights it publishes, the input it owns, its watchdog, budget ledger and telemetry."""
