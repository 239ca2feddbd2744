"""ISO 8583 over TCP: length-prefixed frames (harness/tcp/framing.py) and the host
served on a TCP listener (harness/tcp/server.py), from the same sans-I/O cores as
the MQTT transport. docs/tcp.md says what is there and what is not yet."""
