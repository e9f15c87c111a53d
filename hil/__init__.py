"""hil: everything around the BMS firmware: pack simulator, fault injection, scenarios,
co-simulation, CAN transports (including the SocketCAN harness in :mod:`hil.socketcan`)."""
