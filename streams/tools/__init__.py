"""Operator and developer tools around the service: producing queries, the demo, the stream
benchmark, the chaos soak, the lag view, the ACL commands and the child processes they start."""
