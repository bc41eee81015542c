"""Routing to other deskml nodes, Ollama servers and cloud APIs (DESKML_UPSTREAMS_FILE).

`config` reads the upstreams file, `router` picks an upstream per request (health, circuit
`breaker`, failover) and streams from it through the remote engine, `local` answers what this node
serves itself, `metrics` counts what was routed where, `setup` builds the router for the container.
"""
