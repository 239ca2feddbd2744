"""The real transport: the same sans-I/O cores (firmware, acquirer) over an MQTT broker.

Modules: `wire` (topics, codecs, limits), `broker` (find or launch a private
broker), `host_service` (the acquirer as an MQTT service), `terminal_driver`
(a firmware in real time), `proxy` (wire faults between terminal and host
topics), `fleet` (load mode with invariant verdicts), `cli` (subcommands).
docs/protocol.md is the wire specification; docs/mqtt.md how it runs over MQTT.
"""
